"""Small open_clip towers (any ModifiedResNet / VisionTransformer config) and the dataset cache: resume after kill -9,
mismatch refusal, torchrun with 2 CPU processes ending identical to a single-process run."""
import json, os, signal, socket, subprocess, sys, time
from pathlib import Path

import pytest, torch
import open_clip
from safetensors.torch import load_file

from groundsup.grounding import CLIPBundle, MapCache, ground, ground_dataset

HERE = Path(__file__).resolve().parent
PROMPTS = ['a red square', 'a blue circle']


def tiny_clip(kind='resnet', seed=0, image_size=128):
    "A small open_clip CLIP (its own classes, a custom config), deterministic from `seed`."
    torch.manual_seed(seed)
    if kind == 'resnet':
        vision = dict(layers=[1, 1, 1, 1], width=16, image_size=image_size, head_width=16)
    else:
        vision = dict(layers=2, width=48, patch_size=16, image_size=image_size, head_width=16, mlp_ratio=2.0)
    text = dict(context_length=16, vocab_size=49408, width=32, heads=2, layers=1)
    model = open_clip.model.CLIP(embed_dim=32, vision_cfg=vision, text_cfg=text).eval()
    if kind == 'resnet':  # open_clip zero-inits the last BN of residual branches
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for n, p in model.visual.named_parameters():
                if n.endswith('bn3.weight'): p.copy_(torch.rand(p.shape, generator=g) * 0.5)
    return CLIPBundle.from_model(model, name=f'tiny-{kind}', weights=f'seed-{seed}')


class Images(torch.utils.data.Dataset):
    "Deterministic random images; optionally slow, and counting the items it serves (in a file)."
    def __init__(self, n=10, size=128, seed=0, delay=0.0, log=None):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 3, *((size, size) if isinstance(size, int) else size), generator=g)
        self.ids = [f'img-{i:03d}' for i in range(n)]
        self.delay, self.log = delay, log
    def __len__(self): return len(self.x)
    def __getitem__(self, i):
        if self.log: open(self.log, 'a').write(f'{i}\n')
        if self.delay: time.sleep(self.delay)
        return self.x[i], i % 2


def _shards(path):
    return {f.name: load_file(str(f))['maps'] for f in sorted(Path(path).glob('maps-*.safetensors'))}


def _same_cache(a, b):
    assert json.loads((Path(a)/'config.json').read_text()) == json.loads((Path(b)/'config.json').read_text())
    sa, sb = _shards(a), _shards(b)
    assert sa.keys() == sb.keys() and len(sa) > 0
    for k in sa: assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize('kind,size,grid', [('resnet', 128, (4, 4)), ('resnet', 96, (3, 3)),
                                            ('vit', 128, (8, 8)), ('vit', (96, 64), (6, 4))])
def test_small_towers_any_size(kind, size, grid):
    clip = tiny_clip(kind, image_size=size)
    x = Images(3, size).x
    maps = ground(clip, x, PROMPTS, start_layer=0)
    assert maps.shape == (3, 2, *grid)
    alone = torch.cat([ground(clip, x[i:i + 1], PROMPTS) for i in range(3)])
    assert (maps - alone).abs().max() <= 1e-5
    assert maps.min() >= 0 and maps.max() <= 1


def test_ground_dataset_and_reader(tmp_path):
    clip = tiny_clip()
    ds = Images(10)
    cache = ground_dataset(clip, ds, PROMPTS, tmp_path/'c', batch_size=3, shard_size=4, progress=False)
    assert len(cache) == 10 and cache.num_shards == 3 and cache.complete
    ref = ground(clip, ds.x, PROMPTS)
    got = cache.maps(range(10))
    assert got.dtype == torch.float32 and got.shape == ref.shape == (10, 2, 4, 4)
    assert (got - ref).abs().max() <= 1e-3  # stored in float16
    torch.testing.assert_close(cache.get('img-007'), got[7])
    torch.testing.assert_close(cache.by_ids(['img-001', 'img-000']), got[[1, 0]])
    assert cache.maps([2], size=16).shape == (1, 2, 16, 16)
    stored = _shards(tmp_path/'c')
    assert all(t.dtype == torch.float16 for t in stored.values())
    nbytes = sum(f.stat().st_size for f in (tmp_path/'c').glob('maps-*'))
    assert nbytes / (10 * 2) <= 1024
    cfg = cache.config
    assert (cfg['model'], cfg['weights'], cfg['method'], cfg['layer'], cfg['prompts'], cfg['ids'][:2]) == \
           ('tiny-resnet', 'seed-0', 'gradcam', 'layer4', PROMPTS, ['img-000', 'img-001'])
    assert cfg['fingerprint'].startswith('sha256:')
    with pytest.raises(KeyError, match='img-999'): cache.get('img-999')
    with pytest.raises(IndexError): cache.maps([10])


def test_per_image_prompts(tmp_path):
    clip = tiny_clip('vit')
    ds = Images(4)
    per = [PROMPTS if i % 2 else PROMPTS[::-1] for i in range(4)]
    cache = ground_dataset(clip, ds, per, tmp_path/'c', batch_size=3, shard_size=2, progress=False)
    assert cache.config['per_image_prompts'] and cache.prompts == per
    torch.testing.assert_close(cache.maps(range(4)), ground(clip, ds.x, per), atol=1e-3, rtol=0)


def test_mismatch_refused(tmp_path):
    clip = tiny_clip()
    ds = Images(4)
    ground_dataset(clip, ds, PROMPTS, tmp_path/'c', batch_size=2, shard_size=2, progress=False)
    with pytest.raises(ValueError, match='differs in: prompts'):
        ground_dataset(clip, ds, PROMPTS[:1], tmp_path/'c', batch_size=2, shard_size=2, progress=False)
    with pytest.raises(ValueError, match='differs in: layer'):
        ground_dataset(clip, ds, PROMPTS, tmp_path/'c', layer='layer3', batch_size=2, shard_size=2, progress=False)
    other = tiny_clip(seed=1)
    other.weights = clip.weights  # same label, other weights: the fingerprint tells them apart
    with pytest.raises(ValueError, match='differs in: fingerprint'):
        ground_dataset(other, ds, PROMPTS, tmp_path/'c', batch_size=2, shard_size=2, progress=False)
    with pytest.raises(ValueError, match='fingerprint'): MapCache(tmp_path/'c', clip=other)
    with pytest.raises(ValueError, match="prompts: cache has"): MapCache(tmp_path/'c', prompts=['a dog'])
    with pytest.raises(ValueError, match='unknown cache config keys'): MapCache(tmp_path/'c', colour='red')
    assert len(MapCache(tmp_path/'c', clip=clip, method='gradcam', prompts=PROMPTS)) == 4
    # overwrite=True replaces it
    c2 = ground_dataset(clip, ds, PROMPTS[:1], tmp_path/'c', batch_size=2, shard_size=2, progress=False, overwrite=True)
    assert c2.prompts == PROMPTS[:1] and c2[0].shape == (1, 4, 4)


CHILD = """
import sys, torch
sys.path.insert(0, {here!r})
torch.set_num_threads(1)
import test_grounding_cache as t
from groundsup.grounding import ground_dataset
ds = t.Images(8, delay={delay}, log={log!r})
ground_dataset(t.tiny_clip(), ds, t.PROMPTS, {out!r}, batch_size=2, shard_size=2, progress=False)
print('done')
"""


def _run_child(out, delay=0.0, log=None, **popen):
    code = CHILD.format(here=str(HERE), delay=delay, log=log, out=str(out))
    return subprocess.Popen([sys.executable, '-c', code], **popen)


def test_resume_after_kill_9(tmp_path):
    # uninterrupted run (own process, one thread, like the others)
    p = _run_child(tmp_path/'full', stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.wait(timeout=300) == 0, p.stderr.read().decode()[-2000:]
    # a run killed with SIGKILL once its first shards are on disk
    log = tmp_path/'items.log'
    p = _run_child(tmp_path/'resumed', delay=0.4, log=str(log), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while len(list((tmp_path/'resumed').glob('maps-*.safetensors'))) < 2:
        assert p.poll() is None and time.time() - t0 < 300, 'child ended before it could be killed'
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL); p.wait()
    done = sorted(f.name for f in (tmp_path/'resumed').glob('maps-*.safetensors'))
    assert 2 <= len(done) < 4, done
    log.write_text('')
    # rerun: finished shards are not recomputed, and the result is identical to the uninterrupted run
    p = _run_child(tmp_path/'resumed', log=str(log), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.wait(timeout=300) == 0, p.stderr.read().decode()[-2000:]
    served = sorted(int(l) for l in log.read_text().split())
    assert served == [i for s in range(4) if f'maps-{s:05d}.safetensors' not in done for i in (2 * s, 2 * s + 1)]
    assert not list((tmp_path/'resumed').glob('.*tmp*'))
    _same_cache(tmp_path/'full', tmp_path/'resumed')
    assert MapCache(tmp_path/'resumed').complete


TORCHRUN_CHILD = """
import sys, torch
sys.path.insert(0, {here!r})
torch.set_num_threads(1)
import test_grounding_cache as t
from groundsup.grounding import ground_dataset
c = ground_dataset(t.tiny_clip('vit'), t.Images(10), t.PROMPTS, {out!r}, batch_size=2, shard_size=2, progress=False)
assert c.complete, c.missing_shards()
"""


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


@pytest.mark.slow  # ~35 s here: two torchrun launches of 1 and 2 processes
def test_torchrun_two_processes_equal_single(tmp_path):
    for name, nproc in (('single', 1), ('ddp', 2)):
        script = tmp_path/f'{name}.py'
        script.write_text(TORCHRUN_CHILD.format(here=str(HERE), out=str(tmp_path/name)))
        cmd = [sys.executable, '-m', 'torch.distributed.run', f'--nproc_per_node={nproc}', '--master_addr=127.0.0.1',
               f'--master_port={_free_port()}', str(script)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, 'OMP_NUM_THREADS': '1'})
        assert r.returncode == 0, r.stderr[-3000:]
    _same_cache(tmp_path/'single', tmp_path/'ddp')
    assert len(_shards(tmp_path/'ddp')) == 5
