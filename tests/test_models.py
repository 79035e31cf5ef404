"Classifier builders: shapes, offline fallback for ImageNet weights, local weight files, ABN outputs, parameter groups."
import socket, time, warnings

import pytest
import torch
import torch.nn as nn
import torchvision

from groundsup.models import (ABNOutput, ABNResNet, LogitsOnly, MODELS, PretrainedWeightsWarning, build_model,
                              imagenet_state_dict, logits_of, param_groups, resnet_classifier)

X = torch.randn(2, 3, 64, 64)

@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path/'torch'))
    return tmp_path/'torch'/'hub'/'checkpoints'

@pytest.mark.parametrize('arch', ['resnet18', 'resnet50'])
def test_resnet_shapes(arch):
    m = resnet_classifier(arch, num_classes=5).eval()
    with torch.no_grad(): assert m(X).shape == (2, 5)
    assert m.fc.out_features == 5

def test_offline_fallback_is_fast_and_says_what_to_do(empty_cache, monkeypatch):
    "No network: the host check fails, one warning, random init; nothing hangs."
    def unreachable(*a, **k): raise OSError('network is unreachable')
    monkeypatch.setattr(socket, 'create_connection', unreachable)
    monkeypatch.delenv('GROUNDSUP_OFFLINE', raising=False)
    t0 = time.time()
    with pytest.warns(PretrainedWeightsWarning) as rec:
        m = resnet_classifier('resnet18', num_classes=2, pretrained=True)
    assert time.time() - t0 < 5
    assert len(rec) == 1
    msg = str(rec[0].message)
    assert 'random init' in msg and "pretrained='/path/to/resnet18-f37072fd.pth'" in msg and 'network is unreachable' in msg
    assert m(X).shape == (2, 2)
    with pytest.raises(RuntimeError, match='not available'):
        resnet_classifier('resnet18', pretrained=True, on_missing='raise')

def test_stalled_host_times_out(empty_cache, monkeypatch):
    "A host that accepts nothing (connect timeout) gives up after `timeout` seconds."
    monkeypatch.delenv('GROUNDSUP_OFFLINE', raising=False)
    calls = []
    def slow(addr, timeout=None, *a, **k):
        calls.append(timeout)
        raise socket.timeout('timed out')
    monkeypatch.setattr(socket, 'create_connection', slow)
    with pytest.warns(PretrainedWeightsWarning, match='timed out'):
        assert imagenet_state_dict('resnet18', True, timeout=0.5) is None
    assert calls == [0.5]

def test_env_offline_and_cache(empty_cache, monkeypatch):
    monkeypatch.setenv('GROUNDSUP_OFFLINE', '1')
    with pytest.warns(PretrainedWeightsWarning, match='GROUNDSUP_OFFLINE'):
        assert imagenet_state_dict('resnet18') is None
    # a file in the hub cache is used without any network
    src = torchvision.models.resnet18(weights=None)
    empty_cache.mkdir(parents=True)
    torch.save(src.state_dict(), empty_cache/'resnet18-f37072fd.pth')
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        m = resnet_classifier('resnet18', num_classes=3, pretrained=True)
    assert torch.equal(m.layer2[1].conv2.weight, src.layer2[1].conv2.weight)

def test_local_weight_files(tmp_path):
    from safetensors.torch import save_file
    src = torchvision.models.resnet18(weights=None)
    sd = src.state_dict()
    torch.save({'state_dict': {f'module.{k}': v for k, v in sd.items()}}, tmp_path/'ddp.pth')
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path/'w.safetensors'))
    for f in ['ddp.pth', 'w.safetensors']:
        m = resnet_classifier('resnet18', 2, pretrained=tmp_path/f)
        assert torch.equal(m.conv1.weight, src.conv1.weight) and torch.equal(m.bn1.running_var, src.bn1.running_var), f
    # a fine-tuned checkpoint with a head of the same size keeps its head
    tuned = resnet_classifier('resnet18', 2)
    torch.save(tuned.state_dict(), tmp_path/'tuned.pth')
    assert torch.equal(resnet_classifier('resnet18', 2, pretrained=tmp_path/'tuned.pth').fc.weight, tuned.fc.weight)
    (tmp_path/'junk.pth').write_bytes(b'not a checkpoint')
    with pytest.raises(ValueError, match='junk.pth'): resnet_classifier('resnet18', pretrained=tmp_path/'junk.pth')
    with pytest.raises(ValueError, match='weights do not fit'): resnet_classifier('resnet34', pretrained=tmp_path/'ddp.pth')

@pytest.mark.parametrize('residual', [True, False])
def test_abn_outputs(residual):
    m = ABNResNet('resnet18', num_classes=4, residual=residual)
    out = m(X)
    assert isinstance(out, ABNOutput)
    assert out.logits.shape == (2, 4) and out.branch_logits.shape == (2, 4) and out.attention.shape == (2, 1, 4, 4)
    assert out.attention.min() >= 0 and out.attention.max() <= 1
    # both losses reach the attention branch; the perception loss also reaches it through M
    (out.logits.sum() + out.branch_logits.sum() + out.attention.sum()).backward()
    assert m.att_conv3.weight.grad.abs().sum() > 0 and m.att_conv2.weight.grad.abs().sum() > 0 and m.fc.weight.grad.abs().sum() > 0
    m.zero_grad()
    m(X).logits.sum().backward()
    assert m.att_conv3.weight.grad.abs().sum() > 0       # attention shapes the prediction
    assert m.att_conv2.weight.grad is None or m.att_conv2.weight.grad.abs().sum() == 0

def test_abn_resnet50_and_provided_attention():
    m = ABNResNet('resnet50', num_classes=2).eval()
    with torch.no_grad():
        out = m(X)
        assert out.attention.shape == (2, 1, 4, 4) and out.logits.shape == (2, 2)
        zero = m(X, attention=torch.zeros(2, 1, 7, 7))
        assert zero.branch_logits is None and zero.attention.abs().sum() == 0
    assert m.att_layer4[0].conv2.stride == (1, 1) and m.layer4[0].conv2.stride == (2, 2)   # torchvision Bottleneck strides in conv2
    assert m.att_layer4[0].downsample[0].stride == (1, 1)

def test_abn_checkpoint_round_trip(tmp_path):
    a = ABNResNet('resnet18', num_classes=3)
    torch.save(a.state_dict(), tmp_path/'abn.pth')
    b = ABNResNet('resnet18', num_classes=3, pretrained=tmp_path/'abn.pth')
    for (k, v), (_, w) in zip(a.state_dict().items(), b.state_dict().items()): assert torch.equal(v, w), k
    c = ABNResNet('resnet18', num_classes=5, pretrained=tmp_path/'abn.pth')     # other class count: class layers stay new
    assert torch.equal(c.att_layer4[1].conv1.weight, a.att_layer4[1].conv1.weight) and c.fc.out_features == 5

def test_logits_helpers():
    m = ABNResNet('resnet18', 2)
    out = m(X)
    assert logits_of(out) is out.logits and logits_of({'logits': out.logits}) is out.logits and logits_of(out.logits) is out.logits
    assert LogitsOnly(m)(X).shape == (2, 2)

class Wrapped(nn.Module):
    "Stand-in for DDP (`module.`) around torch.compile (`_orig_mod.`)."
    def __init__(self, m):
        super().__init__(); self.module = nn.Module(); self.module._orig_mod = m

@pytest.mark.parametrize('name', ['resnet18', 'resnet18_abn'])
def test_param_groups_cover_every_parameter_once(name):
    m = build_model(name, 3)
    for model in (m, Wrapped(m)):
        groups = param_groups(model, 0.01, 0.001, weight_decay=1e-5)
        ids = [id(p) for g in groups for p in g['params']]
        assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in m.parameters()}
        assert {id(p) for p in groups[1]['params']} == {id(m.fc.weight), id(m.fc.bias)}
        assert [(g['name'], g['lr'], g['weight_decay']) for g in groups] == [('backbone', 0.01, 1e-5), ('head', 0.001, 1e-5)]
    opt = torch.optim.AdamW(param_groups(m, 0.01, 0.001))
    assert len(opt.param_groups) == 2

def test_build_model_names():
    assert set(MODELS) >= {'resnet18', 'resnet50', 'resnet18_abn', 'resnet50_abn'}
    assert isinstance(build_model('resnet18_abn', 2, residual=False), ABNResNet)
    with pytest.raises(ValueError, match="model 'resnet'"): build_model('resnet')
    with pytest.raises(ValueError, match='num_classes=-1'): build_model('resnet18_abn', -1)

@pytest.mark.gpu
def test_abn_bf16_channels_last_on_cuda():
    m = ABNResNet('resnet50', 2).cuda().to(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 224, 224, device='cuda').to(memory_format=torch.channels_last)
    with torch.autocast('cuda', dtype=torch.bfloat16):
        out = m(x)
    assert out.attention.shape == (4, 1, 14, 14) and out.logits.shape == (4, 2)
    (out.logits.float().sum() + out.branch_logits.float().sum()).backward()
    assert torch.isfinite(m.att_conv3.weight.grad).all()
