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
def _cut(f: Path): f.write_text(f.read_text()[:max(5, len(f.read_text()) // 2)])

def test_cut_short_metadata_files_are_named(tmp_path, capsys):
    ov = _world(tmp_path, 'train.ckpt_every=1')
    assert main(['train', '--config', 'world_vanilla', '--device', 'cpu', '--quiet'] + ov) == 0
    run = tmp_path/'run'
    for f in [tmp_path/'w'/'world.json', run/'seed0'/'config.json', run/'seed0'/'last'/'state.json', run/'config.yaml']:
        keep = f.read_text(); _cut(f); capsys.readouterr()
        assert main(['train', '--config', 'world_vanilla', '--device', 'cpu', '--quiet'] + ov) == 1, f
        err, lines = _err(capsys)
        assert len(lines) == 1 and str(f) in err, (f, err)
        f.write_text(keep)
    s = run/'summary.json'; keep = s.read_text(); _cut(s)
    from groundsup.core import read_json
    with pytest.raises(ValueError, match='summary.json'): read_json(s)
    # and a damaged --config file
    y = tmp_path/'exp.yaml'; y.write_text('data:\n  root: [w\n')
    assert main(['train', '--config', str(y)]) == 1
    err, lines = _err(capsys); assert len(lines) == 1 and 'exp.yaml' in err and 'YAML' in err

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
    import groundsup.grounding as gg
    monkeypatch.setattr(gg, '_can_fetch', lambda url, timeout: False)          # offline, whatever this machine is
    monkeypatch.setattr(gg, '_cached_checkpoint', lambda cfg, cache_dir=None: None)
    ov = _world(tmp_path, f'data.grounding={tmp_path}/g', 'grounding.model=RN50', 'grounding.pretrained=openai')
    assert main(['ground', '--config', 'world_gals', '--device', 'cpu', '--quiet'] + ov) == 1
    err, lines = _err(capsys)
    assert len(lines) == 1 and lines[0].startswith('groundsup ground: error: ') and "pass its path" in err

def test_cli_overrides_before_and_after_options(tmp_path, capsys):
    ov = _world(tmp_path)
    assert main(['train', '--config', 'world_vanilla', ov[0], '--device', 'cpu', *ov[1:4], '--quiet', *ov[4:]]) == 0
    assert (tmp_path/'run'/'summary.json').is_file()
