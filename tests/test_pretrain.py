"Remaking the shipped world backbone: the file's bytes are a function of its tensors, and `groundsup pretrain`'s check against the shipped file (bit for bit, or within the stated tolerance)."
import json
from pathlib import Path
import pytest, torch
from safetensors.torch import load_file, save_file
from groundsup.cli import main
from groundsup.models import SmallResNet, shipped_weights_path
from groundsup.pretrain import save_backbone, shipped_card, weights_sha256
from groundsup.world import EXTRA_SHAPES, PLACES

def _shipped_net():
    "The network `pretrain_backbone` returns when it remakes the shipped backbone: its tensors (and some pretraining head), its card."
    net = SmallResNet(16, len(EXTRA_SHAPES) + len(PLACES))
    missing, unexpected = net.load_state_dict(load_file(str(shipped_weights_path('world'))), strict=False)
    assert sorted(missing) == ['fc.bias', 'fc.weight'] and not unexpected
    return net, {k: v for k, v in shipped_card().items() if k not in ('sha256', 'bytes')}

def test_save_backbone_bytes_depend_only_on_the_tensors(tmp_path):
    # safetensors writes its metadata in a random order at every call; save_backbone must not pass that on
    net, card = _shipped_net()
    for i in range(8):
        assert weights_sha256(save_backbone(net, card, tmp_path / f'w{i}.safetensors')) == shipped_card()['sha256']

def _variant(tmp_path, name, scale=1.0, steps=None, drop=None):
    "A copy of the shipped backbone file, its float weights scaled, its step counters set, or a tensor dropped."
    sd = load_file(str(shipped_weights_path('world')))
    sd = {k: (v.clone() if 'num_batches_tracked' in k else v * scale) for k, v in sd.items() if k != drop}
    if steps is not None: sd = {k: (torch.full_like(v, steps) if 'num_batches_tracked' in k else v) for k, v in sd.items()}
    save_file(sd, str(tmp_path / name), metadata={'arch': 'resnet_small', 'name': 'groundsup-world-rn'})
    return tmp_path / name

def _card(path, **acc):
    c = shipped_card()
    return {**c, 'sha256': weights_sha256(path), 'accuracy': {**c['accuracy'], **acc}}

def test_compare_with_shipped_bit_for_bit():
    from groundsup.pretrain import compare_with_shipped
    r = compare_with_shipped(shipped_card(), shipped_weights_path('world'))
    assert r['passed'] and r['bit_for_bit'] and r['same_bytes'] and r['line'].startswith('PASS') and 'bit for bit' in r['line']

def test_compare_with_shipped_within_and_outside_tolerance(tmp_path):
    from groundsup.pretrain import compare_with_shipped, REPRO_TOLERANCE
    kind = shipped_card()['accuracy']['held_out_kind']
    p = _variant(tmp_path, 'near.safetensors', scale=1.3)     # other weights: another CPU's kernels move them this much and more
    r = compare_with_shipped(_card(p, held_out_kind=kind + REPRO_TOLERANCE['held_out_kind'] / 2), p)
    assert r['passed'] and not r['bit_for_bit'] and not r['same_bytes'] and r['line'].startswith('PASS within tolerance')
    assert r['weights']['identical'] == 12 and 0.29 < r['weights']['max'] < 0.31   # only the step counters agree
    r = compare_with_shipped(_card(p, held_out_kind=kind - 2 * REPRO_TOLERANCE['held_out_kind']), p)
    assert not r['passed'] and r['line'].startswith('FAIL') and 'held-out kind' in r['line']
    r = compare_with_shipped(_card(p, held_out_place=0.9), p)
    assert not r['passed'] and 'held-out place' in r['line']
    p = _variant(tmp_path, 'short.safetensors', steps=7)       # bit-identical floats, another number of steps
    r = compare_with_shipped(_card(p), p)
    assert not r['passed'] and not r['bit_for_bit'] and 'steps' in r['line']
    c = _card(p); c['recipe'] = {**c['recipe'], 'epochs': 1}
    r = compare_with_shipped(c, shipped_weights_path('world'))
    assert not r['passed'] and 'recipe' in r['line'] and 'epochs' in r['line']
    c = _card(p); c['recipe'] = {**c['recipe'], 'threads': 1}   # another thread count is the same recipe
    assert compare_with_shipped(c, shipped_weights_path('world'))['bit_for_bit']
    with pytest.raises(ValueError, match='conv1.weight'):
        compare_with_shipped(_card(p), _variant(tmp_path, 'cut.safetensors', drop='conv1.weight'))

def test_cli_pretrain_reports_pass_and_fail(tmp_path, monkeypatch, capsys):
    import groundsup.cli as cli
    net, card = _shipped_net()
    monkeypatch.setattr(cli, 'pretrain_backbone', lambda **kw: (net, {**card, 'cpu': {'capability': 'AVX2'}}))
    assert main(['pretrain', '--out', str(tmp_path / 'w.safetensors'), '--quiet']) == 0
    out = capsys.readouterr().out
    assert 'PASS bit for bit' in out and shipped_card()['sha256'][:16] in out
    saved = json.loads((tmp_path / 'w.json').read_text())
    assert saved['sha256'] == shipped_card()['sha256'] and saved['cpu'] == {'capability': 'AVX2'}
    with torch.no_grad(): net.conv1.weight.mul_(1.01)
    bad = {**card, 'accuracy': {**card['accuracy'], 'held_out_kind': 0.5}}
    monkeypatch.setattr(cli, 'pretrain_backbone', lambda **kw: (net, bad))
    assert main(['pretrain', '--out', str(tmp_path / 'w.safetensors'), '--quiet']) == 1
    out = capsys.readouterr().out
    assert 'FAIL' in out and 'held-out kind' in out
