"Trainer guarantees that need real processes: kill -9 then resume, and DDP under torchrun equal to one process."
import json, os, socket, subprocess, sys
from pathlib import Path
import pytest, torch
from safetensors.torch import load_file

SCRIPT = Path(__file__).with_name('train_script.py')

def _run(args, env_extra=None, **kw):
    env = {**os.environ, 'PYTHONUNBUFFERED': '1', 'OMP_NUM_THREADS': '1', **(env_extra or {})}
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=300, **kw)

def _weights(out): return load_file(Path(out)/'last'/'model.safetensors')

def _free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

@pytest.mark.parametrize('workers', [0, pytest.param(2, marks=pytest.mark.slow)])
def test_kill_9_mid_epoch_then_resume_matches_uninterrupted(tmp_path, workers):
    ref, cut = tmp_path/'ref', tmp_path/'cut'
    r = _run([sys.executable, SCRIPT, ref, '0', str(workers)]); assert r.returncode == 0, r.stderr
    r = _run([sys.executable, SCRIPT, cut, '8', str(workers)])              # 6 steps per epoch: dies mid-epoch 2
    assert r.returncode == -9, f"expected SIGKILL, got {r.returncode}: {r.stderr[-2000:]}"
    assert not (cut/'result.json').exists()
    assert json.loads((cut/'last'/'state.json').read_text())['state']['global_step'] == 8
    r = _run([sys.executable, SCRIPT, cut, '0', str(workers)]); assert r.returncode == 0, r.stderr
    assert 'resuming' in r.stdout
    assert json.loads((cut/'result.json').read_text()) == json.loads((ref/'result.json').read_text())
    wa, wb = _weights(ref), _weights(cut)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)

@pytest.fixture(scope='module')
def toy_ref(tmp_path_factory):
    "One uninterrupted run of train_script.py (defaults), shared by the kill tests that compare against it."
    ref = tmp_path_factory.mktemp('ref')/'run'
    r = _run([sys.executable, SCRIPT, ref, '0']); assert r.returncode == 0, r.stderr
    return ref

@pytest.mark.parametrize('point', ['after_new', 'between', 'in_tmp'])
def test_kill_9_inside_checkpoint_write_then_resume(tmp_path, toy_ref, point):
    "Issue 13 case 1: each state a kill inside `save_checkpoint` leaves (stale last.old, stale last.tmp, either alone) resumes."
    ref, cut = toy_ref, tmp_path/'cut'
    r = _run([sys.executable, SCRIPT, cut, '8'], env_extra={'KILL_IN_SAVE': point})
    assert r.returncode == -9, f"expected SIGKILL, got {r.returncode}: {r.stderr[-2000:]}"
    left = sorted(p.name for p in cut.iterdir() if p.name.startswith('last'))
    assert left == {'after_new': ['last', 'last.old'], 'between': ['last.old', 'last.tmp'], 'in_tmp': ['last', 'last.tmp']}[point]
    for _ in range(2):                                         # and the states a resumed run leaves behind are fine too
        r = _run([sys.executable, SCRIPT, cut, '0']); assert r.returncode == 0, r.stderr[-3000:]
        assert 'resuming' in r.stdout
        assert json.loads((cut/'result.json').read_text()) == json.loads((ref/'result.json').read_text())
        wa, wb = _weights(ref), _weights(cut)
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
        assert sorted(p.name for p in cut.iterdir() if p.name.startswith('last')) == ['last']

@pytest.mark.parametrize('loss', ['vanilla', 'gals'])
def test_ddp_two_processes_equal_one_process(tmp_path, loss):
    "Same global batch, data order and augmentation; no dropout (each process draws its own dropout masks)."
    one, two = tmp_path/'one', tmp_path/'two'
    r = _run([sys.executable, SCRIPT, one, '0', '0', '0', loss]); assert r.returncode == 0, r.stderr
    r = _run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_addr', '127.0.0.1',
              '--master_port', str(_free_port()), SCRIPT, two, '0', '0', '0', loss])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    h1, h2 = json.loads((one/'result.json').read_text()), json.loads((two/'result.json').read_text())
    assert [h['val_average'] for h in h1] == [h['val_average'] for h in h2]
    for a, b in zip(h1, h2): assert abs(a['train_loss'] - b['train_loss']) < 1e-5
    wa, wb = _weights(one), _weights(two)
    assert all(torch.allclose(wa[k], wb[k], atol=1e-5) for k in wa)
