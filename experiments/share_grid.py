"""When does GALS's own term work? The 100% world at several object sizes and classifier input sizes (issue 26).

Makes the grid of the experiment page (nbs/08a_experiment.ipynb, section "When does GALS's own term work?"): its input
nbs/data/share_grid.json holds this script's `<root>/results.json` of each world, by bias in percent ('100', '95'; '100-own-backbone' for --own-backbone). Each cell is an object share (the shape's mean share of the
image, `data.world.object_share`; '4' is the default law, about 4.1%) and a classifier input size (`data.size`). In each cell:

- vanilla (`world_vanilla`), 3 seeds;
- GALS's input-gradient term (`world_gals`): its weight searched on validation in {1e3, 1e4, 1e5} with seed 0 (class-balanced
  validation accuracy of the selected checkpoint; the published 1e4 is kept on a tie), then seeds 1 and 2 at the chosen weight;
- the counterfactual form (`world_gals_cf`) with the threshold, weight and lr searched before on the default world (0.3,
  weight 3 on the 100% world and 1 on the 95% world, lr 3e-4), not searched again, 3 seeds.

Every run uses its shipped config's budget and selection rule (10 epochs over 1000 images, class-balanced validation
accuracy), the shipped world backbone and the shipped tiny CLIP (the grounding is made at 224 px, once per world).
Run from a checkout (groundsup installed), on CPUs; finished runs are reused, so it can be killed and rerun:

    python experiments/share_grid.py --root runs/share-grid --cells 4:64 12:64 25:64 25:128 --jobs 2
    python experiments/share_grid.py --root runs/share-grid --report      # only (re)write results.json / results.md
    python experiments/share_grid.py --root runs/share-grid-bb --own-backbone --cells 25:64   # a backbone pretrained on 25% shapes
    python experiments/share_grid.py --root runs/share-grid-95 --bias 0.95 --cells 25:64   # the 95% world, one cell
    python experiments/share_grid.py --merge nbs/data/share_grid.json runs/share-grid runs/share-grid-bb runs/share-grid-95
"""
import argparse, json, os, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SHARES = {'4': None, '12': 0.12, '25': 0.25}   # folder name -> data.world.object_share (None: the default law)
GALS_WEIGHTS = {'': 1e4, '_w1e3': 1e3, '_w1e5': 1e5}   # folder suffix -> weight; the first is the shipped config's, kept on a tie
CF_WEIGHTS = {1.0: 3, 0.95: 1}   # the counterfactual form's weight searched per world (the shipped config's comment)
BIAS = 1.0             # the world's bias in train (--bias): the 100% world first, then the 95% world at the most telling cells
GS = [sys.executable, '-c', 'import sys; from groundsup.cli import main; sys.exit(main())']

def world_overrides(root, share):
    "The data overrides of every run of one object share: its own world folder and grounding caches."
    d = root / f's{share}'
    o = [f'data.root={d}/world-{round(100 * BIAS)}', f'data.world.bias={BIAS}']
    return o + ([f'data.world.object_share={SHARES[share]}'] if SHARES[share] is not None else [])

def grounding(root, share, method):
    return root / f's{share}' / ('grounding-tiny-rn-layer3' if method == 'gals_cf' else 'grounding-tiny-rn')

OWN_BACKBONE = False   # --own-backbone: every run starts from a backbone pretrained on shapes of its cell's share instead of the shipped one

def backbone(root, share):
    return root / f's{share}' / 'backbone.safetensors'

def run_overrides(root, share, px, method, suffix, seed, out):
    o = world_overrides(root, share) + [f'data.size={px}', f'seeds=[{seed}]', f'out={out}']
    if OWN_BACKBONE: o.append(f'model.pretrained={backbone(root, share)}')
    if method != 'vanilla': o.append(f'data.grounding={grounding(root, share, method)}')
    if method == 'gals': o.append(f'loss.gradient_outside.weight={GALS_WEIGHTS[suffix]:g}')
    if method == 'gals_cf': o.append(f'loss.counterfactual.weight={CF_WEIGHTS[BIAS]}')
    return o

def call(cmd, log):
    t0 = time.time()
    with open(log, 'w') as f: rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    return rc, time.time() - t0

def folder(root, share, px, method, suffix=''):
    return root / f's{share}' / f'px{px}' / (method + suffix)

def val_balanced(out, seed=0):
    return json.loads((out / f'seed{seed}-run' / 'summary.json').read_text())['trials'][0]['val_balanced']

def chosen_suffix(root, share, px):
    "The GALS weight chosen on validation with seed 0 (None while a search run is missing)."
    outs = {s: folder(root, share, px, 'gals', s) for s in GALS_WEIGHTS}
    if not all((o / 'seed0-run' / 'summary.json').exists() for o in outs.values()): return None
    v = {s: val_balanced(o) for s, o in outs.items()}
    return max(v, key=lambda s: (v[s], s == ''))   # the shipped weight wins a tie

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--root', default='runs/share-grid'); p.add_argument('--jobs', type=int, default=2)
    p.add_argument('--cells', nargs='+', default=['4:64', '12:64', '25:64', '25:128', '12:128', '4:128'], help='share:px, in order')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--bias', type=float, default=1.0, choices=sorted(CF_WEIGHTS), help="the world's bias in train (use another --root per bias)")
    p.add_argument('--own-backbone', action='store_true', help="pretrain the world backbone on shapes of each share (groundsup.pretrain's recipe) and start from it (use another --root)")
    p.add_argument('--report', action='store_true')
    p.add_argument('--merge', nargs='+', metavar=('OUT', 'ROOT'), help="write OUT: each ROOT's results.json, keyed by its world's bias in percent")
    a = p.parse_args()
    global BIAS, OWN_BACKBONE; BIAS, OWN_BACKBONE = a.bias, a.own_backbone
    if a.merge: return merge(a.merge[0], a.merge[1:])
    root = Path(a.root).resolve(); root.mkdir(parents=True, exist_ok=True)
    cells = [(c.split(':')[0], int(c.split(':')[1])) for c in a.cells]
    for share, _ in cells:
        if share not in SHARES: sys.exit(f"--cells: share {share!r} is not one of {list(SHARES)}")
    if a.report: return report(root, cells)
    for share in dict.fromkeys(s for s, _ in cells):   # the world and both groundings, once per share, before the parallel runs
        for m in ('gals', 'gals_cf'):
            g = grounding(root, share, m)
            if (g / 'DONE').exists(): continue
            rc, dt = call(GS + ['ground', '--config', f'world_{m}', '--quiet', '--device', 'cpu'] + world_overrides(root, share)
                          + [f'data.grounding={g}'], root / f'ground-s{share}-{g.name}.log')
            if rc: sys.exit(f"grounding share {share} for {m} failed: see {root}/ground-s{share}-{g.name}.log")
            (g / 'DONE').write_text(f'{dt:.0f} s\n')
            print(f"share {share}: {g.name} made in {dt:.0f} s", flush=True)
    if OWN_BACKBONE:
        from groundsup.pretrain import pretrain_backbone, save_backbone
        for share in dict.fromkeys(s for s, _ in cells):
            if backbone(root, share).with_suffix('.json').exists(): continue
            net, card = pretrain_backbone(object_share=SHARES[share], progress=False)   # the shipped recipe (2 threads), shapes of this share
            save_backbone(net, {**card, 'name': f'world-rn-share{share}'}, backbone(root, share))
            print(f"share {share}: backbone pretrained in {card['seconds']:.0f} s, held-out kind {card['accuracy']['held_out_kind']:.3f}", flush=True)
    jobs = []
    for share, px in cells:   # the search first, so that seeds 1-2 of GALS find their weight chosen
        jobs += [(share, px, 'gals', s, 0) for s in GALS_WEIGHTS]
        jobs += [(share, px, m, '', seed) for seed in a.seeds for m in ('vanilla', 'gals_cf')]
        jobs += [(share, px, 'gals', None, seed) for seed in a.seeds if seed != 0]
    def one(job):
        share, px, m, suffix, seed = job
        if suffix is None:
            while (suffix := chosen_suffix(root, share, px)) is None: time.sleep(10)
        out = folder(root, share, px, m, suffix) / f'seed{seed}-run'
        if (out / 'summary.json').exists(): return job, 0
        out.mkdir(parents=True, exist_ok=True)
        rc, dt = call(GS + ['train', '--config', f'world_{m}', '--quiet', '--device', 'cpu'] + run_overrides(root, share, px, m, suffix, seed, out),
                      out / 'train.log')
        if rc == 0: (out / 'wall.json').write_text(json.dumps({'seconds': round(dt, 1), 'jobs': a.jobs}))
        print(f"share {share} px {px} {m}{suffix} seed {seed}: {'ok' if rc == 0 else f'FAILED ({rc})'} in {dt:.0f} s", flush=True)
        return job, rc
    with ThreadPoolExecutor(a.jobs) as ex: done = list(ex.map(one, jobs))
    failed = [j for j, rc in done if rc]
    if failed: sys.exit(f"failed runs: {failed}")
    report(root, cells)

def report(root, cells):
    "results.json: per cell, every run's seed, weight, validation and test accuracies, and the share of test decisions that swap with the place."
    import torch
    from groundsup.experiment import load_config, build_datasets, load_model
    from groundsup.models import LogitsOnly
    from groundsup.data import gals_transform
    from groundsup.world import place_swapped
    res = {'bias': BIAS, 'backbone': 'pretrained on shapes of the cell\'s share' if OWN_BACKBONE else 'shipped (default size law)',
           'backbone_cards': {s: json.loads(backbone(root, s).with_suffix('.json').read_text()) for s, _ in cells if OWN_BACKBONE}, 'cf_weight': CF_WEIGHTS[BIAS], 'gals_weights': GALS_WEIGHTS, 'shares': SHARES, 'cells': {}}
    for share, px in cells:
        if not (root / f's{share}' / f'px{px}').exists(): continue
        same, swapped = place_swapped(root / f's{share}' / f'world-{round(100 * BIAS)}', gals_transform(px))
        cell, y = {'share': share, 'px': px, 'chosen_gals': chosen_suffix(root, share, px), 'runs': []}, None
        for f in sorted((root / f's{share}' / f'px{px}').iterdir()):
            m = next(k for k in ('gals_cf', 'gals', 'vanilla') if f.name == k or f.name.startswith(k + '_'))
            suffix = f.name[len(m):]
            for out in sorted(f.glob('seed*-run')):
                if not (out / 'summary.json').exists(): continue
                seed = int(out.name[4:-4])
                cfg = load_config(f'world_{m}', run_overrides(root, share, px, m, suffix, seed, out))
                t = json.loads((out / 'summary.json').read_text())['trials'][0]
                model, _ = load_model(cfg, out / f'seed{seed}' / 'best', check_inputs=False); model.eval()
                with torch.no_grad(): a_, b_ = LogitsOnly(model)(same).argmax(1), LogitsOnly(model)(swapped).argmax(1)
                if y is None:   # the cell's test labels: every run of a cell reads the same world
                    test = build_datasets(cfg, splits=('test',))['test']
                    y = torch.tensor([int(test[i]['label']) for i in range(len(test))])
                acc = float((a_ == y).float().mean())
                if abs(acc - t['test_average']) > 1e-6: sys.exit(f"{out}: the re-rendered test images give accuracy {acc}, the run recorded {t['test_average']}")
                wall = json.loads((out / 'wall.json').read_text()) if (out / 'wall.json').exists() else {}
                cell['runs'].append({'method': m, 'folder': f.name, 'seed': seed,
                                     'weight': GALS_WEIGHTS[suffix] if m == 'gals' else (CF_WEIGHTS[BIAS] if m == 'gals_cf' else None),
                                     'val_balanced': t['val_balanced'], 'test_worst_group': t['test_worst_group'],
                                     'test_mean_group': t['test_mean_group'], 'last_test_worst_group': t['last:test_worst_group'],
                                     'epoch': t['epoch'], 'place_flips': float((a_ != b_).float().mean()),
                                     'seconds': wall.get('seconds'), 'jobs': wall.get('jobs')})
        res['cells'][f'{share}:{px}'] = cell
    (root / 'results.json').write_text(json.dumps(res, indent=1))
    md = table(res); (root / 'results.md').write_text(md); print(md)

def merge(out, roots):
    res = {}
    for r in roots:
        f = Path(r) / 'results.json'
        if not f.exists(): sys.exit(f"--merge: {f} is missing (run --report on {r} first)")
        x = json.loads(f.read_text()); res[str(round(100 * x['bias'])) + ('' if x['backbone'].startswith('shipped') else '-own-backbone')] = x
    Path(out).write_text(json.dumps(res, indent=1) + '\n'); print(f"wrote {out}: worlds {list(res)}")

def selected(cell, method):
    "The runs a method is judged by: vanilla and the counterfactual form all seeds; GALS the chosen weight's seeds."
    if method == 'gals': return [r for r in cell['runs'] if r['folder'] == 'gals' + (cell['chosen_gals'] or '')]
    return [r for r in cell['runs'] if r['folder'] == method]

def table(res):
    import statistics
    def ms(v): return f"{100 * statistics.mean(v):.1f} ± {100 * (statistics.stdev(v) if len(v) > 1 else 0):.1f} ({len(v)})" if v else '—'
    lines = ['| share | px | vanilla | GALS (weight) | counterfactual form | GALS − vanilla |', '|---|---|---|---|---|---|']
    for k, c in res['cells'].items():
        v, g, f = (selected(c, m) for m in ('vanilla', 'gals', 'gals_cf'))
        wg = lambda rs: [r['test_worst_group'] for r in rs]
        d = statistics.mean(wg(g)) - statistics.mean(wg(v)) if g and v else None
        w = f"{GALS_WEIGHTS[c['chosen_gals']]:g}" if c['chosen_gals'] is not None else '?'
        lines.append(f"| {c['share']} | {c['px']} | {ms(wg(v))} | {ms(wg(g))} ({w}) | {ms(wg(f))} | {'—' if d is None else f'{100 * d:+.1f}'} |")
    return '\n'.join(lines) + '\n'

if __name__ == '__main__': main()
