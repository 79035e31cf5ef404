"The `groundsup` command: dispatch, help, bad configs refused before work, ground/train/eval on a tiny world, and a tiny demo."
import json, shutil, subprocess, sys
from pathlib import Path
import pytest
from groundsup.cli import main, COMMANDS

def test_unknown_command_and_usage(capsys):
    assert main(['nope']) == 2
    assert "unknown command 'nope'" in capsys.readouterr().err
    assert main(['--help']) == 0 and 'groundsup {demo,train,eval,ground,bench,pretrain,audit}' in capsys.readouterr().out

@pytest.mark.parametrize('cmd', sorted(COMMANDS))
def test_every_command_has_help(cmd, capsys):
    with pytest.raises(SystemExit) as e: main([cmd, '--help'])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert ('--device' in out) == (cmd != 'pretrain')   # pretrain runs on the CPU (bit-for-bit reproduction)
    if cmd in ('train', 'eval', 'ground', 'audit'): assert '--config' in out and 'world_gals' in out

def test_console_script_is_installed():
    exe = shutil.which('groundsup') or str(Path(sys.executable).parent / 'groundsup')
    if not Path(exe).exists(): pytest.skip('groundsup console script not installed (run make install)')
    r = subprocess.run([exe, '--help'], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and 'demo' in r.stdout and 'train' in r.stdout

@pytest.mark.parametrize('args, msg', [
    (['train', '--config', 'world_vanilla', 'train.optimiser=adam'], 'optimiser'),
    (['train', '--config', 'world_vanilla', 'train.optimizer=adam'], "train.optimizer='adam'"),
    (['train', '--config', 'world_gals', 'loss.gradient_outside.criterion=l3'], 'l3'),
    (['train', '--config', 'nowhere.yaml'], 'nowhere.yaml'),
    (['ground', '--config', 'waterbirds_95_gals'], 'data.root'),
    (['train', '--config', 'world_vanilla', 'train.lr'], 'key=value'),
    (['train', '--config', 'world_vanilla', 'data.world.n_train=8'], 'n_train=8'),
])
def test_bad_configs_fail_before_any_work(tmp_path, monkeypatch, capsys, args, msg):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 1
    assert msg in capsys.readouterr().err
    assert not any(tmp_path.iterdir())           # nothing was written: no world, no run folder

def test_ground_train_eval_on_a_tiny_world(tmp_path, capsys):
    ov = [f'data.root={tmp_path}/w', f'data.grounding={tmp_path}/g', f'out={tmp_path}/runs', 'seeds=[0]', 'train.epochs=1',
          'data.world.n_train=32', 'data.world.n_val=8', 'data.world.n_test=8', 'data.world.size=96']
    assert main(['train', '--config', 'world_gals', '--quiet', '--device', 'cpu'] + ov) == 0   # grounds first
    out = capsys.readouterr().out
    assert '| world_gals | 1 |' in out and (tmp_path / 'g' / 'config.json').is_file()
    summary = json.loads((tmp_path / 'runs' / 'summary.json').read_text())
    assert main(['eval', '--config', 'world_gals', '--checkpoint', f'{tmp_path}/runs/seed0/best', '--device', 'cpu'] + ov) == 0
    out = capsys.readouterr().out
    worst = summary['trials'][0]['test_worst_group']
    assert f'worst group {100 * worst:.1f}' in out           # eval of the best checkpoint agrees with training's test figure
    shard = tmp_path / 'g' / 'maps-00000.safetensors'; t = shard.stat().st_mtime_ns
    assert main(['ground', '--config', 'world_gals', '--quiet'] + ov) == 0
    assert shard.stat().st_mtime_ns == t                      # complete cache reused
    assert main(['ground', '--config', 'world_gals', '--quiet', 'grounding.prompts=[a photo of water]'] + ov) == 1
    assert 'prompts' in capsys.readouterr().err              # a cache made with other prompts is refused

def test_tiny_demo_writes_report_and_reuses_caches(tmp_path, capsys):
    args = ['demo', '--out', str(tmp_path / 'd'), '--n_train', '32', '--n_val', '8', '--n_test', '8', '--epochs', '1',
            '--n_show', '4', '--quiet', '--device', 'cpu', '--no_upper_bound']
    assert main(args) == 0
    out = capsys.readouterr().out
    report = tmp_path / 'd' / 'report.md'
    assert f'Report: {report}' in out and '| vanilla |' in out and '| gals |' in out and '| gals_cf |' in out
    text = report.read_text()
    assert 'pointing game' in text and '![attention](attention.png)' in text and (tmp_path / 'd' / 'attention.png').stat().st_size > 1000
    m = json.loads((tmp_path / 'd' / 'metrics.json').read_text())
    assert 0 <= m['grounding']['pointing_game'] <= 1 and 0 < m['grounding']['mask_area'] < 1
    assert set(m['test']) == {'vanilla', 'gals', 'gals_cf'} and all(0 <= v <= 1 for v in m['attention_inside'].values())
    assert 'decisions flipped by a place swap' in text and 'Verdict, from group accuracy and reliance' in text   # reliance beside attention
    assert set(m['place_swap_flips']) == {'vanilla', 'gals', 'gals_cf'} and all(0 <= v <= 1 for v in m['place_swap_flips'].values())
    maps = tmp_path / 'd' / 'grounding' / 'maps-00000.safetensors'
    mtime = maps.stat().st_mtime_ns
    assert main(args) == 0
    assert maps.stat().st_mtime_ns == mtime          # grounding reused from the cache

def test_bench_train_command(capsys):
    "`groundsup bench train` runs and prints the GALS / vanilla ratio (tiny sizes: the figures are the benchmark's job, not the test's)."
    assert main(['bench', 'train', '--arch', 'resnet18', '--size', '32', '--batch_size', '2', '--steps', '1', '--device', 'cpu']) == 0
    assert 'gals_over_vanilla' in capsys.readouterr().out

def test_bench_train_options(tmp_path, capsys):
    "The project's own architecture, chosen terms and a JSON file; an unknown architecture is one line naming the known ones."
    out = tmp_path/'bench.json'
    assert main(['bench', 'train', '--arch', 'resnet_small', '--size', '32', '--batch_size', '2', '--steps', '1', '--device', 'cpu',
                 '--terms', 'counterfactual', 'energy', '--json', str(out)]) == 0
    printed = capsys.readouterr().out
    assert '| counterfactual | resnet_small |' in printed and '| energy |' in printed and '| gradcam |' not in printed
    assert [r['loss'] for r in json.loads(out.read_text())['rows']] == ['vanilla', 'counterfactual', 'energy']
    assert main(['bench', 'train', '--arch', 'resnet_small_typo', '--device', 'cpu']) == 1
    err = capsys.readouterr().err
    assert "arch='resnet_small_typo'" in err and 'resnet_small' in err and 'Traceback' not in err

@pytest.mark.slow
def test_bench_reliance_command(capsys):
    "`groundsup bench reliance`: the grounded swap test on 400 images with 4 partners (the world's defaults)."
    assert main(['bench', 'reliance', '--device', 'cpu']) == 0
    out = capsys.readouterr().out
    assert 'swap_test_images_per_s' in out and 'grounding_s' in out

@pytest.mark.slow
def test_bench_grounding_command(capsys):
    assert main(['bench', 'grounding', '--batch_size', '2', '--device', 'cpu']) == 0
    out = capsys.readouterr().out
    assert 'speedup' in out and 'max_abs_diff' in out
