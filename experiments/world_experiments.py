"""The world experiments of the experiment page: every method on the 95% and 100% worlds, several seeds, one table.

Makes the table of the experiment page (nbs/08a_experiment.ipynb, docs page experiment.html), section "The world
experiments, measured": its input nbs/data/world_experiments.json is this script's `<root>/results.json`. Its runs are
also the ones experiments/audit_world.py audits (the audit page) and experiments/feedback_experiments.py answers about.
Run from a checkout (groundsup installed), on CPUs; the whole grid takes hours:

    python experiments/world_experiments.py --root runs/world-experiments --jobs 2
    python experiments/world_experiments.py --root runs/world-experiments --report    # only (re)write results.json / .md
    cp runs/world-experiments/results.json nbs/data/world_experiments.json

Each (world, method, seed) is one `groundsup train --config world_<method>` with the shipped config (same budget, learning
rate and selection rule for every method) in its own folder, so the script can be killed and rerun: finished runs are
reused (the trainer resumes unfinished ones). At the end it reads every run, measures where each selected classifier's
input-gradient attention falls (`groundsup.metrics.attention_inside`: its share inside the true masks, test split) and
how often its decision changes when only the place behind each test shape is swapped (`groundsup.world.place_swapped`:
the scene re-rendered with the other background, the shortcut measured directly), and writes `results.json` and
`results.md`.
"""
import argparse, json, os, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

METHODS = {'vanilla': 'vanilla', 'upweight': 'group up-weighting', 'abn': 'ABN',
           'gals': 'GALS (tiny-CLIP grounding)', 'gals_masks': 'GALS with true masks', 'gals_lps': 'GALS, log-prob gradients (Ross et al.)',
           'gals_cf': 'GALS, counterfactual form (tiny-CLIP grounding, layer3)',
           'feedback': 'yes/no feedback on vanilla (simulated annotator)', 'gals_cf_feedback': 'GALS counterfactual form + yes/no feedback'}
WORLDS = {'95': 0.95, '100': 1.0}

def overrides(root, world, seed, out, grounding=None):
    return [f'data.root={root}/world-{world}', f'data.world.bias={WORLDS[world]}'] + \
           ([f'data.grounding={grounding}'] if grounding else []) + [f'seeds=[{seed}]', f'out={out}']

def grounding_folder(root, world, method, suffix='', extra=()):
    "The grounding cache of a method's runs in one world: named after its config's `data.grounding` (None: the config has none, no grounding term)."
    from groundsup.experiment import load_config
    cfg = load_config(f'world_{method}', [e.format(seed=0, world=world) for e in extra if e.startswith('data.feedback=')])
    if not cfg.data.grounding: return None
    return root / f'{Path(cfg.data.grounding).name}-{world}{suffix}'

def run(cmd, log):
    t0 = time.time()
    with open(log, 'w') as f: rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    return rc, time.time() - t0

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--root', default='runs/world-experiments'); p.add_argument('--jobs', type=int, default=2)
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2]); p.add_argument('--methods', nargs='+', default=list(METHODS))
    p.add_argument('--worlds', nargs='+', default=list(WORLDS))
    p.add_argument('--extra', nargs='*', default=[], help='more overrides for every run; {seed} and {world} are replaced by the run\'s')
    p.add_argument('--tag', default='', help='suffix of the method folders (runs with --extra overrides, e.g. a search point)')
    p.add_argument('--cache', default='', help='suffix of the grounding cache folders, for runs whose `grounding.*` extras differ from the shipped config')
    p.add_argument('--report', action='store_true', help='only (re)write results.json / results.md from the runs on disk')
    p.add_argument('--results', default='results', help='name of the report files (<name>.json, <name>.md) in --root')
    a = p.parse_args()
    root = Path(a.root).resolve(); root.mkdir(parents=True, exist_ok=True)
    if a.report: return report(root, a.worlds, a.methods, a.seeds, {}, a.results)
    gs = [sys.executable, '-c', 'import sys; from groundsup.cli import main; sys.exit(main())']
    grounding = [e for e in a.extra if e.startswith('grounding.')]
    if grounding and not a.cache: sys.exit("grounding.* overrides make another grounding: give its cache folders a --cache suffix")
    caches = {(w, m): grounding_folder(root, w, m, a.cache, a.extra) for w in a.worlds for m in a.methods}
    for (w, m), g in caches.items():   # stage 1 once per world and grounding (the world and its maps), before the parallel runs
        if g is None or any(caches[k] == g for k in list(caches)[:list(caches).index((w, m))]): continue
        rc, _ = run(gs + ['ground', '--config', f'world_{m}', '--quiet', '--device', 'cpu'] + overrides(root, w, 0, root / 'tmp', g)[:3] + grounding
                    + [e.format(seed=0, world=w) for e in a.extra if e.startswith('data.feedback=')],
                    root / f'ground-{g.name}.log')
        if rc: sys.exit(f"grounding world {w} for {m} failed: see {root}/ground-{g.name}.log")
    jobs = [(w, m, s) for s in a.seeds for w in a.worlds for m in a.methods]
    def one(job):
        w, m, s = job
        out = root / w / (m + a.tag) / f'seed{s}-run'
        if (out / 'summary.json').exists(): return job, 0, 0.0
        out.mkdir(parents=True, exist_ok=True)
        rc, dt = run(gs + ['train', '--config', f'world_{m}', '--quiet', '--device', 'cpu'] + overrides(root, w, s, out, caches[w, m])
                    + [e.format(seed=s, world=w) for e in a.extra], out / 'train.log')
        print(f"{w}% {m} seed {s}: {'ok' if rc == 0 else f'FAILED ({rc})'} in {dt:.0f} s", flush=True)
        return job, rc, dt
    with ThreadPoolExecutor(a.jobs) as ex: done = list(ex.map(one, jobs))
    failed = [j for j, rc, _ in done if rc]
    if failed: sys.exit(f"failed runs: {failed}")
    if not a.tag: report(root, a.worlds, a.methods, a.seeds, {f'{w}/{m}/{s}': dt for (w, m, s), _, dt in done})

def report(root, worlds, methods, seeds, seconds, name='results'):
    import torch
    from groundsup.experiment import load_config, build_datasets
    from groundsup.models import build_model, LogitsOnly
    from groundsup.train import load_checkpoint
    from groundsup.attribution import attribute
    from groundsup.metrics import attention_inside
    from groundsup.data import WaterbirdsDataset, gals_transform
    from groundsup.world import place_swapped
    res = {}
    for w in worlds:
        raw = WaterbirdsDataset(root / f'world-{w}', 'test', masks=True)
        masks = torch.stack([raw[i]['mask'] for i in range(len(raw))]).float()
        same, swapped = place_swapped(root / f'world-{w}', gals_transform(load_config('world_vanilla').data.size))
        for folder in sorted(p.name for p in (root / w).iterdir() if p.is_dir()):
            # the shipped configs, and search points such as gals_w1e3 or vanilla_lr0.003 (a tag after the config name)
            m = next((k for k in sorted(METHODS, key=len, reverse=True) if folder == k or folder.startswith(k + '_')), None)
            if m is None or m not in methods: continue
            # only the data and model sections are used here; the feedback configs' data (and model) are vanilla's
            cfg = load_config(f'world_{m}' if 'feedback' not in m else 'world_vanilla', overrides(root, w, 0, root / 'tmp'))
            test = build_datasets(cfg, splits=('test',))['test']
            x = torch.stack([test[i]['image'] for i in range(len(test))]); y = torch.tensor([int(test[i]['label']) for i in range(len(test))])
            rows = []
            for s in seeds:
                out = root / w / folder / f'seed{s}-run'
                if not (out / 'summary.json').exists(): continue
                t = json.loads((out / 'summary.json').read_text())['trials'][0]
                model = build_model(cfg.model.name, cfg.model.num_classes, pretrained=False)
                load_checkpoint(out / f'seed{s}' / 'best', model); model.eval()
                # a fresh LogitsOnly is in training mode: `attribute` uses each batch's BatchNorm statistics (how the page's numbers were made)
                att = torch.cat([attribute(LogitsOnly(model), x[b:b + 100], y[b:b + 100], method='saliency') for b in range(0, len(x), 100)])
                t['attention_inside'] = float(attention_inside(att, masks))
                with torch.no_grad(): p_same, p_swapped = LogitsOnly(model)(same).argmax(1), LogitsOnly(model)(swapped).argmax(1)
                acc = float((p_same == y).float().mean())
                if abs(acc - t['test_average']) > 1e-6: sys.exit(f"{out}: the re-rendered test images give accuracy {acc}, the run recorded {t['test_average']}")
                t['place_flips'] = float((p_same != p_swapped).float().mean())
                t['seconds'] = seconds.get(f'{w}/{m}/{s}')
                rows.append(t)
            res[f'{w}/{folder}'] = rows
    (root / f'{name}.json').write_text(json.dumps(res, indent=1))
    (root / f'{name}.md').write_text(table(res, worlds, methods))
    print(table(res, worlds, methods))

def _ms(v):
    import statistics
    v = [x for x in v if x is not None]
    if not v: return '—'
    return f"{100 * statistics.mean(v):.1f} ± {100 * (statistics.stdev(v) if len(v) > 1 else 0):.1f}"

def table(res, worlds, methods):
    lines = []
    for w in worlds:
        lines += [f'\n**{w}% world** (test accuracy %, mean ± std over seeds; attention inside: share of input-gradient attention inside the true masks)\n',
                  '| method | seeds | worst group (selected) | mean group (selected) | worst group (last epoch) | worst group (best val worst group) | attention inside | decisions flipped by swapping the place |',
                  '|---|---|---|---|---|---|---|---|']
        for key in sorted(k for k in res if k.startswith(f'{w}/')):
            r, m = res[key], key.split('/', 1)[1]
            lines.append(f"| {METHODS.get(m, m)} | {len(r)} | {_ms([t['test_worst_group'] for t in r])} | {_ms([t['test_mean_group'] for t in r])} | "
                         f"{_ms([t['last:test_worst_group'] for t in r])} | {_ms([t['val_worst_group:test_worst_group'] for t in r])} | "
                         f"{_ms([t['attention_inside'] for t in r])} | {_ms([t.get('place_flips') for t in r])} |")
    return '\n'.join(lines) + '\n'

if __name__ == '__main__': main()
