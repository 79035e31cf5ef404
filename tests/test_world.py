"World generator: determinism, Waterbirds format, caching and refusal of mismatching folders."
import csv, json
import numpy as np, pytest, torch
from PIL import Image
from groundsup.world import make_world, sample_scenes, render_scenes, world_clip_config, register_world_clip, WORLD_CLIP

def _rows(root): return list(csv.DictReader(open(root / 'metadata.csv')))

def test_same_seed_same_pixels_other_seed_differs(tmp_path):
    a = make_world(tmp_path / 'a', n_train=8, n_val=4, n_test=4, size=64, seed=3, progress=False)
    b = make_world(tmp_path / 'b', n_train=8, n_val=4, n_test=4, size=64, seed=3, progress=False)
    c = make_world(tmp_path / 'c', n_train=8, n_val=4, n_test=4, size=64, seed=4, progress=False)
    for r in _rows(a):
        pa, pb = np.array(Image.open(a / r['img_filename'])), np.array(Image.open(b / r['img_filename']))
        assert (pa == pb).all()
        assert (np.array(Image.open(a / r['mask_filename'])) == np.array(Image.open(b / r['mask_filename']))).all()
    assert _rows(a) == _rows(b)
    assert any((np.array(Image.open(a / r['img_filename'])) != np.array(Image.open(c / r['img_filename']))).any() for r in _rows(a))

@pytest.mark.parametrize('bias', [0.95, 1.0])
def test_bias_and_balanced_splits(tmp_path, bias):
    root = make_world(tmp_path / 'w', bias=bias, n_train=100, n_val=8, n_test=12, size=32, progress=False)
    rows = _rows(root)
    tr = [r for r in rows if r['split'] == '0']
    assert sum(r['y'] == r['place'] for r in tr) == round(bias * 100)
    for split, n in (('1', 8), ('2', 12)):
        groups = [(r['y'], r['place']) for r in rows if r['split'] == split]
        assert len(groups) == n and all(groups.count(g) == n // 4 for g in set(groups)) and len(set(groups)) == 4

def test_masks_match_rendering(tmp_path):
    root = make_world(tmp_path / 'w', n_train=4, n_val=0, n_test=0, size=96, progress=False)
    for r in _rows(root):
        m = np.array(Image.open(root / r['mask_filename'])) > 127
        assert 0.005 < m.mean() < 0.5          # a visible shape, not the whole image
        img = np.array(Image.open(root / r['img_filename'])).astype(float)
        # the shape is flat-coloured: little colour variation inside the mask compared to the image
        assert img[m].std(0).mean() < img.reshape(-1, 3).std(0).mean()

def test_refuses_foreign_or_mismatching_folder(tmp_path):
    (tmp_path / 'x').mkdir(); (tmp_path / 'x' / 'notes.txt').write_text('mine')
    with pytest.raises(ValueError, match='not a groundsup world'): make_world(tmp_path / 'x', n_train=2, n_val=0, n_test=0, size=32)
    make_world(tmp_path / 'w', n_train=2, n_val=0, n_test=0, size=32, progress=False)
    with pytest.raises(ValueError, match="'size': \\(32, 48\\)"): make_world(tmp_path / 'w', n_train=2, n_val=0, n_test=0, size=48)

def test_resume_after_interruption(tmp_path):
    root = make_world(tmp_path / 'w', n_train=6, n_val=0, n_test=0, size=32, progress=False)
    ref = {r['img_filename']: np.array(Image.open(root / r['img_filename'])) for r in _rows(root)}
    info = json.loads((root / 'world.json').read_text()); info['complete'] = False
    (root / 'world.json').write_text(json.dumps(info)); (root / 'metadata.csv').unlink()
    (root / 'images' / '00002.jpg').unlink()
    make_world(tmp_path / 'w', n_train=6, n_val=0, n_test=0, size=32, progress=False)
    for k, v in ref.items(): assert (np.array(Image.open(root / k)) == v).all()

def test_render_is_batch_independent():
    s = sample_scenes(6, seed=11, p_empty=0.3)
    imgs, masks = render_scenes(s, size=48)
    for i in range(6):
        one = {k: v[i:i + 1] for k, v in s.items()}
        a, b = render_scenes(one, size=48)
        assert torch.equal(a[0], imgs[i]) and torch.equal(b[0], masks[i])

def test_tiny_clip_config_registers_with_open_clip():
    import open_clip
    assert register_world_clip() == WORLD_CLIP and WORLD_CLIP in open_clip.list_models()
    cfg = world_clip_config()
    assert isinstance(cfg['vision_cfg']['layers'], list)     # ModifiedResNet tower: GradCAM at visual.layer4
    assert open_clip.get_tokenizer(WORLD_CLIP)(['a photo of a shape']).shape == (1, cfg['text_cfg']['context_length'])

def test_shipped_tiny_clip_loads_and_grounds_the_shapes():
    "Regression test of the shipped checkpoint on a few held-out scenes (full figures: nbs/05_world.ipynb)."
    from groundsup.world import load_world_clip, evaluate_world_clip, world_clip_path
    assert world_clip_path().stat().st_size < 20e6
    clip = load_world_clip(device='cpu')
    ev = evaluate_world_clip(clip, n=48, seed=1, batch_size=24)
    assert ev['grid'] == (7, 7)
    assert ev['place_accuracy'] > 0.9
    assert ev['object_pointing_game'] > 0.6 and ev['object_energy_ratio'] > 3

def test_shipped_tiny_vit_loads_and_grounds_with_relevance():
    "The ViT tower (relevance): the object above chance, the places off the object (full figures: nbs/05_world.ipynb)."
    import open_clip
    from groundsup.grounding import resolve_method
    from groundsup.world import load_world_clip, evaluate_world_clip, world_clip_path, WORLD_CLIP_VIT
    assert register_world_clip(WORLD_CLIP_VIT) == WORLD_CLIP_VIT and WORLD_CLIP_VIT in open_clip.list_models()
    assert world_clip_path(WORLD_CLIP_VIT).stat().st_size < 20e6
    clip = load_world_clip(device='cpu', name=WORLD_CLIP_VIT)
    assert resolve_method(clip, 'auto') == 'relevance'
    ev = evaluate_world_clip(clip, n=48, seed=1, batch_size=24)
    assert ev['grid'] == (7, 7) and ev['place_accuracy'] > 0.9
    assert ev['object_energy_ratio'] > 3 and ev['place_pointing_game'] < 0.5
