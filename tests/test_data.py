"Datasets end to end: loaders with worker processes, maps moving with PIL images, bad files and bad metadata."
import csv, warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import transforms as T1

from groundsup.data import (CSVDataset, Food101Subset, ImageDataset, ImageLoadError, WaterbirdsDataset, eval_transform,
                            gals_transform, load_image, sample_weights, train_transform, upweights, weighted_sampler)

H, W = 60, 80

def _coord_image(path):
    "Lossless RGB image whose red channel encodes x and green channel encodes y (0..255)."
    yy, xx = np.mgrid[:H, :W]
    a = np.stack([np.rint(xx * 255 / (W - 1)), np.rint(yy * 255 / (H - 1)), np.zeros_like(xx)], -1).astype(np.uint8)
    Image.fromarray(a).save(path)
    return torch.from_numpy(a[..., :2].astype(np.float32) / 255).permute(2, 0, 1)   # 2 x H x W, as the map

def _waterbirds(root: Path, n=8, masks=True):
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        y, place = i % 2, (i // 2) % 2
        Image.new('RGB', (W, H), (30 + 20 * i, 90, 140)).save(root/f'{i}.png')
        m = np.zeros((H, W), np.uint8); m[10:30, 20 + i:40 + i] = 255
        Image.fromarray(m).save(root/f'{i}_mask.png')
        rows.append(dict(img_id=i, img_filename=f'{i}.png', y=y, split=0 if i < 6 else 2, place=place,
                         **({'mask_filename': f'{i}_mask.png'} if masks else {})))
    with open(root/'metadata.csv', 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0])); w.writeheader(); w.writerows(rows)
    return root

def test_map_moves_with_pil_image_through_dataset(tmp_path):
    coords = _coord_image(tmp_path/'c.png')
    ds = ImageDataset([tmp_path/'c.png'], [0], img_ids=['c'], maps={'c': coords}, transform=train_transform(40, scale=(0.3, 1.0), normalize=False))
    for seed in range(8):
        torch.manual_seed(seed)
        it = ds[0]
        # PIL resamples the uint8 image, torch the float map: equal up to quantization and one resampling step
        assert (it['map'] - it['image'][:2]).abs().max() < 0.04, seed
    # a flip alone is exact
    flip = ImageDataset([tmp_path/'c.png'], [0], img_ids=['c'], maps={'c': coords}, transform=T_flip())
    it = flip[0]
    assert torch.allclose(it['map'], it['image'][:2], atol=1e-6)   # same pixels (uint8 / 255 rounding aside)
    assert it['map'][0, 0, 0] == 1.0 and it['map'][0, 0, -1] == 0.0    # x reversed

def T_flip():
    from torchvision.transforms import v2
    return v2.Compose([v2.RandomHorizontalFlip(p=1.0), v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])

def test_native_grid_maps_are_upsampled_to_the_image(tmp_path):
    _coord_image(tmp_path/'c.png')
    grid = torch.zeros(1, 7, 7); grid[0, :, :3] = 1.0                       # left 3/7 of the image
    ds = ImageDataset([tmp_path/'c.png'], [0], img_ids=['c'], maps={'c': grid})
    m = ds[0]['map']
    assert m.shape == (1, H, W)
    assert m[0, :, :20].min() > 0.99 and m[0, :, -20:].max() < 0.01

def test_dataloader_with_workers_collates_maps_and_masks(tmp_path):
    root = _waterbirds(tmp_path/'wb')
    maps = {i: torch.rand(3, 7, 7) for i in range(8)}
    ds = WaterbirdsDataset(root, 'train', transform=train_transform(32), maps=maps)
    batches = list(DataLoader(ds, batch_size=3, num_workers=2))
    b = batches[0]
    assert b['image'].shape == (3, 3, 32, 32) and b['map'].shape == (3, 3, 32, 32) and b['mask'].shape == (3, 1, 32, 32)
    assert b['group'].tolist() == [2 * y + p for y, p in zip(b['label'].tolist(), b['place'].tolist())]
    assert sum(len(x['index']) for x in batches) == 6
    assert set(torch.unique(torch.cat([x['mask'] for x in batches])).tolist()) <= {0.0, 1.0}   # masks stay binary

def test_masks_from_a_folder(tmp_path):
    root = _waterbirds(tmp_path/'wb', masks=False)
    (root/'segs').mkdir()
    for i in range(8): (root/f'{i}_mask.png').rename(root/'segs'/f'{i}.png')
    ds = WaterbirdsDataset(root, 'test', masks='segs', transform=eval_transform(32, 36))
    assert ds[0]['mask'].shape == (1, 32, 32)
    with pytest.raises(ValueError, match="no 'mask_filename' column"): WaterbirdsDataset(root, masks=True)
    with pytest.raises(FileNotFoundError, match='nothere'): WaterbirdsDataset(root, masks='nothere')

@pytest.mark.parametrize('kind', ['truncated_jpeg', 'truncated_png', 'empty', 'text'])
def test_corrupt_files_are_named(tmp_path, kind):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path/'ok.jpg')
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path/'ok.png')
    src = {'truncated_jpeg': 'ok.jpg', 'truncated_png': 'ok.png'}.get(kind)
    bad = tmp_path/f'bad_{kind}.img'
    bad.write_bytes((tmp_path/src).read_bytes()[:400] if src else b'' if kind == 'empty' else b'hello')
    with pytest.raises(ImageLoadError, match=f'bad_{kind}.img'): load_image(bad)
    ds = ImageDataset([tmp_path/'ok.jpg', bad], [0, 1])
    with pytest.raises(ImageLoadError, match=f'bad_{kind}.img'): ds[1]
    with pytest.warns(UserWarning, match='skipped 1 of 2'):
        ds = ImageDataset([tmp_path/'ok.jpg', bad], [0, 1], on_error='skip')
    assert len(ds) == 1 and ds.skipped[0][0] == str(bad) and ds.labels.tolist() == [0]

def test_modes_become_rgb_without_warnings(tmp_path):
    base = Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8))
    p = base.convert('P'); p.info['transparency'] = 0; p.save(tmp_path/'pt.png', transparency=0)
    base.convert('LA').save(tmp_path/'la.png'); base.convert('CMYK').save(tmp_path/'cmyk.jpg'); base.convert('CMYK').save(tmp_path/'cmyk.tif')
    Image.fromarray(np.asarray(base.convert('L'), np.float32) / 255).save(tmp_path/'f.tif')
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        for f in ['pt.png', 'la.png', 'cmyk.jpg', 'cmyk.tif', 'f.tif']:
            im = load_image(tmp_path/f)
            assert im.mode == 'RGB' and im.size == (16, 16), f
    assert np.abs(np.asarray(load_image(tmp_path/'f.tif'), int) - np.asarray(base.convert('L').convert('RGB'), int)).max() <= 1

def _rewrite(root, fn):
    with open(root/'metadata.csv', newline='') as f: rows = list(csv.DictReader(f))
    rows = [fn(i, dict(r)) for i, r in enumerate(rows)]
    with open(root/'metadata.csv', 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0])); w.writeheader(); w.writerows(rows)

def test_bad_metadata_fails_at_construction(tmp_path):
    root = _waterbirds(tmp_path/'wb')
    _rewrite(root, lambda i, r: {**r, 'split': 'Test' if i == 3 else r['split']})
    assert len(WaterbirdsDataset(root, 'test')) == 3                             # split names are accepted, any case
    _rewrite(root, lambda i, r: {**r, 'split': '-1' if i == 3 else r['split']})
    with pytest.raises(ValueError, match=r"row 5, column 'split': unknown split value '-1'"): WaterbirdsDataset(root)
    _rewrite(root, lambda i, r: {**r, 'split': '0', 'place': '1.5' if i == 2 else r['place']})
    with pytest.raises(ValueError, match=r"row 4, column 'place': '1.5' is not an integer"): WaterbirdsDataset(root)
    _rewrite(root, lambda i, r: {('file' if k == 'img_filename' else k): v for k, v in r.items() if k != 'place'})
    with pytest.raises(ValueError, match=r"missing column\(s\) \['img_filename', 'place'\]"): WaterbirdsDataset(root)

def test_map_source_contract(tmp_path):
    root = _waterbirds(tmp_path/'wb')
    with pytest.raises(ValueError, match='no map for any'):
        WaterbirdsDataset(root, maps={'0': torch.rand(1, 7, 7)})                  # img_ids are ints, keys are str
    calls = []
    def source(key):
        calls.append(key)
        return None if key == 1 else np.ones((7, 7), np.float32)
    ds = WaterbirdsDataset(root, maps=source, transform=gals_transform(16))
    assert ds.map_shape == (1, 7, 7) and ds[0]['map'].min() > 0.999 and ds[1]['map'].max() == 0.0
    strict = WaterbirdsDataset(root, maps=source, missing_maps='raise')
    with pytest.raises(KeyError, match='img_id=1'): strict[1]
    by_index = WaterbirdsDataset(root, maps=[torch.rand(2, 7, 7) for _ in range(6)], map_key='index')
    assert by_index[5]['map'].shape == (2, H, W)
    with pytest.raises(ValueError, match='P x h x w'): WaterbirdsDataset(root, maps=lambda k: torch.rand(2, 2, 7, 7))
    with pytest.raises(TypeError, match='v1 transform'):
        WaterbirdsDataset(root, maps=source, transform=T1.Compose([T1.Resize(16), T1.ToTensor()]))
    plain = WaterbirdsDataset(root, masks=False, transform=T1.Compose([T1.Resize((16, 16)), T1.ToTensor()]))  # v1 fine without maps
    assert plain[0]['image'].shape == (3, 16, 16)

def test_upweighting_balances_groups(tmp_path):
    root = _waterbirds(tmp_path/'wb', n=8)
    ds = WaterbirdsDataset(root, None)
    g = ds.groups
    w = sample_weights(ds, 'group')
    assert torch.allclose(torch.bincount(g, weights=w), torch.full((4,), float(torch.bincount(g).min())))
    draws = torch.tensor(list(weighted_sampler(ds, 'class', num_samples=20000, generator=torch.Generator().manual_seed(0))))
    frac = torch.bincount(ds.labels[draws], minlength=2).float() / 20000
    assert (frac - 0.5).abs().max() < 0.02
    with pytest.raises(ValueError, match="by='place'"): sample_weights(ds, 'place')
    assert torch.equal(upweights([1, 1, 1, 0]), torch.tensor([1.0, 1 / 3]))

def test_csv_paths_relative_to_csv_folder(tmp_path, monkeypatch):
    (tmp_path/'sub'/'imgs').mkdir(parents=True)
    Image.new('RGB', (10, 10)).save(tmp_path/'sub'/'imgs'/'a.png')
    Image.new('L', (12, 10)).save(tmp_path/'sub'/'imgs'/'b.png')
    (tmp_path/'sub'/'list.csv').write_text('path,label,group\nimgs/a.png,1,3\nimgs/b.png,0,0\n')
    monkeypatch.chdir(tmp_path)
    ds = CSVDataset('sub/list.csv', transform=gals_transform(8))
    assert len(ds) == 2 and ds.groups.tolist() == [3, 0] and ds.n_groups == 4 and ds.num_classes == 2
    assert ds[1]['image'].shape == (3, 8, 8)
    with pytest.raises(ValueError, match="missing column"): CSVDataset('sub/list.csv', split='train')

def test_food101_parent_folder_and_missing_meta(tmp_path):
    root = tmp_path/'food-101'
    (root/'meta').mkdir(parents=True)
    lines = []
    for c in ['steak', 'pork_chop']:
        (root/'images'/c).mkdir(parents=True)
        for k in range(5):
            Image.new('RGB', (8, 8)).save(root/'images'/c/f'{k}.jpg'); lines.append(f'{c}/{k}')
    (root/'meta'/'train.txt').write_text('\n'.join(lines)); (root/'meta'/'test.txt').write_text('\n'.join(lines[:2]))
    ds = Food101Subset(tmp_path, 'val', classes=['steak', 'pork_chop'], val_fraction=0.4)
    assert len(ds) == 4 and ds.classes == ['pork_chop', 'steak']
    with pytest.raises(ValueError, match='filet_mignon'): Food101Subset(tmp_path)
    with pytest.raises(FileNotFoundError, match='train.txt'): Food101Subset(tmp_path/'elsewhere', classes=['steak'])
