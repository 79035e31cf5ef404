"Metrics on batches against straightforward per-sample loops, and their edge cases."
import math
import numpy as np
import pytest, torch

from groundsup.metrics import (balanced_accuracy, coco_gender_metrics, energy_inside, group_accuracies, pointing_game,
                               rank_correlation, topk_iou, topk_region)

G = torch.Generator().manual_seed(0)

def test_group_accuracies_match_loop():
    y = torch.randint(0, 2, (200,), generator=G)
    place = torch.randint(0, 2, (200,), generator=G)
    p = torch.where(torch.rand(200, generator=G) < 0.7, y, 1 - y)
    g = 2 * y + place
    r = group_accuracies(p, y, g)
    assert set(r) == {'per_group', 'worst_group', 'mean_group', 'average'}
    for k in range(4):
        idx = [i for i in range(200) if g[i] == k]
        assert r['per_group'][k] == pytest.approx(sum(int(p[i] == y[i]) for i in idx) / len(idx))
    assert r['worst_group'] == min(r['per_group'].values())
    assert r['mean_group'] == pytest.approx(sum(r['per_group'].values()) / 4)
    assert r['average'] == pytest.approx(float((p == y).float().mean()))
    # numpy arrays and lists are accepted too, and keys are python ints
    r2 = group_accuracies(p.numpy(), y.tolist(), g.numpy())
    assert r2 == r and all(type(k) is int for k in r2['per_group'])

def test_balanced_accuracy_ignores_class_sizes():
    y = [0] * 90 + [1] * 10
    assert balanced_accuracy([0] * 100, y) == pytest.approx(0.5)
    assert group_accuracies([0] * 100, y, [0] * 100)['average'] == pytest.approx(0.9)

def test_fairness_bad_input():
    with pytest.raises(ValueError, match='no sample is labelled a=1 or b=0'): coco_gender_metrics([2, 2], [2, 2])
    with pytest.raises(TypeError, match='non-integer'): group_accuracies([0.5], [0], [0])

def _rand_maps(b=5, p=2, h=8, w=8):
    return torch.rand(b, p, h, w, generator=G)

def test_localisation_batched_equals_per_map():
    maps = _rand_maps()
    masks = torch.rand(5, 1, 8, 8, generator=G) > 0.6
    for fn in (pointing_game, energy_inside, lambda m, s, r: topk_iou(m, s, 0.3, r)):
        full = fn(maps, masks, 'none')
        assert full.shape == (5, 2)
        for i in range(5):
            for j in range(2):
                one = fn(maps[i:i + 1, j:j + 1], masks[i:i + 1], 'none')
                assert torch.equal(one[0, 0], full[i, j])

def test_energy_and_pointing_against_numpy():
    maps = _rand_maps(4, 1)
    masks = torch.rand(4, 8, 8, generator=G) > 0.5
    e = energy_inside(maps, masks, 'none')[:, 0]
    pg = pointing_game(maps, masks, 'none')[:, 0]
    for i in range(4):
        m, s = maps[i, 0].numpy(), masks[i].numpy()
        assert e[i].item() == pytest.approx((m * s).sum() / m.sum(), rel=1e-5)
        assert pg[i].item() == float(s.flat[m.argmax()])

def test_masks_formats_and_sizes():
    maps = _rand_maps(3, 1, 4, 4)
    big = torch.rand(3, 1, 16, 16, generator=G) > 0.5
    up = torch.nn.functional.interpolate(maps, size=(16, 16), mode='bilinear', align_corners=False)
    # a map smaller than the mask is upsampled (bilinear) before scoring
    assert energy_inside(maps, big) == pytest.approx(energy_inside(up, big))
    # 0/1 floats, 0/255 ints and bools are the same mask; B x H x W works as B x 1 x H x W
    for m in (big.float(), big.to(torch.uint8) * 255, big[:, 0]):
        assert energy_inside(up, m) == pytest.approx(energy_inside(up, big))
    with pytest.raises(ValueError, match='expected B x 1 x H x W'): energy_inside(up, big.expand(3, 2, 16, 16))
    with pytest.raises(ValueError, match="reduction='sum'"): energy_inside(up, big, 'sum')

def test_undefined_cases_are_nan_and_skipped():
    maps = _rand_maps(3, 1, 4, 4)
    maps[0] = 0                                   # no evidence
    masks = torch.ones(3, 4, 4, dtype=torch.bool)
    masks[1] = False                              # nothing to find
    for fn in (pointing_game, energy_inside, topk_iou):
        s = fn(maps, masks, reduction='none')[:, 0]
        assert s[:2].isnan().all() and not s[2].isnan()
        assert fn(maps, masks) == pytest.approx(float(s[2]))
        assert math.isnan(fn(maps[:2], masks[:2]))

def test_rank_correlation_matches_numpy_spearman():
    a, b = _rand_maps(3, 2, 5, 5), _rand_maps(3, 2, 5, 5)
    rho = rank_correlation(a, b, 'none')
    for i in range(3):
        for j in range(2):
            ra = np.argsort(np.argsort(a[i, j].flatten().numpy()))
            rb = np.argsort(np.argsort(b[i, j].flatten().numpy()))
            assert rho[i, j].item() == pytest.approx(np.corrcoef(ra, rb)[0, 1], abs=1e-6)
    # resizing: b given at another size is resized to a's
    assert rank_correlation(a, a[..., :, :].repeat_interleave(2, -1).repeat_interleave(2, -2)) > 0.9

def test_topk_region_size():
    maps = _rand_maps(2, 3, 10, 10)       # no ties: exactly round(k * 100) pixels
    for k in (0.01, 0.2, 0.5, 1.0):
        assert (topk_region(maps, k).flatten(-2).sum(-1) == max(1, round(k * 100))).all()
    assert topk_iou(maps, maps.clone(), 0.2) == 1.0
    with pytest.raises(ValueError, match='pass masks as bool'): topk_iou(maps, maps[:, :1], 0.2)
