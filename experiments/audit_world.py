"""The concept audit of the world's classifiers (issue 15), as shown on the audit page.

Makes the table of the audit page (nbs/09a_audit.ipynb, docs page audit.html), section "On the world": its input is
this script's output, nbs/data/audit_world.json. Run from a checkout (groundsup installed), after
experiments/world_experiments.py made the runs:

    python experiments/audit_world.py --root <world experiments root> --out nbs/data/audit_world.json

runs `groundsup audit` (`groundsup.cli.audit_command`: the shape and the two places, input-gradient attention,
complement context regions) on the test split of every method folder `<root>/<world>/<method>/seed<seed>-run` that
holds a `best` checkpoint (the runs of experiments/world_experiments.py), and collects the audit summaries, the runs'
test accuracies, the wall times and the load of the machine into one JSON file.
"""
import argparse, json, os, time
from pathlib import Path

def _config_for_audit(run: Path, work: Path):
    "(config file, whether its loss section was dropped): the audit uses only the data and model sections, so a run made with loss terms this groundsup does not know is audited with its config minus `loss`."
    import yaml
    from groundsup.experiment import load_config
    f = run / 'config.yaml'
    try: load_config(str(f)); return str(f), False
    except ValueError:
        d = yaml.safe_load(f.read_text()); d.pop('loss', None)
        g = work / f'{run.parent.name}.config.yaml'; g.parent.mkdir(parents=True, exist_ok=True)
        g.write_text(yaml.safe_dump(d))
        load_config(str(g))
        return str(g), True

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--root', default='/work/scratch/grid', help='root of experiments/world_experiments.py')
    ap.add_argument('--world', default='95', help='world folder under root (95 or 100)')
    ap.add_argument('--methods', nargs='*', default=None, help='method folders to audit (default: all with a checkpoint)')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--seeds', type=int, nargs='*', default=None, help="several seeds (runs keyed '<method>/seed<s>' in the output)")
    ap.add_argument('--clip', default=None, help='grounding CLIP (default: the world ResNet CLIP)')
    ap.add_argument('--work', default='/tmp/groundsup-audit-world', help='audit folders (reports, figures, caches)')
    ap.add_argument('--out', default='nbs/data/audit_world.json')
    a = ap.parse_args()
    from groundsup.cli import audit_command
    res = {}
    seeds = a.seeds if a.seeds else [a.seed]
    for d, seed in [(d, s) for d in sorted(p for p in (Path(a.root) / a.world).iterdir() if p.is_dir()) for s in seeds]:
        if a.methods and d.name not in a.methods: continue
        run = d / f'seed{seed}-run'; ck = run / f'seed{seed}' / 'best'
        key = d.name if not a.seeds else f'{d.name}/seed{seed}'
        if not (ck / 'state.json').is_file() or not (run / 'config.yaml').is_file(): continue
        load0, t0 = os.getloadavg()[0], time.time()
        cfg, loss_ignored = _config_for_audit(run, Path(a.work))
        rep = audit_command(cfg, str(ck), out=str(Path(a.work) / key), device='cpu', quiet=True, clip=a.clip)
        s = json.loads((rep.parent / 'audit.json').read_text())
        s['command_s'], s['load'] = round(time.time() - t0, 1), [round(load0, 2), round(os.getloadavg()[0], 2)]
        summ = run / 'summary.json'
        s['test'] = ({k: v for k, v in json.loads(summ.read_text())['trials'][0].items() if k.startswith('test_')} if summ.is_file() else None)
        s['loss_section_ignored'] = loss_ignored
        res[key] = s
        print(f"{key}: {s['command_s']} s, load {s['load']}", flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(dict(root=str(a.root), world=a.world, seed=a.seed if not a.seeds else seeds, runs=res), indent=1) + '\n')
    print(f'wrote {a.out}')

if __name__ == '__main__': main()
