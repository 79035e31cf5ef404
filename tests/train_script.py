"Helper for tests/test_train.py: one training run of the toy problem, optionally killing itself with SIGKILL."
import json, os, signal, sys
from pathlib import Path
import torch
from groundsup.core import seed_everything
from groundsup.train import TrainConfig, ToyImages, toy_net, train, strip_timing
from groundsup.losses import AttentionLoss

out, kill_at = sys.argv[1], int(sys.argv[2])
workers = int(sys.argv[3]) if len(sys.argv) > 3 else 0
dropout = float(sys.argv[4]) if len(sys.argv) > 4 else 0.2
gals = len(sys.argv) > 5 and sys.argv[5] == 'gals'
cfg = TrainConfig(epochs=3, batch_size=8, lr=0.01, optimizer='adamw', scheduler='cosine', seed=5, ckpt_every=1,
                  num_workers=workers, device='cpu')

# KILL_IN_SAVE: instead of dying after step `kill_at`, die inside the next checkpoint write, at one of the points where a
# kill leaves two folders behind: 'in_tmp' (last.tmp half-written), 'between' (last renamed to last.old, last.tmp not yet
# renamed to last), 'after_new' (the new last in place, last.old not yet removed)
in_save, armed = os.environ.get('KILL_IN_SAVE'), False
if in_save:
    import groundsup.train as gt
    _replace, _save_file = os.replace, gt.save_file
    def replace(src, dst):
        _replace(src, dst)
        if armed and Path(dst).name == {'between': 'last.old', 'after_new': 'last'}.get(in_save): os.kill(os.getpid(), signal.SIGKILL)
    def save_file(tensors, f, *a, **k):
        _save_file(tensors, f, *a, **k)
        if armed and in_save == 'in_tmp' and Path(f).parent.name == 'last.tmp': os.kill(os.getpid(), signal.SIGKILL)
    os.replace, gt.save_file = replace, save_file

def die(run):
    global armed
    if run.global_step == kill_at:
        if in_save: armed = True
        else: os.kill(os.getpid(), signal.SIGKILL)

seed_everything(0)
# 'gals': input gradients penalised everywhere (source 'zeros'), which exercises double backprop through DDP
loss_fn = AttentionLoss(gradient_outside=dict(weight=10.0, source='zeros')) if gals else None
run = train(toy_net(dropout=dropout), ToyImages(48, augment=True), ToyImages(16, seed=9), cfg, out=out, progress=False, loss_fn=loss_fn,
            hooks={'after_step': [die]} if kill_at > 0 else None)
if run.rank == 0:
    Path(out, 'result.json').write_text(json.dumps(strip_timing(run.history)))
