"""Yes/no feedback on the world, without a person: a simulated annotator answers N images, new classifiers train from the answers.

Makes the feedback tables of the experiment page (nbs/08a_experiment.ipynb, docs page experiment.html), section "Yes/no
feedback, measured with a simulated annotator" (its input nbs/data/feedback_experiments.json is this script's
`<root>/feedback_results.json` with the answer counts `<root>/annotation_counts-layer3.json`); the find-and-fix tutorial
points to it. Run from a checkout (groundsup installed), after experiments/world_experiments.py made the vanilla runs:

    python experiments/world_experiments.py --root R --methods vanilla gals_cf          # the runs the answers are about, and the reference
    python experiments/feedback_experiments.py --root R --budgets 25 100 400 --methods feedback gals_cf_feedback
    python experiments/feedback_experiments.py --root R --report      # R/feedback_results.json (the references: R/results.json)

For each world and seed, the vanilla classifier of that seed (`R/<world>/vanilla/seed<s>-run`, its selected checkpoint)
is answered about: GradCAM of its predicted class (at `--layer`, `groundsup.attribution.attribute` in batches of 200) on
every training image, at that layer's grid. The images are proposed lowest score first (`groundsup.feedback.propose`),
the score being the rank correlation between that attention and the tiny CLIP's layer3 grounding of "a photo of a shape"
at the attention's grid (`groundsup.metrics.rank_correlation`), and answered by `simulated_answer` ("right" iff at least
half of the attention's energy lies inside the true mask) until N are answered (`simulate_annotations`, which writes the
same annotations file the comparer writes). Then `groundsup train --config world_<method> data.feedback=<that file>`
trains a new classifier of the same seed, with the same budget and selection rule as every method of the experiment
page (via experiments/world_experiments.py, so the runs can be killed and resumed and the report measures them the same
way: worst group, place-swap flips, attention inside).

This is how the page's numbers were made, and it is not exactly what the comparer shows: the classifier is explained
through a fresh `LogitsOnly` wrapper, which is in training mode, so `attribute` runs its BatchNorm layers on each batch's
statistics; `groundsup.widgets.Comparison` explains it in eval mode, and its agreement scores compare the maps at the
larger of the two grids (see `agreement_scores`).
"""
import argparse, json, subprocess, sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORLDS = ('95', '100')

def annotations_file(root, world, seed, budget, layer):
    return root / world / 'annotations' / f'vanilla-seed{seed}-{layer}-n{budget}.jsonl'

def annotate(root, world, seed, budgets, layer, progress=True):
    "Write one annotations file per budget (the smaller budgets are the first answers of the larger: the same proposal order)."
    import torch
    from groundsup.data import WaterbirdsDataset, gals_transform
    from groundsup.experiment import load_config
    from groundsup.feedback import simulate_annotations, dataset_key
    from groundsup.cache import MapCache
    from groundsup.metrics import rank_correlation
    from groundsup.models import build_model, LogitsOnly
    from groundsup.train import load_checkpoint
    from groundsup.attribution import attribute
    cfg = load_config('world_vanilla')
    ds = WaterbirdsDataset(root / f'world-{world}', 'train', masks=True, transform=gals_transform(cfg.data.size))
    train = WaterbirdsDataset(root / f'world-{world}', 'train')   # the dataset key is that of the training split's files
    items = [ds[i] for i in range(len(ds))]
    x = torch.stack([it['image'] for it in items]); masks = torch.stack([it['mask'] for it in items]) > 0.5
    model = build_model(cfg.model.name, cfg.model.num_classes, pretrained=False)
    load_checkpoint(root / world / 'vanilla' / f'seed{seed}-run' / f'seed{seed}' / 'best', model); model.eval()
    net = LogitsOnly(model)   # in training mode: `attribute` uses each batch's BatchNorm statistics (see the docstring)
    with torch.no_grad(): pred = torch.cat([net(x[b:b + 200]).argmax(1) for b in range(0, len(x), 200)])
    att = torch.cat([attribute(net, x[b:b + 200], pred[b:b + 200], method='gradcam', layer=f'model.{layer}') for b in range(0, len(x), 200)])
    cache = MapCache(root / f'grounding-tiny-rn-layer3-{world}')
    g = torch.stack([cache.get(i) for i in ds.img_ids])
    scores = rank_correlation(att, g, reduction='none')[:, 0]
    out = {}
    for n in sorted(budgets):
        f = annotations_file(root, world, seed, n, layer)
        f.parent.mkdir(parents=True, exist_ok=True)
        ann = simulate_annotations(f, ds.img_ids, dataset_key(train), att, masks, scores, n, progress=progress,
                                   meta={'model': f'{world}/vanilla/seed{seed}', 'attribution': 'gradcam', 'layer': layer, 'target': 'pred'})
        out[n] = ann.counts()
    return out

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--root', default='runs/world-experiments'); p.add_argument('--jobs', type=int, default=2)
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2]); p.add_argument('--worlds', nargs='+', default=list(WORLDS))
    p.add_argument('--budgets', type=int, nargs='+', default=[25, 100, 400])
    p.add_argument('--methods', nargs='+', default=['feedback', 'gals_cf_feedback'])
    p.add_argument('--layer', default='layer3', help="the vanilla classifier's GradCAM layer the answers are about")
    p.add_argument('--extra', nargs='*', default=[], help='more overrides for every run'); p.add_argument('--tag', default='')
    p.add_argument('--report', action='store_true')
    a = p.parse_args()
    root = Path(a.root).resolve()
    if a.report: return report(root, a)
    counts = {}
    for w in a.worlds:
        for s in a.seeds:
            counts[f'{w}/{s}'] = annotate(root, w, s, a.budgets, a.layer)
            print(f"{w}% world, vanilla seed {s}: answers " + ', '.join(f"N={n}: {c['wrong']} wrong, {c['right']} right" for n, c in counts[f'{w}/{s}'].items()), flush=True)
    (root / f'annotation_counts-{a.layer}.json').write_text(json.dumps(counts, indent=1))
    for n in a.budgets:
        for w in a.worlds:
            for m in a.methods:
                extra = [f'data.feedback={root}/{w}/annotations/vanilla-seed{{seed}}-{a.layer}-n{n}.jsonl'] + a.extra
                # GALS's counterfactual term keeps the weight searched for it on each world (world_gals_cf: 1 on 95%, 3 on 100%)
                if m == 'gals_cf_feedback' and w == '100': extra.append('loss.counterfactual.weight=3')
                rc = subprocess.call([sys.executable, str(HERE / 'world_experiments.py'), '--root', str(root), '--jobs', str(a.jobs), '--worlds', w,
                                      '--seeds', *map(str, a.seeds), '--methods', m, '--tag', f'_n{n}{a.tag}', '--extra', *extra])
                if rc: sys.exit(rc)

def report(root, a):
    subprocess.check_call([sys.executable, str(HERE / 'world_experiments.py'), '--root', str(root), '--report', '--worlds', *a.worlds,
                           '--methods', *a.methods, '--results', 'feedback_results'])

if __name__ == '__main__': main()
