"""Does the grounded swap test measure reliance? The table "The swap test against the truth" of the experiment page.

Makes the table of the experiment page (nbs/08a_experiment.ipynb, docs page experiment.html), section "Reliance: the swap
test against the truth": its input nbs/data/reliance_validation.json is this script's `<root>/reliance_validation.json`.
It reads the classifiers that experiments/world_experiments.py trained (same root) and, for each one:

- the truth: the share of test decisions that change when each scene is re-rendered with the other place
  (`groundsup.world.place_swapped`; `place_flips` in that script's results.json);
- the grounded swap test (`groundsup.reliance.swap_test`): each test image's shape, grounded in "a photo of a shape" by
  each tiny CLIP and thresholded as the counterfactual term does, put on 4 partners' backgrounds whose place (named by the
  same CLIP zero-shot) differs; its flip rate. No masks are used;
- the same swap test with the true masks (the Backgrounds Challenge itself), as a reference;
- the attention share inside the true masks, by saliency and by GradCAM (what the comparer and the audit showed so far).

Then, over all classifiers, the Spearman rank correlation of each measure with the truth, and the mean absolute
difference of the flip rates from the truth. Run after world_experiments.py, from a checkout:

    python experiments/world_experiments.py --root runs/world-experiments --seeds 0 1 --methods vanilla upweight abn gals gals_cf
    python experiments/reliance_validation.py --root runs/world-experiments --seeds 0 1
    cp runs/world-experiments/reliance_validation.json nbs/data/reliance_validation.json
"""
import argparse, json, sys, time
from pathlib import Path

def spearman(a, b):
    import torch
    def ranks(v):
        v = torch.tensor(v, dtype=torch.float64); r = torch.empty_like(v)
        order = v.argsort(); r[order] = torch.arange(len(v), dtype=torch.float64)
        for x in v.unique():                     # ties share their mean rank
            m = v == x; r[m] = r[m].mean()
        return r
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--root', default='runs/world-experiments'); p.add_argument('--seeds', type=int, nargs='+', default=[0, 1])
    p.add_argument('--worlds', nargs='+', default=['95', '100']); p.add_argument('--partners', type=int, default=4)
    p.add_argument('--threshold', type=float, default=0.3)
    a = p.parse_args()
    import torch
    from torch.utils.data import DataLoader
    from groundsup.experiment import load_config, build_datasets, load_model
    from groundsup.models import LogitsOnly
    from groundsup.attribution import attribute
    from groundsup.metrics import attention_inside
    from groundsup.data import WaterbirdsDataset, ImageFiles
    from groundsup.world import load_world_clip, WORLD_CLIPS, OBJECT_PROMPT, PLACE_PROMPTS
    from groundsup.grounding import ground
    from groundsup.clip import zero_shot
    from groundsup.reliance import swap_test
    root = Path(a.root).resolve()
    truth = json.loads((root / 'results.json').read_text())
    layers = {WORLD_CLIPS[0]: 'layer3', WORLD_CLIPS[1]: None}   # the ResNet at the counterfactual term's layer; the ViT by relevance
    rows = []
    for w in a.worlds:
        cfg = load_config('world_vanilla', [f'data.root={root}/world-{w}'])
        test = build_datasets(cfg, splits=('test',))['test']
        x = torch.stack([test[i]['image'] for i in range(len(test))]); y = test.labels
        raw = WaterbirdsDataset(root / f'world-{w}', 'test', masks=True)
        masks = torch.stack([raw[i]['mask'] for i in range(len(raw))]).float()
        masks = masks if masks.ndim == 4 else masks[:, None]
        place = test.groups % 2
        grounded = {}
        for name in WORLD_CLIPS:
            clip = load_world_clip(name=name, device='cpu')
            cimg = DataLoader(ImageFiles([str(q) for q in test.paths], clip.preprocess), batch_size=100)
            t0 = time.time()
            maps = torch.cat([ground(clip, b, [OBJECT_PROMPT], layer=layers[name]) for b in cimg])
            ctx = torch.cat([zero_shot(clip, b, PLACE_PROMPTS) for b in cimg]).argmax(1)
            grounded[name] = (maps, ctx, time.time() - t0)
            print(f"world {w}, {name}: grounded in {time.time() - t0:.0f} s; zero-shot place right on {float((ctx == place).float().mean()):.3f}", flush=True)
        for key, trials in sorted(truth.items()):
            if not key.startswith(f'{w}/'): continue
            method = key.split('/', 1)[1]
            for t in trials:
                s = t['seed']
                if s not in a.seeds: continue
                out = root / w / method / f'seed{s}-run'
                mcfg = load_config(f'world_{method}', [f'data.root={root}/world-{w}'])
                model, _ = load_model(mcfg, out / f'seed{s}' / 'best', check_inputs=False); model.eval()
                net = LogitsOnly(model)
                r = dict(world=w, method=method, seed=s, truth=t['place_flips'], worst_group=t['test_worst_group'],
                         saliency_inside=float(attention_inside(torch.cat([attribute(net, x[b:b + 100], y[b:b + 100], method='saliency') for b in range(0, len(x), 100)]), masks)),
                         gradcam_inside=float(attention_inside(torch.cat([attribute(net, x[b:b + 100], y[b:b + 100], method='gradcam', size=tuple(x.shape[-2:])) for b in range(0, len(x), 100)]).clamp(min=0), masks)))
                for name, (maps, ctx, _) in grounded.items():
                    t0 = time.time()
                    res = swap_test(model, x, y, maps=maps, contexts=ctx, groups=test.groups, swaps=['context', 'mixed_rand'],
                                    partners=a.partners, threshold=a.threshold, progress=False)
                    r[f'{name} context'] = res.flip_rate('context'); r[f'{name} mixed_rand'] = res.flip_rate('mixed_rand')
                    r[f'{name} seconds'] = time.time() - t0
                res = swap_test(model, x, y, masks=masks, contexts=place, groups=test.groups, swaps=['context'], partners=a.partners, progress=False)
                r['masks context'] = res.flip_rate('context')
                rows.append(r)
                print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}), flush=True)
    measures = [f'{n} context' for n in WORLD_CLIPS] + [f'{n} mixed_rand' for n in WORLD_CLIPS] + ['masks context', 'saliency_inside', 'gradcam_inside']
    truth_v = [r['truth'] for r in rows]
    summary = {m: dict(spearman=spearman([r[m] for r in rows], truth_v),
                       mean_abs_diff=(sum(abs(r[m] - r['truth']) for r in rows) / len(rows)) if 'inside' not in m else None) for m in measures}
    res = dict(classifiers=len(rows), seeds=a.seeds, worlds=a.worlds, partners=a.partners, threshold=a.threshold,
               clip_layers={k: v for k, v in layers.items()}, rows=rows, summary=summary)
    (root / 'reliance_validation.json').write_text(json.dumps(res, indent=1))
    for m, v in summary.items(): print(f"{m:32s} Spearman {v['spearman']:+.3f}" + (f"  mean |diff| {100 * v['mean_abs_diff']:.1f} points" if v['mean_abs_diff'] is not None else ''))

if __name__ == '__main__': sys.exit(main())
