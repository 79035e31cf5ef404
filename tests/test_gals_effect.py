"The pieces behind the GALS effect on the world: the world backbone, non-vanishing attention terms, GALS's selection rule."
import json
import pytest, torch
from groundsup.losses import AttentionLoss, Term, TermInputs, GRADIENT_OF
from groundsup.models import build_model, shipped_weights_path, SHIPPED_WEIGHTS
from groundsup.experiment import load_config, run_experiment, summary_table
from groundsup.train import train, TrainConfig, ToyImages, toy_net, run_trials

def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 2))

def _batch():
    g = torch.Generator().manual_seed(0)
    m = torch.zeros(4, 1, 8, 8); m[..., 2:6, 2:6] = 1
    return {'image': torch.randn(4, 3, 8, 8, generator=g), 'label': torch.tensor([0, 1, 0, 1]), 'mask': m}

@pytest.mark.parametrize('gradient_of', list(GRADIENT_OF))
def test_every_gradient_of_trains_the_model(gradient_of):
    net = _net()
    loss, parts = AttentionLoss(gradient_outside=dict(source='mask', weight=10., gradient_of=gradient_of))(net, _batch())
    assert parts['gradient_outside'] > 0
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())

def test_gradient_of_default_is_gals():
    net, b = _net(), _batch()
    a = AttentionLoss(gradient_outside=dict(source='mask'))(net, b)[0]
    c = AttentionLoss(gradient_outside=dict(source='mask', gradient_of='loss'))(net, b)[0]
    d = AttentionLoss(gradient_outside=dict(source='mask', gradient_of='log_prob_sum'))(net, b)[0]
    assert torch.equal(a, c) and not torch.equal(a, d)

def test_gradcam_over_several_layers_is_the_mean():
    net, b = _net(), _batch()
    one = [AttentionLoss(gradcam=dict(source='mask', layer=l))(net, b)[1]['gradcam'] for l in ('1', '3')]
    both = AttentionLoss(gradcam=dict(source='mask', layer=['1', '3']))(net, b)[1]['gradcam']
    torch.testing.assert_close(both, (one[0] + one[1]) / 2)

@pytest.mark.parametrize('bad, match', [(dict(gradient_of='probs'), "gradient_of='probs'"), (dict(layer=[]), 'layer=\\[\\]'),
                                        (dict(layer=3), 'layer=3'), (dict(weight=-5.), 'weight=-5.0'), (dict(weight=float('nan')), 'weight=nan')])
def test_bad_terms_are_refused(bad, match):
    with pytest.raises(ValueError, match=match): Term(**bad)

def test_config_keys_for_the_new_options():
    cfg = load_config('world_gals', ['loss.gradient_outside.gradient_of=log_prob_sum', 'loss.gradcam.layer=[layer3,layer4]',
                                     'loss.gradcam.source=grounding', 'train.select=balanced'])
    assert cfg.loss.gradient_outside.gradient_of == 'log_prob_sum' and list(cfg.loss.gradcam.layer) == ['layer3', 'layer4']
    with pytest.raises(ValueError, match='gradient_of'): load_config('world_gals', ['loss.gradient_outside.gradient_of=nope'])
    with pytest.raises(ValueError, match='select'): load_config('world_gals', ['train.select=test_worst_group'])

def test_world_weights_ship_and_load_like_imagenet_weights():
    p = shipped_weights_path('world')
    card = json.loads(p.with_suffix('.json').read_text())
    assert p.stat().st_size < 5e6 and card['bytes'] == p.stat().st_size and card['arch'] == 'resnet_small'
    assert set(card['data']['kinds']).isdisjoint({'disc', 'ellipse', 'ring', 'triangle', 'square', 'star'})   # no benchmark shape
    m = build_model('resnet_small', 2, pretrained='world')
    from safetensors.torch import load_file
    sd = load_file(str(p))
    assert torch.equal(m.layer3[0].conv1.weight, sd['layer3.0.conv1.weight']) and m.fc.out_features == 2
    with pytest.raises(ValueError, match="for 'resnet_small', not 'resnet18'"): build_model('resnet18', 2, pretrained='world')
    assert load_config('world_vanilla').model.pretrained == 'world' and 'world' in SHIPPED_WEIGHTS

def test_select_balanced_needs_no_groups_and_picks_by_class_balance(tmp_path):
    ds = ToyImages(64, seed=0)
    run = train(toy_net(), ds, ToyImages(32, seed=1), TrainConfig(epochs=3, batch_size=16, lr=0.05, select='balanced', device='cpu'),
                out=tmp_path, progress=False)
    vals = [r['val_balanced'] for r in run.history]
    assert run.best == max(vals) and all(0 <= v <= 1 for v in vals)

def test_run_trials_reports_other_epochs_beside_the_selected_one():
    class R: pass
    def fit(seed):
        r = R(); r.cfg = TrainConfig(select='balanced')
        r.history = [{'epoch': 1, 'val_balanced': 0.9, 'val_worst_group': 0.1, 'test_worst_group': 0.5},
                     {'epoch': 2, 'val_balanced': 0.8, 'val_worst_group': 0.7, 'test_worst_group': 0.6},
                     {'epoch': 3, 'val_balanced': 0.7, 'val_worst_group': 0.2, 'test_worst_group': 0.3 + seed / 10}]
        return r
    s = run_trials(fit, seeds=(0, 1), also=('last', 'val_worst_group'))
    assert s['mean']['test_worst_group'] == pytest.approx(0.5)            # selected by val_balanced: epoch 1
    assert s['mean']['last:test_worst_group'] == pytest.approx(0.35)      # the last epoch of each trial
    assert s['mean']['val_worst_group:test_worst_group'] == pytest.approx(0.6) and s['trials'][0]['val_worst_group:epoch'] == 2

def test_run_experiment_reports_three_checkpoints(tmp_path):
    ov = [f'data.root={tmp_path}/w', f'out={tmp_path}/runs', 'seeds=[0]', 'train.epochs=2', 'data.world.n_train=32', 'data.world.n_val=8',
          'data.world.n_test=8', 'data.world.size=64', 'data.size=32', 'train.batch_size=16', 'train.device=cpu']
    s = run_experiment(load_config('world_vanilla', ov), progress=False)
    t = s['trials'][0]
    assert {'test_worst_group', 'last:test_worst_group', 'val_worst_group:test_worst_group', 'val_balanced', 'test_balanced'} <= set(t)
    assert t['last:epoch'] == 2
    table = summary_table([s], keys=('test_worst_group', 'last:test_worst_group'))
    assert 'last:worst group' in table or 'last' in table

def test_counterfactual_term_swaps_the_outside_and_trains_the_model():
    net, b = _net(), _batch()
    loss, parts = AttentionLoss(counterfactual=dict(source='mask', weight=1.))(net, b)
    assert parts['counterfactual'] > 0
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    # a classifier that ignores the outside of the target is not charged: zero the outside of every image first
    inside_only = lambda x: net(x * b['mask'])
    assert AttentionLoss(counterfactual=dict(source='mask'))(inside_only, b)[1]['counterfactual'] < 1e-6

def test_threshold_binarizes_targets_of_any_term():
    lf = AttentionLoss(counterfactual=dict(source='grounding', threshold=0.5))
    maps = torch.zeros(4, 1, 8, 8); maps[..., 2:6, 2:6] = 0.6; maps[..., 0, 0] = 1.0; maps[..., 7, 7] = 0.2
    b = {'image': torch.zeros(4, 3, 8, 8), 'map': maps}
    t, v = TermInputs(None, b, b['image'], None, None, None).targets(lf.counterfactual, 'counterfactual')
    assert set(t.unique().tolist()) == {0., 1.} and t[0, 0, 7, 7] == 0 and t[0, 0, 3, 3] == 1 and v.all()
    with pytest.raises(ValueError, match='threshold=0'): Term(threshold=0)
    with pytest.raises(ValueError, match='threshold=True'): Term(threshold=True)

def test_world_gals_cf_config():
    cfg = load_config('world_gals_cf')
    assert cfg.loss.gradient_outside is None and cfg.loss.counterfactual.threshold == 0.3 and cfg.grounding.layer == 'layer3'
    assert cfg.data.grounding != load_config('world_gals').data.grounding      # another grounding recipe, another cache
    with pytest.raises(ValueError, match='counterfactual.weight'): load_config('world_gals_cf', ['loss.counterfactual.weight=-1'])
    c = load_config('world_gals', ['loss.gradient_outside.gradient_of=margin'])
    assert c.loss.gradient_outside.gradient_of == 'margin'
