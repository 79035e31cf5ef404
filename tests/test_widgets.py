"Widgets driven from code on random-init models: what changes, and what is not recomputed."
import time
import pytest, torch
import torch.nn as nn
import open_clip

from groundsup.grounding import CLIPBundle, ground_dataset, MapCache
from groundsup.attribution import METHODS
from groundsup.train import toy_net, train, TrainConfig, track_attention, ToyImages
from groundsup.widgets import Comparer, DatasetView, TrainingView, clip_input, widgets_available, STATIC_NOTICE

N = 6

@pytest.fixture(scope='module')
def clip():
    "A random-init tiny CLIP ResNet (96 px input: a 3 x 3 grid at layer4; this seed gives non-zero maps)."
    torch.manual_seed(0)
    cfg = dict(embed_dim=32, vision_cfg=dict(image_size=96, layers=[1, 1, 1, 1], width=8, head_width=8),
               text_cfg=dict(context_length=16, vocab_size=49408, width=32, heads=2, layers=1))
    return CLIPBundle.from_model(open_clip.CLIP(**cfg).eval(), name='test-rn')

@pytest.fixture(scope='module')
def data():
    g = torch.Generator().manual_seed(1)
    images = torch.rand(N, 3, 48, 48, generator=g)
    labels = torch.tensor([0, 1, 0, 1, 0, 1])
    groups = torch.tensor([0, 1, 2, 3, 0, 1])
    masks = torch.zeros(N, 1, 48, 48, dtype=torch.bool); masks[:, :, 10:30, 10:30] = True
    return images, labels, groups, masks

class Counting(nn.Module):
    "Wraps a classifier and counts forward passes by image."
    def __init__(self, net): super().__init__(); self.net, self.images = net, 0
    def forward(self, x): self.images += len(x); return self.net(x)

def make(clip, data, **kw):
    "A comparer on the test images (saliency by default: GradCAM of a random toy net can be all zero)."
    images, labels, groups, masks = data
    kw.setdefault('attribution', 'saliency')
    torch.manual_seed(0)
    return Comparer(images, clip, Counting(toy_net(2)), prompts=['a photo of a bird'], labels=labels, groups=groups, masks=masks,
                    classes=['land', 'water'], **kw)

def test_comparer_builds_and_scores(clip, data):
    c = make(clip, data)
    assert c.error is None, c.error
    assert all(len(p.value) > 100 and p.value[:4] == b'\x89PNG' for p in c.panels.values())
    assert set(c.last['scores']) >= {'pointing_game', 'energy_inside', 'rank_correlation', 'attention_energy_inside_mask'}
    assert c.last['grounding'].shape[0] == 1 and c.last['attention'].shape[0] == 1
    assert 'pred' in c.titles['image'].value and '%' in c.titles['image'].value
    assert 'ready' in c.status.value and 'groundsup-busy' not in c.widget._dom_classes
    assert [c.calls[k] for k in ('ground', 'attribute', 'forward')] == [1, 1, 1]

def test_prompt_change_regrounds_only(clip, data):
    c = make(clip, data)
    before = {k: p.value for k, p in c.panels.items()}
    n0, g0 = c.calls.copy(), c.last['grounding']
    fwd = c.model.images
    c.prompt_box.value = 'a photo of a bird, a photo of water'          # what typing + Enter does
    assert c.calls['ground'] - n0['ground'] == 1
    assert c.calls['attribute'] == n0['attribute'] and c.model.images == fwd
    assert c.last['grounding'].shape[0] == 2 and not torch.equal(c.last['grounding'][:1], c.last['grounding'][1:])
    assert c.panels['image'].value == before['image'] and c.calls['render_image'] == n0['render_image']
    assert c.panels['grounding'].value != before['grounding']
    assert [label for label, _ in c.grounding_view.options][1:] == ['"a photo of a bird"', '"a photo of water"']
    c.grounding_view.value = 1                                           # show one prompt: no new grounding
    assert c.calls['ground'] - n0['ground'] == 1
    assert torch.equal(c.last['shown_grounding'], c.last['grounding'][1:])
    c.prompts = ['a photo of a bird']                                    # back to cached prompts
    assert c.calls['ground'] - n0['ground'] == 1 and torch.equal(c.last['grounding'], g0)

def test_navigation_and_caches(clip, data):
    c = make(clip, data)
    c.next_button.click(); assert c.index == 1 and c.jump.value == 1 and c.slider.value == 1
    c.prev_button.click(); c.prev_button.click(); assert c.index == N - 1        # wraps around
    c.slider.value = 2; assert c.index == 2
    c.jump.value = 4; assert c.index == 4
    n = c.calls.copy(); fwd = c.model.images
    for i in (1, 2, 4): c.index = i                                          # all seen: nothing recomputed
    assert [c.calls[k] - n[k] for k in ('ground', 'attribute', 'forward', 'score')] == [0, 0, 0, 0] and c.model.images == fwd
    with pytest.raises(IndexError, match='index=99'): c.index = 99

def test_display_controls_do_not_recompute(clip, data):
    c = make(clip, data)
    n = c.calls.copy()
    c.opacity.value = 0.9; c.colormap.value = 'viridis'
    assert [c.calls[k] - n[k] for k in ('ground', 'attribute', 'forward', 'score')] == [0, 0, 0, 0]
    assert c.calls['render_image'] == n['render_image']
    assert c.calls['render_grounding'] - n['render_grounding'] == 2 and c.calls['render_attention'] - n['render_attention'] == 2
    s0 = c.last['scores']['energy_inside']
    c.threshold.value = 0.2                                               # the grounded region grows: new scores, no new maps
    assert [c.calls[k] - n[k] for k in ('ground', 'attribute')] == [0, 0] and c.calls['score'] - n['score'] == 1
    assert c.last['scores']['energy_inside'] >= s0

@pytest.mark.parametrize('method', list(METHODS))
def test_every_attribution_method(clip, data, method):
    c = make(clip, data)
    n = c.calls['attribute']
    c.attribution_method.value = method
    assert c.error is None, c.error
    assert c.calls['attribute'] == n + (method != 'saliency') and c.last['attention'].shape[0] == 1

def test_targets(clip, data):
    c = make(clip, data)
    pred = int(c.last['logits'].argmax())
    n = c.calls['attribute']
    c.target.value = pred; assert c.calls['attribute'] == n            # the same class as 'pred': cached
    c.target.value = 1 - pred; assert c.calls['attribute'] == n + 1 and c.last['target'] == 1 - pred
    c.target.value = 'true'; assert c.last['target'] == int(data[1][0])

def test_filters(clip, data):
    c = make(clip, data)
    c.group_filter.value = 1
    assert c._positions == [1, 5] and c.index == 1 and 'of 6' in c.count.value
    c.next_button.click(); assert c.index == 5
    c.group_filter.value = None; c.label_filter.value = 0
    assert c._positions == [0, 2, 4]
    c.label_filter.value = None; c.misclassified.value = True
    preds = c.logits(range(N)).argmax(1)
    assert c._positions == (preds != data[1]).nonzero().flatten().tolist()
    c.misclassified.value = False
    c.group_filter.value = 3; c.index = 0                                # an image the filter hides: the filter is cleared
    assert c.group_filter.value is None and c.index == 0

def test_errors_show_in_status(clip, data):
    c = make(clip, data)
    c.prompts = ' , '
    assert isinstance(c.error, ValueError) and 'prompts' in c.status.value
    c.grounding_layer.value = 'layer3'; c.prompts = 'a bird'
    assert c.error is None and c.last['grounding'].shape[-1] == 6            # layer3 of a 96 px input: a 6 x 6 grid
    with pytest.raises(ValueError, match='attribution='): make(clip, data, attribution='lime')
    with pytest.raises(ValueError, match='source'): Comparer(torch.rand(2, 48, 48), clip, toy_net(2))

def test_model_modes_untouched(clip, data):
    images, labels, groups, masks = data
    net = toy_net(2).train()
    Comparer(images, clip, net)
    assert net.training and all(p.requires_grad for p in net.parameters())

def test_grounding_cache(clip, data, tmp_path):
    images = data[0]
    cache = ground_dataset(clip, list(clip_input(clip, images)), ['a photo of a bird'], tmp_path / 'maps', progress=False)
    c = make(clip, data, cache=MapCache(tmp_path / 'maps'))
    assert c.calls['ground'] == 0 and c.calls['grounding_cache'] == 1
    c2 = make(clip, data)
    torch.testing.assert_close(c.last['grounding'], c2.last['grounding'], atol=2e-3, rtol=0)   # fp16 cache
    c.prompts = 'a photo of water'                                       # not in the cache: grounded live
    assert c.calls['ground'] == 1

def test_dataset_view(clip, data):
    c = make(clip, data)
    n = c.calls.copy()
    dv = DatasetView(c, n_gallery=3, with_comparer=False)
    assert c.calls['ground'] - n['ground'] == N - 1 and c.calls['attribute'] - n['attribute'] == N - 1   # the shown image is cached
    r = dv.results['rank_correlation']
    order = dv.ranking()
    vals = [float(r[i]) for i in order if not torch.isnan(r[i])]
    assert vals == sorted(vals) and len(order) == N
    assert len(dv.gallery.children) == 3 and dv.histogram.value[:4] == b'\x89PNG'
    dv.gallery.children[1].children[-1].click()
    assert c.index == order[1]
    h = dv.histogram.value
    dv.score.value = 'energy_inside'
    assert dv.histogram.value != h and dv.ranking()[0] == int(dv.results['energy_inside'].nan_to_num(9).argmin())
    n = c.calls.copy()
    dv.update()                                                         # same settings: all from the caches
    assert [c.calls[k] - n[k] for k in ('ground', 'attribute', 'score')] == [0, 0, 0]
    c.prompts = 'a photo of water'; dv.update_button.click()
    assert c.calls['ground'] - n['ground'] == N and dv.settings['prompts'] == ['a photo of water']

def test_training_view(tmp_path):
    ds = ToyImages(32, 16)
    probes = torch.stack([ds[i]['image'] for i in range(3)])
    runs = {}
    for name, lr in (('vanilla', 0.1), ('other', 0.01)):
        torch.manual_seed(0)
        train(toy_net(2), ds, cfg=TrainConfig(epochs=3, batch_size=8, lr=lr, device='cpu'), out=tmp_path / name,
              hooks={'after_epoch': [track_attention(probes, torch.tensor([int(ds[i]['label']) for i in range(3)]), every=1)]}, progress=False)
        runs[name] = tmp_path / name
    masks = torch.zeros(3, 1, 16, 16, dtype=torch.bool); masks[..., 8:] = True
    tv = TrainingView(runs, masks=masks, grounding=masks.float())
    assert tv.epochs == [1, 2, 3] and tv.epoch.value == 3
    assert tv.calls['render'] == 3 + 2 * 3
    first = tv.cells['vanilla', 0].value
    tv.epoch.value = 1
    assert tv.calls['render'] == 9 + 6 and tv.cells['vanilla', 0].value != first       # probes' row unchanged
    s = tv.scores()
    assert set(s) == {'vanilla', 'other'} and set(s['vanilla']) == {'accuracy', 'energy_inside_mask', 'rank_correlation_grounding'}
    tv.opacity.value = 0.2; assert tv.calls['render'] == 15 + 9
    assert 'vanilla' in tv.summary.value
    with pytest.raises(ValueError, match='runs'): TrainingView({})

def test_static_fallback(clip, data, capsys):
    c = make(clip, data)
    assert not widgets_available()                                      # pytest: no Jupyter kernel
    c.show()
    assert STATIC_NOTICE in capsys.readouterr().out
    fig = c.static_figure([0, 1])
    assert len(fig.axes) >= 8

def test_threads_restored(clip, data):
    old = torch.get_num_threads()
    seen = []
    class Probe(nn.Module):
        def __init__(self): super().__init__(); self.net = toy_net(2)
        def forward(self, x): seen.append(torch.get_num_threads()); return self.net(x)
    Comparer(data[0], clip, Probe(), threads=1)
    assert seen and set(seen) == {1} and torch.get_num_threads() == old
    with pytest.raises(ValueError, match='threads=0'): Comparer(data[0], clip, toy_net(2), threads=0)

# ---------- yes/no answers (FeedbackView) ----------
import json
from groundsup.widgets import FeedbackView
from groundsup.feedback import map_hash

def test_answers_are_saved_and_move_on(clip, data, tmp_path):
    c = make(clip, data)
    fv = FeedbackView(c, tmp_path / 'a.jsonl', keys=False)
    shown = c.last['attention']
    fv.wrong_button.click()
    lines = (tmp_path / 'a.jsonl').read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[-1]) == {'end': 1} and json.loads(lines[1])['id'] == 0 and json.loads(lines[1])['answer'] == 'wrong'
    assert json.loads(lines[1])['map_hash'] == map_hash(shown)                  # the map that was shown
    assert c.index == 1 and 'not answered' in fv.answer.value
    fv.right_button.click(); assert c.index == 2
    c.index = 0; assert 'wrong' in fv.answer.value                              # an answered image shows its answer
    fv.give('right'); assert fv.annotations.get(0)['answer'] == 'right' and c.index == 2   # re-answered; the next unanswered
    assert c.timings['answer_and_next'] > 0 and c.timings['answer_and_next_cpu'] < 0.3
    assert fv.count.value == f'2 answered: 0 wrong, 2 right, 0 region · {N - 2} left'

def test_answers_reload_filter_and_count(clip, data, tmp_path):
    c = make(clip, data)
    fv = FeedbackView(c, tmp_path / 'a.jsonl', keys=False)
    for a in ('wrong', 'right', 'wrong'): fv.give(a)                          # images 0, 1, 2
    c2 = make(clip, data, index=2)                                             # as after a kernel restart
    fv2 = FeedbackView(c2, tmp_path / 'a.jsonl', keys=False)
    assert fv2.annotations.counts() == {'right': 1, 'wrong': 2, 'region': 0} and 'wrong' in fv2.answer.value
    assert fv2.count.value == f'3 answered: 2 wrong, 1 right, 0 region · {N - 3} left'
    fv2.answer_filter.value = 'wrong'; assert c2._positions == [0, 2]
    fv2.answer_filter.value = 'right'; assert c2._positions == [1] and c2.index == 1
    fv2.answer_filter.value = 'unanswered'; assert c2._positions == [3, 4, 5] and c2.index == 3
    fv2.give('right'); assert c2._positions == [4, 5] and c2.index == 4        # the answered image leaves the filter
    c2.index = 0                                                                # an image the filter hides: the filter is reset
    assert fv2.answer_filter.value == 'all' and c2.index == 0 and len(c2._positions) == N
    fv2.answer_filter.value = 'unanswered'; c2.group_filter.value = 1         # filters combine: group 1 is images 1 and 5
    assert c2._positions == [5]

def test_propose_picks_the_most_disagreeing_unanswered(clip, data, tmp_path):
    c = make(clip, data)
    fv = FeedbackView(c, tmp_path / 'a.jsonl', keys=False, score='energy_inside')
    s = c.scores(range(N))['energy_inside'].nan_to_num(float('inf'))
    order = sorted(range(N), key=lambda i: (float(s[i]), i))
    assert fv.propose() == order[0] and c.index == order[0]
    fv.give('wrong')
    assert fv.propose() == order[1]                                             # the answered one is skipped
    fv2 = FeedbackView(make(clip, data), tmp_path / 'b.jsonl', keys=False, advance='propose', score='energy_inside')
    fv2.give('right'); assert fv2.comparer.index == order[0] or order[0] == 0 and fv2.comparer.index == order[1]
    for _ in range(N): fv.give('right')
    assert fv.propose() is None and 'every image' in c.status.value

def test_annotations_for_another_dataset_are_refused(clip, data, tmp_path):
    c = make(clip, data)
    FeedbackView(c, tmp_path / 'a.jsonl', keys=False).give('wrong')
    other = Comparer(data[0][:4], clip, toy_net(2), attribution='saliency')      # other images: another dataset key
    with pytest.raises(ValueError, match=r'a\.jsonl was made for another dataset'): FeedbackView(other, tmp_path / 'a.jsonl', keys=False)
    f = tmp_path / 'b.jsonl'
    FeedbackView(c, f, keys=False).give('wrong')
    key = json.loads(f.read_text().splitlines()[0])['dataset']
    lines = f.read_text().splitlines()                                          # an unknown id before the end line, counted
    f.write_text('\n'.join(lines[:-1] + [json.dumps({'id': 99, 'answer': 'wrong', 'map_hash': '0' * 16, 'time': 'x'}), json.dumps({'end': len(lines) - 1})]) + '\n')
    with pytest.raises(ValueError, match=r'b\.jsonl: 1 id\(s\) are not images of this dataset'): FeedbackView(c, f, keys=False, dataset=key)

def test_feedback_keys(clip, data, tmp_path):
    pytest.importorskip('ipyevents')
    c = make(clip, data)
    fv = FeedbackView(c, tmp_path / 'a.jsonl')
    assert [e.watched_events for e in fv.events[:2]] == [['keydown']] * 2 and fv.events[0].source is c.panel_row
    assert fv.events[2] is fv.mouse and fv.mouse.source is c.panels['image'] and fv.mouse.watched_events == ['mousedown', 'mouseup']
    assert len(FeedbackView(make(clip, data), tmp_path / 'b.jsonl', keys=False, regions=False).events) == 0
    fv._on_key({'type': 'keydown', 'key': 'n'}); assert fv.annotations.get(0)['answer'] == 'wrong' and c.index == 1
    fv._on_key({'type': 'keydown', 'key': 'y'}); assert fv.annotations.get(1)['answer'] == 'right'
    fv._on_key({'type': 'keydown', 'key': 'ArrowLeft'}); assert c.index == 1
    fv._on_key({'type': 'keydown', 'key': 'q'}); assert len(fv.annotations) == 2        # other keys: nothing

def test_region_answers(clip, data, tmp_path):
    "A box and a click on an image: saved as a region (replacing a yes/no answer), outlined, filtered, counted, reloaded."
    from groundsup.feedback import box_region, region_mask
    c = make(clip, data)
    fv = FeedbackView(c, tmp_path / 'a.jsonl', keys=False, regions=False)   # add_region works without the mouse events
    fv.give('wrong'); c.index = 0
    png, box = c.panels['image'].value, (0.1, 0.1, 0.5, 0.5)
    rec = fv.add_region(box=box)
    assert (rec['answer'], rec['boxes'], rec['clicks'], c.index) == ('region', [list(box)], [], 0)   # replaces 'wrong'; the view stays
    assert torch.equal(fv.annotations.region_maps()[0], box_region([box]))
    assert c.panels['image'].value != png and 'region (1 box, 0 clicks)' in fv.answer.value
    rec = fv.add_region(click=(0.4, 0.3))
    assert rec['boxes'] == [list(box)] and rec['clicks'] == [[0.4, 0.3]]
    assert torch.equal(fv.annotations.region_maps()[0], region_mask([box], [(0.4, 0.3)], c.grounding([0])[0], threshold=0.3))
    assert c.timings['region_answer'] > 0 and c.timings['region_answer_cpu'] < 0.3
    assert fv.count.value == f'1 answered: 0 wrong, 0 right, 1 region · {N - 1} left'
    outlined, n = c.panels['image'].value, c.calls['render_image']
    c.colormap.value = [o for o in c.colormap.options if o != c.colormap.value][0]   # a refresh of the same image keeps the outline
    assert c.panels['image'].value == outlined and c.calls['render_image'] == n
    c.index = 1; assert c.panels['image'].value != outlined
    c.index = 0; assert c.panels['image'].value == outlined                  # drawn again when the image comes back
    with pytest.raises(ValueError, match='one of'): fv.add_region()
    # the mouse, as ipyevents reports it: a drag is a box, a press and release within 4 px a click (the panel's pixels)
    S = c.display_size
    c.index = 3
    fv._on_mouse({'type': 'mousedown', 'dataX': 20, 'dataY': 30}); fv._on_mouse({'type': 'mouseup', 'dataX': 120, 'dataY': 140})
    fv._on_mouse({'type': 'mousedown', 'dataX': 60, 'dataY': 60}); fv._on_mouse({'type': 'mouseup', 'dataX': 61, 'dataY': 62})
    r3 = fv.annotations.get(3)
    assert r3['boxes'] == [[20 / S, 30 / S, 120 / S, 140 / S]] and r3['clicks'] == [[61 / S, 62 / S]]
    fv._on_mouse({'type': 'mousedown', 'dataX': 10, 'dataY': 10}); fv._on_mouse({'type': 'mouseup', 'dataX': 100, 'dataY': 10})   # no height
    assert '⚠' in c.status.value and fv.annotations.get(3) == r3              # refused in the status, nothing saved
    # the filter, and a new view on the file (as after a kernel restart)
    fv.answer_filter.value = 'region'; assert c._positions == [0, 3]
    fv.answer_filter.value = 'all'
    c2 = make(clip, data, index=3)
    fv2 = FeedbackView(c2, tmp_path / 'a.jsonl', keys=False)
    assert fv2.annotations.counts() == {'right': 0, 'wrong': 0, 'region': 2} and fv2.count.value == fv.count.value
    assert 'region (1 box, 1 click)' in fv2.answer.value and c2.panels['image'].value == c.panels['image'].value   # shown and outlined
    assert torch.equal(fv2.annotations.region_maps()[3], fv.annotations.region_maps()[3])
    fv2.answer_filter.value = 'region'; assert c2._positions == [0, 3] and c2.index == 3
    fv2.give('right')                                                           # a yes/no answer replaces the region: it leaves the filter
    assert fv2.annotations.counts() == {'right': 1, 'wrong': 0, 'region': 1} and c2._positions == [0] and c2.index == 0
    fv2.answer_filter.value = 'all'
    fv2.clear(); assert 0 not in fv2.annotations and 'not answered' in fv2.answer.value and c2.index == 0
    assert c2.panels['image'].value == png                                     # the outline went with the region

def test_attribution_layer(clip, data):
    from groundsup.models import build_model
    images, labels, groups, masks = data
    torch.manual_seed(0)
    net = build_model('resnet_small', 2, pretrained=False).eval()
    grid = lambda **kw: tuple(Comparer(images, clip, net, labels=labels, attribution='gradcam', **kw).attention([0]).shape[-2:])
    assert grid() == (3, 3) and grid(attribution_layer='layer3') == (6, 6)       # 48 px: layer4 is 3 x 3, layer3 6 x 6
    with pytest.raises(ValueError, match='nope'): Comparer(images, clip, net, attribution_layer='nope')
    c = Comparer(images, clip, net, labels=labels, attribution='saliency', attribution_layer='layer3')   # not used by saliency
    assert tuple(c.attention([0]).shape[-2:]) == (48, 48)
