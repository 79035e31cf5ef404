"AttentionLoss on the library's real classifiers (ResNet, ABN ResNet): every term trains, ABN outputs are understood."
import pytest, torch
from groundsup.losses import AttentionLoss
from groundsup.models import build_model

def _batch(B=2, size=64):
    torch.manual_seed(0)
    masks = torch.zeros(B, 1, size, size); masks[..., 16:48, 16:48] = 1
    maps = torch.rand(B, 2, size, size); maps[1] = 0          # image 1: no grounding evidence
    return {'image': torch.randn(B, 3, size, size), 'label': torch.tensor([0, 1]), 'mask': masks, 'map': maps}

@pytest.mark.parametrize('terms, expected', [
    (dict(gradient_outside=dict(weight=100.)), {'cls', 'gradient_outside'}),
    (dict(gradcam=dict(weight=1., source='mask', mode='match')), {'cls', 'gradcam'}),
    (dict(gradient_outside=dict(weight=10., source='zeros', criterion='l2'), gradcam=dict(source='grounding')), {'cls', 'gradient_outside', 'gradcam'}),
    (dict(energy=dict(weight=1., source='mask')), {'cls', 'energy'}),
    (dict(energy=dict(source='grounding', layer=['layer3', 'layer4']), counterfactual=dict(source='mask', threshold=0.5)), {'cls', 'energy', 'counterfactual'}),
])
def test_resnet_terms_train(terms, expected):
    model = build_model('resnet18', num_classes=2).train()
    loss, parts = AttentionLoss(**terms)(model, _batch())
    assert set(parts) == expected and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)

def test_abn_terms():
    model = build_model('resnet18_abn', num_classes=2).train()
    lf = AttentionLoss(abn_classification=1.0, abn_supervision=dict(source='mask', mode='match', weight=2.0))
    loss, parts = lf(model, _batch())
    assert set(parts) == {'cls', 'abn_classification', 'abn_supervision'}
    loss.backward()
    assert model.att_conv.weight.grad.abs().sum() > 0

def test_abn_terms_need_an_abn_model():
    with pytest.raises(TypeError, match='ABN model'):
        AttentionLoss(abn_classification=1.0)(build_model('resnet18', num_classes=2), _batch())
