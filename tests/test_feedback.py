"Yes/no feedback end to end: answers about the world's training images, the feedback term from YAML, refusals, a run resumed after more answers."
import json
import pytest, torch
from groundsup.experiment import load_config, build_datasets, run_experiment, prepare_data
from groundsup.feedback import Annotations, dataset_key, simulate_annotations
from groundsup.losses import AttentionLoss

def _ov(tmp_path, **kw):
    ov = {'data.root': f'{tmp_path}/w', 'out': f'{tmp_path}/runs', 'seeds': '[0]', 'train.epochs': 1, 'data.world.n_train': 32,
          'data.world.n_val': 8, 'data.world.n_test': 8, 'data.world.size': 64, 'data.size': 32, 'train.batch_size': 16, 'train.device': 'cpu'}
    ov.update(kw)
    return [f'{k}={v}' for k, v in ov.items()]

@pytest.fixture
def world(tmp_path):
    cfg = load_config('world_vanilla', _ov(tmp_path))
    prepare_data(cfg, progress=False)
    return cfg

def _answers(tmp_path, cfg, n=6, name='a.jsonl'):
    train = build_datasets(cfg, splits=('train',))['train']
    att = torch.rand(len(train), 1, 4, 4)
    masks = torch.zeros(len(train), 1, 4, 4, dtype=torch.bool); masks[:, :, :2] = True
    return simulate_annotations(tmp_path/name, train.img_ids, dataset_key(train), att, masks, torch.rand(len(train)), n, progress=False)

def test_feedback_config_needs_the_answers(tmp_path, world):
    with pytest.raises(ValueError, match='data.feedback=answers.jsonl'): load_config('world_feedback', _ov(tmp_path))
    with pytest.raises(FileNotFoundError, match='nope.jsonl'): load_config('world_feedback', _ov(tmp_path, **{'data.feedback': f'{tmp_path}/nope.jsonl'}))
    ann = _answers(tmp_path, world)
    with pytest.raises(ValueError, match='no loss.feedback term'): load_config('world_vanilla', _ov(tmp_path, **{'data.feedback': str(ann.path)}))
    cfg = load_config('world_feedback', _ov(tmp_path, **{'data.feedback': str(ann.path), 'loss.feedback.form': 'gradcam', 'loss.feedback.weight': 2}))
    assert cfg.loss.feedback.source == 'feedback' and cfg.loss.feedback.form == 'gradcam'
    with pytest.raises(ValueError, match='form'): load_config('world_feedback', _ov(tmp_path, **{'data.feedback': str(ann.path), 'loss.feedback.form': 'crayon'}))

def test_feedback_maps_ride_with_the_training_images(tmp_path, world):
    ann = _answers(tmp_path, world)
    cfg = load_config('world_feedback', _ov(tmp_path, **{'data.feedback': str(ann.path)}))
    train = build_datasets(cfg, splits=('train',))['train']
    signs = {}
    for i in range(len(train)):
        it = train[i]
        assert it['feedback'].shape == (1, 32, 32)
        signs[it['img_id']] = int(torch.sign(it['feedback'].sum()))
    assert {i: s for i, s in signs.items() if s} == {i: (1 if r['answer'] == 'right' else -1) for i, r in ann.records.items()}
    b = {k: torch.stack([train[i][k] for i in range(8)]) if k in ('image', 'feedback') else torch.tensor([train[i][k] for i in range(8)])
         for k in ('image', 'label', 'feedback')}
    from groundsup.models import build_model
    loss, parts = AttentionLoss(feedback=dict(threshold=0.5))(build_model('resnet_small', 2, pretrained=False), b)
    assert torch.isfinite(loss) and 'cls' in parts

def test_answers_about_another_dataset_or_unknown_ids_are_refused(tmp_path, world):
    other = load_config('world_vanilla', _ov(tmp_path, **{'data.root': f'{tmp_path}/w2', 'data.world.seed': 1}))
    prepare_data(other, progress=False)
    ann = _answers(tmp_path, other, name='other.jsonl')
    cfg = load_config('world_feedback', _ov(tmp_path, **{'data.feedback': str(ann.path)}))
    with pytest.raises(ValueError, match='another dataset'): build_datasets(cfg, splits=('train',))
    mine = _answers(tmp_path, world, name='mine.jsonl')
    lines = mine.path.read_text().splitlines()
    r = json.loads(lines[1]); r['id'] = 99999
    mine.path.write_text('\n'.join(lines[:-1] + [json.dumps(r), json.dumps({'end': len(lines) - 1})]) + '\n')   # before the end line, counted
    cfg = load_config('world_feedback', _ov(tmp_path, **{'data.feedback': str(mine.path)}))
    with pytest.raises(ValueError, match='not images of this dataset.*99999'): build_datasets(cfg, splits=('train',))

def test_feedback_run_trains_and_refuses_to_resume_on_other_answers(tmp_path, world):
    ann = _answers(tmp_path, world, n=12)
    cfg = load_config('world_feedback', _ov(tmp_path, **{'data.feedback': str(ann.path)}))
    s = run_experiment(cfg, progress=False)
    assert 'test_worst_group' in s['trials'][0]
    assert any('feedback' in k for k in s['trials'][0]), sorted(s['trials'][0])
    train = build_datasets(cfg, splits=('train',))['train']
    Annotations(ann.path, train.img_ids, dataset_key(train)).answer(next(i for i in train.img_ids if i not in ann), 'wrong', torch.rand(1, 4, 4))
    with pytest.raises(ValueError, match='feedback_digest'): run_experiment(load_config('world_feedback', _ov(tmp_path, **{'data.feedback': str(ann.path)})), progress=False)

def test_feedback_forwards_the_whole_batch_so_batch_norm_sees_the_usual_batch():
    from groundsup.models import build_model
    torch.manual_seed(0)
    net = build_model('resnet_small', 2, pretrained=False).train()
    sizes = []
    h = net.register_forward_hook(lambda m, i, o: sizes.append(len(i[0])))
    fb = torch.zeros(8, 1, 4, 4); fb[3, 0, :2] = -1.     # one answered image in a batch of 8
    b = {'image': torch.rand(8, 3, 32, 32), 'label': torch.randint(0, 2, (8,)), 'feedback': fb}
    for form in ('counterfactual', 'gradcam'):
        sizes.clear()
        loss, parts = AttentionLoss(feedback=dict(form=form, threshold=0.5, layer='layer3'))(net, b)
        assert 'feedback' in parts and set(sizes) == {8}, (form, sizes)
    h.remove()

# ---------------------------------------------------------------- several writers on one annotations file (issue 21)
_WRITER = '''
import sys, torch
from groundsup.feedback import Annotations
path, start, go = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ann = Annotations(path, list(range(40)), dataset='40:k')
import os, time
while not os.path.exists(go): time.sleep(0.005)          # both writers start together
for i in range(start, start + 20): ann.answer(i, 'wrong' if i % 2 else 'right', torch.full((1, 4, 4), i / 40))
'''

def test_two_processes_write_one_file_nothing_lost(tmp_path):
    import subprocess, sys
    f, go = tmp_path/'ann.jsonl', tmp_path/'go'
    Annotations(f, list(range(40)), dataset='40:k')
    script = tmp_path/'writer.py'; script.write_text(_WRITER)
    procs = [subprocess.Popen([sys.executable, str(script), str(f), str(s), str(go)]) for s in (0, 20)]
    go.touch()
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    ann = Annotations(f, list(range(40)), dataset='40:k')
    assert ann.answered() == set(range(40))                                   # all 40 answers on disk
    assert all(ann.get(i)['answer'] == ('wrong' if i % 2 else 'right') for i in range(40))
    assert torch.allclose(ann.map(33), torch.full((1, 4, 4), 33 / 40))

def test_reader_while_a_writer_writes(tmp_path):
    "A reader opening the file while another process writes always sees a whole file, and never fewer answers than before."
    import subprocess, sys
    f, go = tmp_path/'ann.jsonl', tmp_path/'go'
    Annotations(f, list(range(40)), dataset='40:k')
    script = tmp_path/'writer.py'; script.write_text(_WRITER)
    p = subprocess.Popen([sys.executable, str(script), str(f), '0', str(go)])
    go.touch()
    seen = []
    while p.poll() is None: seen.append(len(Annotations(f, list(range(40)), dataset='40:k')))
    assert p.wait() == 0 and seen == sorted(seen) and len(Annotations(f, list(range(40)), dataset='40:k')) == 20

def test_two_views_alternating_and_a_held_lock(tmp_path):
    from filelock import FileLock
    f = tmp_path/'ann.jsonl'
    a, b = Annotations(f, [0, 1, 2], dataset='3:k'), Annotations(f, [0, 1, 2], dataset='3:k')
    a.answer(0, 'wrong', torch.rand(4, 4)); b.answer(1, 'wrong', torch.rand(4, 4)); a.answer(2, 'right', torch.rand(4, 4))
    assert Annotations(f, [0, 1, 2], dataset='3:k').answered() == {0, 1, 2}      # the issue's repro: image 1's answer was lost
    with pytest.warns(UserWarning, match="id 2 was answered 'right' by another writer"): b.clear(2)   # b never saw a's answer
    assert a.refresh().answered() == {0, 1}
    with FileLock(str(f) + '.lock'):                                           # a writer that hangs: a clear error, not a silent wait
        c = Annotations.__new__(Annotations); c.__dict__.update(a.__dict__); c.timeout = 0.2
        with pytest.raises(TimeoutError, match='ann.jsonl.lock'): c.answer(0, 'right', torch.rand(4, 4))

def test_eval_with_a_feedback_config_needs_no_answers(tmp_path, world, capsys):
    "`groundsup eval --config world_feedback` evaluates a checkpoint without data.feedback (eval reads no answers)."
    from groundsup.cli import main
    run_experiment(world, progress=False)
    ck = f'{tmp_path}/runs/seed0/best'
    assert main(['eval', '--config', 'world_feedback', '--checkpoint', ck, '--device', 'cpu'] + _ov(tmp_path)) == 0, capsys.readouterr().err
    assert 'worst group' in capsys.readouterr().out
    assert main(['train', '--config', 'world_feedback', '--device', 'cpu', '--quiet'] + _ov(tmp_path)) == 1     # training still needs them
    assert 'data.feedback' in capsys.readouterr().err
