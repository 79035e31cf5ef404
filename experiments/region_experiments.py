"""Region answers on the world, without a person: a simulated person draws boxes around the object on N training images,
new classifiers train from them (groundsup.feedback.simulate_regions, data.regions).

Makes the region tables of the experiment page (nbs/08a_experiment.ipynb, docs page experiment.html), section "Region
answers, measured with a simulated annotator": its input nbs/data/region_experiments.json is this script's
`<root>/region_experiments.json`: the runs' measures (`<root>/region_results.json`) and the answers' statistics
(`<root>/region_answers.json`). Run from a checkout (groundsup installed), on CPUs:

    python experiments/world_experiments.py --root R --methods vanilla --tag _ref           # the classifiers the proposers look at
    python experiments/world_experiments.py --root R --worlds 95 --methods gals_cf --tag _ref                          # the references
    python experiments/world_experiments.py --root R --worlds 100 --methods gals_cf --tag _ref --extra loss.counterfactual.weight=3
    python experiments/region_experiments.py --root R --plan 1 2 3 4 5 6    # the answers, then the runs of each plan in turn
    python experiments/region_experiments.py --root R --report     # R/region_experiments.json
    cp R/region_experiments.json nbs/data/region_experiments.json

For each world and seed, the vanilla classifier of that seed (`R/<world>/vanilla_ref/seed<s>-run`, its selected
checkpoint) orders the training images, lowest score first (`groundsup.feedback.propose`):

- `reliance`: the swap test's reliance (`groundsup.reliance.swap_test`, 'mixed_rand', 4 partners, the object where the
  tiny CLIP's layer3 grounding of "a photo of a shape" is >= 0.3): the mean change of the true-class margin when the
  object is put on other images' backgrounds; most hurt first;
- `agreement`: the rank correlation between the vanilla classifier's GradCAM (layer3, predicted class) and that grounding
  (the yes/no experiments' order);
- `random`: a random order (seeded by the seed).

The simulated person draws a box around each proposed image's object: the true mask's tight box, each side moved by up
to 10% of the box's size (`simulate_regions(kind='box', jitter=0.1)`). The first N answers of an order make the file of
budget N (the same order: a budget's boxes are the first of the larger budget's). Then `groundsup train --config
world_gals_cf` trains a new classifier of the same seed with `data.regions=<that file>` and the counterfactual term's
source `grounding+regions` (the boxes replace the grounding on their images) or `regions` (only the boxed images get
the term), with the threshold, weight (1 on the 95% world, 3 on the 100% world), learning rate, budget and selection
rule of `world_gals_cf` (searched on validation for the grounding form; not searched again here). Runs go through
experiments/world_experiments.py, so they can be killed and resumed and are measured the same way.
"""
import argparse, json, subprocess, sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORLDS = ('95', '100')
PROPOSERS = ('reliance', 'agreement', 'random')
CF_WEIGHT = {'95': 1, '100': 3}       # world_gals_cf's weight, searched on validation per world (experiment page)

# tag -> (proposer, budget, source, extra overrides); one plan after another, most telling first
PLANS = {
    0: {},   # only the answers
    1: {'_masks': (None, None, 'mask', ['data.masks=true']),
        '_rb25': ('reliance', 25, 'grounding+regions', []),
        '_ra100': ('reliance', 100, 'regions', [])},
    2: {'_rb100': ('reliance', 100, 'grounding+regions', [])},
    3: {'_ab25': ('agreement', 25, 'grounding+regions', []),
        '_xb25': ('random', 25, 'grounding+regions', [])},
    4: {'_ea100': ('reliance', 100, 'regions', ['loss.counterfactual=null', 'loss.energy.weight=1', 'loss.energy.layer=layer3'])},
    5: {'_rb10': ('reliance', 10, 'grounding+regions', []),
        '_ra25': ('reliance', 25, 'regions', [])},
    6: {'_ra10': ('reliance', 10, 'regions', []),
        '_ea100w10': ('reliance', 100, 'regions', ['loss.counterfactual=null', 'loss.energy.weight=10', 'loss.energy.layer=layer3'])},
}
BUDGETS = (10, 25, 100)

def answers_file(root, world, seed, proposer, budget):
    return root / world / 'regions' / f'vanilla-seed{seed}-{proposer}-n{budget}.jsonl'

def scores_of(root, world, seed):
    "The three proposers' scores (lowest first) for the training images, and the data they need."
    import torch
    from groundsup.data import WaterbirdsDataset, gals_transform
    from groundsup.experiment import load_config, load_model
    from groundsup.cache import MapCache
    from groundsup.metrics import rank_correlation
    from groundsup.models import LogitsOnly
    from groundsup.attribution import attribute
    from groundsup.reliance import swap_test
    cfg = load_config('world_vanilla')
    ds = WaterbirdsDataset(root / f'world-{world}', 'train', masks=True, transform=gals_transform(cfg.data.size))
    items = [ds[i] for i in range(len(ds))]
    x = torch.stack([it['image'] for it in items]); masks = torch.stack([it['mask'] for it in items]) > 0.5
    y = torch.tensor([it['label'] for it in items]); groups = torch.tensor([it['group'] for it in items])
    model, _ = load_model(cfg, root / world / 'vanilla_ref' / f'seed{seed}-run' / f'seed{seed}' / 'best', check_inputs=False); model.eval()
    g = torch.stack([MapCache(root / f'grounding-tiny-rn-layer3-{world}').get(i) for i in ds.img_ids]).float()
    rel = swap_test(LogitsOnly(model), x, y, maps=g, groups=groups, swaps=['mixed_rand'], partners=4, seed=seed, progress=False)
    reliance = rel.margin_change('mixed_rand').nanmean(1)          # most negative: the background moves the decision most
    net = LogitsOnly(model)   # as the yes/no experiments: in training mode, `attribute` uses each batch's BatchNorm statistics
    with torch.no_grad(): pred = torch.cat([net(x[b:b + 200]).argmax(1) for b in range(0, len(x), 200)])
    att = torch.cat([attribute(net, x[b:b + 200], pred[b:b + 200], method='gradcam', layer='model.layer3') for b in range(0, len(x), 200)])
    agreement = rank_correlation(att, g, reduction='none')[:, 0]
    random = torch.rand(len(x), generator=torch.Generator().manual_seed(seed))
    return ds, masks, groups, {'reliance': reliance, 'agreement': agreement, 'random': random}

def annotate(root, world, seed, proposers, progress=True):
    "Write one annotations file per proposer and budget; return the answers' statistics."
    import torch
    from groundsup.data import WaterbirdsDataset
    from groundsup.feedback import simulate_regions, dataset_key, tight_box, box_iou
    ds, masks, groups, scores = scores_of(root, world, seed)
    key = dataset_key(WaterbirdsDataset(root / f'world-{world}', 'train'))   # the dataset key is that of the training split's files
    pos = {i: k for k, i in enumerate(ds.img_ids)}
    minority = (groups == 1) | (groups == 2)          # the bias-conflicting groups (round on water, angular on land)
    out = {}
    for p in proposers:
        for n in BUDGETS:
            f = answers_file(root, world, seed, p, n); f.parent.mkdir(parents=True, exist_ok=True)
            ann = simulate_regions(f, ds.img_ids, key, masks, scores[p], n, kind='box', jitter=0.1, seed=seed, progress=progress,
                                   meta={'model': f'{world}/vanilla_ref/seed{seed}', 'proposer': p})
            k = torch.tensor([pos[i] for i in ann.records])
            drawn = torch.tensor([ann.records[i]['boxes'][0] for i in ann.records])
            out[f'{p}/n{n}'] = {'answers': len(ann), 'iou_with_tight_box': float(box_iou(drawn, tight_box(masks[k])).mean()),
                                'minority_share': float(minority[k].float().mean()),
                                'box_area_share': float(((drawn[:, 2] - drawn[:, 0]) * (drawn[:, 3] - drawn[:, 1])).mean())}
    return out

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--root', default='runs/world-experiments'); p.add_argument('--jobs', type=int, default=2)
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2]); p.add_argument('--worlds', nargs='+', default=list(WORLDS))
    p.add_argument('--plan', type=int, nargs='+', default=[1])
    p.add_argument('--report', action='store_true')
    a = p.parse_args()
    root = Path(a.root).resolve()
    if a.report: return report(root, a)
    stats_f = root / 'region_answers.json'
    stats = json.loads(stats_f.read_text()) if stats_f.exists() else {}
    for w in a.worlds:
        for s in a.seeds:
            if f'{w}/{s}' not in stats:
                stats[f'{w}/{s}'] = annotate(root, w, s, PROPOSERS)
                stats_f.write_text(json.dumps(stats, indent=1))
            print(f"{w}% world, vanilla seed {s}: " + ', '.join(f"{k}: IoU {v['iou_with_tight_box']:.2f}, minority {v['minority_share']:.2f}"
                                                                 for k, v in stats[f'{w}/{s}'].items() if k.endswith('n25')), flush=True)
    for plan in a.plan:
        for w in a.worlds:
            for tag, (prop, n, source, extra) in PLANS[plan].items():
                energy = 'loss.counterfactual=null' in extra
                ov = [f'loss.energy.source={source}'] if energy else [f'loss.counterfactual.weight={CF_WEIGHT[w]}', f'loss.counterfactual.source={source}']
                if prop is not None: ov.append(f'data.regions={root}/{w}/regions/vanilla-seed{{seed}}-{prop}-n{n}.jsonl')
                rc = subprocess.call([sys.executable, str(HERE / 'world_experiments.py'), '--root', str(root), '--jobs', str(a.jobs), '--worlds', w,
                                      '--seeds', *map(str, a.seeds), '--methods', 'gals_cf', '--tag', tag, '--extra', *ov, *extra])
                if rc: sys.exit(rc)

def report(root, a):
    "Measure every run (world_experiments.py's report: worst group, place flips, attention inside) and write `region_experiments.json`."
    subprocess.check_call([sys.executable, str(HERE / 'world_experiments.py'), '--root', str(root), '--report', '--worlds', *a.worlds,
                           '--methods', 'vanilla', 'gals_cf', '--seeds', *map(str, a.seeds), '--results', 'region_results'])
    res = json.loads((root / 'region_results.json').read_text())
    res = {k: v for k, v in res.items() if k.split('/', 1)[1] in ('vanilla_ref', 'gals_cf_ref') or k.split('/', 1)[1][len('gals_cf'):] in
           [t for plan in PLANS.values() for t in plan]}
    out = {'results': res, 'answers': json.loads((root / 'region_answers.json').read_text()),
           'plans': {t: list(v[:3]) + [v[3]] for plan in PLANS.values() for t, v in plan.items()}, 'cf_weight': CF_WEIGHT}
    (root / 'region_experiments.json').write_text(json.dumps(out, indent=1))
    print(f"wrote {root / 'region_experiments.json'}: {', '.join(f'{k} ({len(v)})' for k, v in res.items())}")

if __name__ == '__main__': main()
