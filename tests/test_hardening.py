"""Issue 13: nothing lost, nothing silently wrong. Reruns with changed settings, caches of other images, damaged files,
bad values and the command line's errors; one test (or a few) per case of the issue, each failing on the code before it.
(Case 1, kill -9 inside a checkpoint write, is in test_train.py: it reuses that file's training script.)"""
import json, os, shutil, subprocess, sys, warnings
from pathlib import Path
import pytest, torch
from safetensors.torch import load_file
from groundsup.cli import main

HERE = Path(__file__).resolve().parent

@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    "Relative default paths of the shipped configs land in the test's folder, never in the repository."
    monkeypatch.chdir(tmp_path)

def _world(tmp_path, *extra, root='w', out='run'):
    "Overrides for a tiny world run (48 images of 64 px, 32 px classifier inputs, 1 epoch)."
    return [f'data.root={tmp_path}/{root}', 'data.world.n_train=32', 'data.world.n_val=8', 'data.world.n_test=8', 'data.world.size=64',
            'data.size=32', 'seeds=[0]', 'train.epochs=1', 'train.batch_size=16', 'data.num_workers=0', f'out={tmp_path}/{out}', *extra]

def _err(capsys):
    err = capsys.readouterr().err
    lines = [l for l in err.strip().splitlines() if l.strip()]
    return err, lines

# ---------------------------------------------------------------- case 2: a rerun with changed settings
def test_rerun_with_changed_settings_is_refused_then_restart(tmp_path, capsys):
    ov = _world(tmp_path)
    assert main(['train', '--config', 'world_vanilla', '--device', 'cpu', '--quiet'] + ov) == 0
    saved = (tmp_path/'run'/'config.yaml').read_text()
    ckpt = (tmp_path/'run'/'seed0'/'last'/'model.safetensors').read_bytes()
    capsys.readouterr()
    assert main(['train', '--config', 'world_vanilla', '--device', 'cpu', '--quiet'] + ov
                + ['data.size=48', 'data.augment=none', 'data.upweight=group']) == 1
    out, err = capsys.readouterr()
    assert 'resuming' not in out
    assert 'data.augment' in err and 'data.size' in err and 'data.upweight' in err and '--restart' in err
    assert (tmp_path/'run'/'config.yaml').read_text() == saved                          # nothing overwritten
    assert (tmp_path/'run'/'seed0'/'last'/'model.safetensors').read_bytes() == ckpt
    # where and how fast it runs may change: the same experiment resumes (here: is already done)
    assert main(['train', '--config', 'world_vanilla', '--quiet', '--device', 'cpu'] + ov + ['data.num_workers=1']) == 0
    assert 'resuming' in capsys.readouterr().out
    # --restart starts fresh with the new settings
    assert main(['train', '--config', 'world_vanilla', '--device', 'cpu', '--quiet', '--restart'] + ov + ['data.size=48']) == 0
    out = capsys.readouterr().out
    assert 'resuming' not in out and 'size: 48' in (tmp_path/'run'/'config.yaml').read_text()

def test_changed_loss_weight_is_a_different_experiment():
    from groundsup.experiment import load_config, config_changes
    ov = ['data.root=/w', 'data.grounding=/g']
    a = load_config('world_gals', ov)
    assert config_changes(a, load_config('world_gals', ov + ['loss.gradient_outside.weight=5'])) == ['loss.gradient_outside.weight']
    assert config_changes(a, load_config('world_gals', ov + ['train.device=cpu', 'out=/x', 'data.num_workers=7'])) == []

# ---------------------------------------------------------------- case 3: a grounding cache made for other images
def test_grounding_cache_of_other_images_is_refused(tmp_path, capsys):
    g = [f'data.grounding={tmp_path}/g']
    assert main(['ground', '--config', 'world_gals', '--device', 'cpu', '--quiet'] + _world(tmp_path, *g, root='a')) == 0
    capsys.readouterr()
    # world b has the same image ids (0..47) and file names, other images
    assert main(['ground', '--config', 'world_gals', '--device', 'cpu', '--quiet'] + _world(tmp_path, *g, 'data.world.seed=1', root='b')) == 1
    err, lines = _err(capsys)
    assert len(lines) == 1 and f'{tmp_path}/b/images/00000.jpg' in err and 'not the image the cache was made from' in err
    assert main(['train', '--config', 'world_gals', '--device', 'cpu', '--quiet'] + _world(tmp_path, *g, 'data.world.seed=1', root='b')) == 1
    assert 'not the image the cache was made from' in capsys.readouterr().err
    # the same images elsewhere (copied: new paths and times, same content) are recognised
    shutil.copytree(tmp_path/'a', tmp_path/'a2')
    assert main(['train', '--config', 'world_gals', '--device', 'cpu', '--quiet'] + _world(tmp_path, *g, root='a2')) == 0
    # an image changed in place after grounding is caught when training reads the cache
    from PIL import Image
    Image.new('RGB', (64, 64), 'red').save(tmp_path/'a2'/'images'/'00005.jpg')
    assert main(['train', '--config', 'world_gals', '--device', 'cpu', '--quiet', '--restart']
                + _world(tmp_path, *g, root='a2', out='run2')) == 1
    assert "image 5 (id 5)" in capsys.readouterr().err

# ---------------------------------------------------------------- case 4: damaged cache shards
def _tiny_cache(tmp_path):
    sys.path.insert(0, str(HERE))
    from test_grounding_cache import tiny_clip, Images, PROMPTS
    from groundsup.grounding import ground_dataset
    clip, ds = tiny_clip(), Images(6)
    run = lambda: ground_dataset(clip, ds, PROMPTS, tmp_path/'c', batch_size=2, shard_size=2, progress=False)
    return run, run()

@pytest.mark.parametrize('damage', ['flip', 'truncate', 'empty', 'copy'])
def test_damaged_shard_is_named_and_recomputed(tmp_path, damage):
    from groundsup.grounding import MapCache
    run, cache = _tiny_cache(tmp_path)
    ref = cache.maps(range(6))
    f = tmp_path/'c'/'maps-00001.safetensors'
    b = bytearray(f.read_bytes())
    if damage == 'flip': b[-7] ^= 0x5A; b[-20] ^= 0x33; f.write_bytes(bytes(b))           # inside the maps' data
    elif damage == 'truncate': f.write_bytes(bytes(b[:len(b) // 2]))
    elif damage == 'empty': f.write_bytes(b'')
    else: shutil.copy(tmp_path/'c'/'maps-00000.safetensors', f)
    c = MapCache(tmp_path/'c')
    with pytest.raises(ValueError, match='maps-00001.safetensors'): c.maps([2])
    assert list(c.verify()) == [str(f)]
    with pytest.warns(UserWarning, match='maps-00001.safetensors'): c2 = run()                # recomputed, named
    assert torch.equal(c2.maps(range(6)), ref) and c2.verify() == {}

def test_damaged_shard_stops_training_before_any_work(tmp_path, capsys):
    g = [f'data.grounding={tmp_path}/g']
    assert main(['ground', '--config', 'world_gals', '--device', 'cpu', '--quiet'] + _world(tmp_path, *g)) == 0
    f = tmp_path/'g'/'maps-00000.safetensors'; b = bytearray(f.read_bytes()); b[-3] ^= 0xFF; f.write_bytes(bytes(b))
    capsys.readouterr()
    from groundsup.experiment import load_config, run_experiment
    with pytest.raises(ValueError, match='maps-00000.safetensors'): run_experiment(load_config('world_gals', _world(tmp_path, *g)), progress=False)
    assert not (tmp_path/'run'/'seed0').exists()
    with pytest.warns(UserWarning, match='maps-00000.safetensors: damaged'):
        assert main(['ground', '--config', 'world_gals', '--device', 'cpu', '--quiet'] + _world(tmp_path, *g)) == 0

# ---------------------------------------------------------------- case 5: metadata files cut short
def _cuts(text: str) -> list[int]:
    "Where to cut a file: at line breaks a quarter, half and three quarters in (cuts that YAML may still parse), and mid-line."
    breaks = [i + 1 for i, ch in enumerate(text) if ch == '\n']
    at_lines = [breaks[int(len(breaks) * q)] for q in (0.25, 0.5, 0.75)] if len(breaks) >= 4 else breaks[:-1]
    return sorted(set(at_lines + [len(text) // 2 + 1, 5]))

def _parses(f: Path, text: str) -> bool:
    import yaml
    try: (yaml.safe_load if f.suffix == '.yaml' else json.loads)(text); return True
    except Exception: return False

def test_cut_short_metadata_files_are_named(tmp_path, capsys):
    """Every metadata file the runner reads back, cut short anywhere (at line breaks too, where YAML still parses),
    is named as damaged: whatever the temporary folder's path (it is in the files, so its length moves the cuts)."""
    ov = _world(tmp_path, 'train.ckpt_every=1')
    assert main(['train', '--config', 'world_vanilla', '--device', 'cpu', '--quiet'] + ov) == 0
    run = tmp_path/'run'
    still_parsed = []
    for f in [tmp_path/'w'/'world.json', run/'seed0'/'config.json', run/'seed0'/'last'/'state.json', run/'config.yaml']:
        keep = f.read_text()
        for n in _cuts(keep):
            f.write_text(keep[:n]); capsys.readouterr()
            if _parses(f, keep[:n]): still_parsed.append((f.name, n))
            assert main(['train', '--config', 'world_vanilla', '--device', 'cpu', '--quiet'] + ov) == 1, (f, n)
            err, lines = _err(capsys)
            assert len(lines) == 1 and str(f) in err and 'damaged' in err, (f, n, err)
        f.write_text(keep)
    assert any(name == 'config.yaml' for name, _ in still_parsed), still_parsed   # the case that once passed as "another config"
    assert main(['train', '--config', 'world_vanilla', '--device', 'cpu', '--quiet'] + ov) == 0               # restored: resumes
    s = run/'summary.json'; keep = s.read_text()
    from groundsup.core import read_json
    for n in _cuts(keep):
        s.write_text(keep[:n])
        with pytest.raises(ValueError, match='summary.json'): read_json(s)
    # and a damaged --config file
    y = tmp_path/'exp.yaml'; y.write_text('data:\n  root: [w\n')
    assert main(['train', '--config', str(y)]) == 1
    err, lines = _err(capsys); assert len(lines) == 1 and 'exp.yaml' in err and 'YAML' in err

@pytest.mark.parametrize('depth', [0, 7])
def test_cut_config_yaml_is_damaged_under_any_folder(tmp_path, depth):
    "A run's config.yaml cut at every line break is refused as damaged, under folders of different path lengths."
    from groundsup.experiment import load_config, claim_out
    out = tmp_path.joinpath(*['d' * (k + 1) for k in range(depth)], 'run')
    cfg = load_config('world_vanilla', [f'data.root={tmp_path}/w', f'out={out}'])
    claim_out(cfg); (out/'seed0'/'last').mkdir(parents=True)
    f = out/'config.yaml'; keep = f.read_text()
    for n in [i + 1 for i, ch in enumerate(keep[:-1]) if ch == '\n']:
        f.write_text(keep[:n])
        with pytest.raises(ValueError, match=f'{f}: run config is damaged'): claim_out(cfg)
    f.write_text(keep); assert claim_out(cfg) == out

def test_world_and_summaries_are_written_atomically(tmp_path, monkeypatch):
    "A write that fails half-way (a full disk, a kill) leaves the previous world.json / summary.json whole."
    from groundsup import core
    from groundsup.world import make_world
    root = make_world(tmp_path/'w', n_train=8, n_val=4, n_test=4, size=32, progress=False)
    before = (root/'world.json').read_text()
    calls = []
    real = core.atomic_write
    def spy(path, write): calls.append(Path(path).name); return real(path, write)
    monkeypatch.setattr(core, 'atomic_write', spy)
    (root/'world.json').write_text(before.replace('true', 'false'))      # as if killed before completion: resumes
    make_world(tmp_path/'w', n_train=8, n_val=4, n_test=4, size=32, progress=False)
    assert calls.count('world.json') == 2 and json.loads((root/'world.json').read_text())['complete']

# ---------------------------------------------------------------- cases 10, 11: the command line
def test_cli_errors_are_one_line_with_debug_traceback(tmp_path, capsys, monkeypatch):
    ov = _world(tmp_path)
    f = tmp_path/'afile'; f.write_text('x')
    for args, what in [(['out=/sys/groundsup-x'], '/sys/groundsup-x'), ([f'out={f}/run'], str(f))]:  # unwritable out
        assert main(['train', '--config', 'world_vanilla', '--device', 'cpu', '--quiet'] + ov + args) == 1
        err, lines = _err(capsys)
        assert len(lines) == 1 and lines[0].startswith('groundsup train: error: ') and what in err, err
    assert main(['train', '--config', 'world_vanilla', '--device', 'cpu', '--quiet'] + ov) == 0
    ck = tmp_path/'run'/'seed0'/'best'
    m = ck/'model.safetensors'; m.write_bytes(m.read_bytes()[:100])                              # a corrupt checkpoint
    capsys.readouterr()
    assert main(['eval', '--config', 'world_vanilla', '--device', 'cpu', '--checkpoint', str(ck)] + ov) == 1
    err, lines = _err(capsys); assert len(lines) == 1 and str(m) in err, err
    (tmp_path/'w'/'images'/'00003.jpg').write_bytes(b'not a jpeg')                                  # a corrupt image
    assert main(['train', '--config', 'world_vanilla', '--device', 'cpu', '--quiet', '--restart'] + _world(tmp_path, out='run2')) == 1
    err, lines = _err(capsys); assert len(lines) == 1 and '00003.jpg' in err, err
    # --debug, or GROUNDSUP_DEBUG=1: the traceback
    with pytest.raises(Exception, match='00003.jpg'):
        main(['train', '--config', 'world_vanilla', '--device', 'cpu', '--quiet', '--debug'] + _world(tmp_path, out='run2'))
    monkeypatch.setenv('GROUNDSUP_DEBUG', '1')
    with pytest.raises(Exception, match='00003.jpg'):
        main(['train', '--config', 'world_vanilla', '--device', 'cpu', '--quiet'] + _world(tmp_path, out='run2'))

def test_cli_offline_pretrained_is_one_line(tmp_path, capsys, monkeypatch):
    import groundsup.clip as gc
    monkeypatch.setattr(gc, '_can_fetch', lambda url, timeout: False)          # offline, whatever this machine is
    monkeypatch.setattr(gc, '_cached_checkpoint', lambda cfg, cache_dir=None: None)
    ov = _world(tmp_path, f'data.grounding={tmp_path}/g', 'grounding.model=RN50', 'grounding.pretrained=openai')
    assert main(['ground', '--config', 'world_gals', '--device', 'cpu', '--quiet'] + ov) == 1
    err, lines = _err(capsys)
    assert len(lines) == 1 and lines[0].startswith('groundsup ground: error: ') and "pass its path" in err

def test_cli_overrides_before_and_after_options(tmp_path, capsys):
    ov = _world(tmp_path)
    assert main(['train', '--config', 'world_vanilla', ov[0], '--device', 'cpu', *ov[1:4], '--quiet', *ov[4:]]) == 0
    assert (tmp_path/'run'/'summary.json').is_file()

# ---------------------------------------------------------------- case 6: metrics on non-finite maps and scores
def test_metrics_refuse_non_finite_input():
    from groundsup.metrics import pointing_game, energy_inside, topk_iou, rank_correlation, group_accuracies
    maps = torch.rand(4, 1, 8, 8); masks = torch.zeros(4, 8, 8, dtype=torch.bool); masks[:, :4, :4] = True
    for v in (float('nan'), float('inf')):
        bad = maps.clone(); bad[2, 0, 1, 1] = v
        for f in (pointing_game, energy_inside, topk_iou):
            with pytest.raises(ValueError, match=r'maps: contains NaN or infinite values .*index 2'): f(bad, masks)
        with pytest.raises(ValueError, match='b: contains NaN'): rank_correlation(maps, bad)
        with pytest.raises(ValueError, match='other: contains NaN'): topk_iou(maps, bad)
    scores = torch.tensor([[0., 1.], [float('nan'), 0.], [1., 0.]])
    with pytest.raises(ValueError, match='preds: contains NaN'): group_accuracies(scores, [1, 0, 0], [0, 0, 1])

# ---------------------------------------------------------------- case 7: attribute and ground on bad input
def test_attribute_refuses_non_finite_images_and_out_of_range_targets():
    import torchvision
    from groundsup.attribution import attribute
    net = torchvision.models.resnet18(num_classes=2).eval()
    x = torch.randn(3, 3, 32, 32)
    with pytest.raises(ValueError, match=r'target: class index 5 is out of range for a model with 2 outputs'): attribute(net, x, 5)
    with pytest.raises(ValueError, match=r'target: class index 5'): attribute(net, x, [0, 5, 1], method='saliency')
    for v in (float('nan'), float('inf')):
        bad = x.clone(); bad[1, 0, 3, 3] = v
        with pytest.raises(ValueError, match=r'x: image\(s\) \[1\] contain NaN'): attribute(net, bad, 0, method='saliency')

def test_ground_names_nan_images_and_takes_float64(tmp_path):
    sys.path.insert(0, str(HERE))
    from test_grounding_cache import tiny_clip, Images, PROMPTS
    from groundsup.grounding import ground, ground_dataset
    clip = tiny_clip(); x = torch.randn(3, 3, 128, 128)
    assert torch.equal(ground(clip, x.double(), PROMPTS), ground(clip, x, PROMPTS))
    x[2, 1, 0, 0] = float('nan')
    with pytest.raises(ValueError, match=r'images: batch positions \[2\] contain NaN'): ground(clip, x, PROMPTS)
    ds = Images(4); ds.x[3, 0, 0, 0] = float('inf')
    with pytest.raises(ValueError, match=r"ids \['img-003'\] contain NaN"):
        ground_dataset(clip, ds, PROMPTS, tmp_path/'c', batch_size=2, progress=False)

# ---------------------------------------------------------------- case 8: eval at another image size than training
def test_eval_refuses_another_input_size(tmp_path, capsys):
    ov = _world(tmp_path)
    assert main(['train', '--config', 'world_vanilla', '--device', 'cpu', '--quiet'] + ov) == 0
    ck = f'{tmp_path}/run/seed0/best'
    assert json.loads(Path(ck, 'state.json').read_text())['state']['meta']['input'] == {'size': 32, 'augment': 'crop_flip', 'eval_crop': False}
    capsys.readouterr()
    assert main(['eval', '--config', 'world_vanilla', '--device', 'cpu', '--checkpoint', ck] + ov + ['data.size=48']) == 1
    err, lines = _err(capsys)
    assert len(lines) == 1 and 'data.size=32 (this config: 48)' in err
    assert main(['eval', '--config', 'world_vanilla', '--device', 'cpu', '--checkpoint', ck] + ov) == 0

# ---------------------------------------------------------------- case 9: values that must be refused before any work
@pytest.mark.parametrize('override, key', [
    ('loss.gradient_outside.weight=-5', 'loss.gradient_outside.weight=-5'),
    ('loss.gradient_outside.weight=nan', 'loss.gradient_outside.weight=nan'),
    ('loss.gradient_outside.weight=inf', 'loss.gradient_outside.weight=inf'),
    ('train.lr=nan', 'train.lr=nan'), ('train.lr=inf', 'train.lr=inf'), ('train.head_lr=nan', 'train.head_lr=nan'),
    ('train.weight_decay=-1', 'train.weight_decay=-1'), ('train.ckpt_every=-1', 'train.ckpt_every=-1'),
    ('model.num_classes=1', 'model.num_classes=1'),
    ('grounding.layer=layer9', "grounding.layer='layer9'"), ('grounding.method=relevance', "grounding.method='relevance'"),
    ('grounding.model=RN5O', "grounding.model='RN5O'"), ('grounding.pretrained=missing.pt', "grounding.pretrained='missing.pt'"),
    ('model.pretrained=imagenet', "model.pretrained='imagenet'"), ('train.device=gpu', "train.device='gpu'"),
    ('data.world.bias=1.5', 'data.world.bias=1.5'), ('data.world.n_val=0', 'data.world.n_val=0'), ('seeds=[-1]', 'seeds=[-1]'),
    ("out=''", "out=''"), ('loss.gradient_outside.source=feedback', "loss.gradient_outside: source='feedback'"),
])
def test_bad_values_refused_before_any_work(tmp_path, capsys, override, key):
    assert main(['train', '--config', 'world_gals', '--device', 'cpu', '--quiet', f'data.grounding={tmp_path}/g'] + _world(tmp_path, override)) == 1
    err, lines = _err(capsys)
    assert len(lines) == 1 and key in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == []                  # no world, no cache, no run folder

def test_label_out_of_range_refused_before_training(tmp_path, capsys):
    from groundsup.world import make_world
    root = make_world(tmp_path/'w', n_train=32, n_val=8, n_test=8, size=64, progress=False)
    meta = (root/'metadata.csv').read_text().splitlines()
    head = meta[0].split(','); yi = head.index('y')
    row = meta[5].split(','); row[yi] = '7'; meta[5] = ','.join(row)
    (root/'metadata.csv').write_text('\n'.join(meta) + '\n')
    assert main(['train', '--config', 'world_vanilla', '--device', 'cpu', '--quiet'] + _world(tmp_path)) == 1
    err, lines = _err(capsys)
    assert len(lines) == 1 and 'label 7' in err and 'model.num_classes=2' in err, err
    assert not (tmp_path/'run'/'seed0').exists()

# ---------------------------------------------------------------- case 12: a GradCAM layer that runs twice
def test_attribute_refuses_a_layer_that_runs_twice():
    import torchvision
    from groundsup.attribution import attribute
    net = torchvision.models.resnet18(num_classes=2).eval(); x = torch.randn(2, 3, 32, 32)
    for method in ('gradcam', 'guided_gradcam'):
        with pytest.raises(ValueError, match=r"layer='layer4.1.relu' runs 2 times per forward pass"):
            attribute(net, x, 1, method=method, layer='layer4.1.relu')
    with pytest.raises(ValueError, match='runs 2 times'): attribute(net, x, 1, layer=net.layer4[1].relu, create_graph=True)
    assert attribute(net, x, 1, layer='layer4.1').shape == (2, 1, 1, 1)

# ---------------------------------------------------------------- case 13: the pointing game's tolerance
def test_pointing_game_tolerance():
    from groundsup.metrics import pointing_game
    m = torch.zeros(1, 1, 64, 64); m[0, 0, 30, 40] = 1                       # 15 px right of the mask's last column (25)
    s = torch.zeros(1, 1, 64, 64, dtype=torch.bool); s[..., 20:40, 0:26] = True
    assert pointing_game(m, s) == 0.0 and pointing_game(m, s, tolerance=14) == 0.0 and pointing_game(m, s, tolerance=15) == 1.0
    assert 'tolerance' in pointing_game.__doc__ or 'GALS' in pointing_game.__doc__
