"""Does the shipped world backbone see larger shapes? Linear probes on its frozen features (issue 26).

The world backbone (`pretrained: world`) was pretrained at 64 px on the default size law (a shape covers about 4% of the
image). The grid of the experiment page (experiments/share_grid.py) fine-tunes it on worlds whose shapes cover 12% and
25%, and at 128 px. Before reading that grid, this script asks whether the frozen backbone already tells shapes apart
there: for each object share and input size it renders held-out scenes (seed 1; the backbone was pretrained on seed 0),
takes the backbone's pooled features, and fits a logistic-regression probe (train 3000, test 1000 images) for

- `kind`: which of the 8 pretraining shapes (`EXTRA_SHAPES`, the task the backbone was pretrained on),
- `family`: round or angular among the benchmark's 6 shapes (the world's label; never seen in pretraining),
- `place`: land or water.

Scenes are drawn at twice the input size and resized with antialiasing, as in pretraining. Run from a checkout:

    python experiments/backbone_shares.py --out nbs/data/backbone_shares.json
    python experiments/backbone_shares.py --out nbs/data/backbone_shares.json --append --px 64 --shares 4 25 \
        --weights runs/share-grid-bb/s25/backbone.safetensors --name 'pretrained on 25% shapes'
"""
import argparse, json, time
from pathlib import Path
import torch, torch.nn as nn, torch.nn.functional as F

from groundsup.world import sample_scenes, render_scenes, stream_seed, EXTRA_SHAPES, DEFAULT_SHARE
from groundsup.pretrain import PRETRAIN_STREAM, pretraining_scenes
from groundsup.data import IMAGENET_MEAN, IMAGENET_STD
from groundsup.models import build_model

SHARES = {'4': None, '12': 0.12, '25': 0.25}

def scenes(n, seed, share, extra):
    "Held-out scenes: the pretraining shapes (`extra`: `pretraining_scenes`) or the benchmark's, from the same stream, everything independent."
    return pretraining_scenes(n, seed, share) if extra else sample_scenes(n, seed=stream_seed(seed, PRETRAIN_STREAM), object_share=share)

@torch.no_grad()
def features(net, s, px, batch=250):
    out = []
    for b in range(0, len(s['y']), batch):
        x, _ = render_scenes({k: v[b:b + batch] for k, v in s.items()}, 2 * px)
        x = F.interpolate(x, size=(px, px), mode='bilinear', antialias=True, align_corners=False)
        x = (x.clamp(0, 1) * 255).round() / 255   # the 8-bit images pretraining saw
        out.append(net((x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)))
    return torch.cat(out)

def probe(ftr, ytr, fte, yte, l2=1e-3):
    "Multinomial logistic regression (LBFGS, standardised features, a small L2 penalty); test accuracy."
    mu, sd = ftr.mean(0), ftr.std(0) + 1e-6
    ftr, fte = (ftr - mu) / sd, (fte - mu) / sd
    k = int(ytr.max()) + 1
    lin = nn.Linear(ftr.shape[1], k)
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=500, line_search_fn='strong_wolfe')
    def closure():
        opt.zero_grad(); loss = F.cross_entropy(lin(ftr), ytr) + l2 * lin.weight.pow(2).sum(); loss.backward(); return loss
    opt.step(closure)
    with torch.no_grad(): return float((lin(fte).argmax(1) == yte).float().mean())

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', default='backbone_shares.json'); p.add_argument('--n-train', type=int, default=3000)
    p.add_argument('--n-test', type=int, default=1000); p.add_argument('--px', type=int, nargs='+', default=[64, 128])
    p.add_argument('--weights', default='world', help="the backbone: 'world' (shipped) or a weights file (e.g. share_grid.py --own-backbone's)")
    p.add_argument('--name', default='shipped', help='its name in the output'); p.add_argument('--shares', nargs='+', default=list(SHARES))
    p.add_argument('--append', action='store_true', help="add this backbone's rows to an existing --out")
    a = p.parse_args()
    torch.manual_seed(0)
    net = build_model('resnet_small', pretrained=a.weights, num_classes=2); net.fc = nn.Identity(); net.eval()
    rows = []
    for share in a.shares:
        v = SHARES[share]
        for px in a.px:
            t0, row = time.time(), {'backbone': a.name, 'share': share, 'object_share': v if v is not None else DEFAULT_SHARE, 'px': px}
            for task, extra, key in (('kind', True, 'kind'), ('family', False, 'y'), ('place', False, 'place')):
                tr, te = scenes(a.n_train, 1, v, extra), scenes(a.n_test, 2, v, extra)
                row[task] = probe(features(net, tr, px), tr[key], features(net, te, px), te[key])
            row['seconds'] = round(time.time() - t0, 1); rows.append(row); print(row, flush=True)
    res = {'backbones': {}, 'n_train': a.n_train, 'n_test': a.n_test,
           'seeds': {'train': 1, 'test': 2, 'pretraining': 0}, 'chance': {'kind': 1 / len(EXTRA_SHAPES), 'family': 0.5, 'place': 0.5}, 'rows': []}
    if a.append: res = json.loads(Path(a.out).read_text())
    res['backbones'][a.name] = a.weights if a.weights == 'world' else Path(a.weights).name
    res['rows'] = [r for r in res['rows'] if r['backbone'] != a.name] + rows
    Path(a.out).write_text(json.dumps(res, indent=1) + '\n')

if __name__ == '__main__': main()
