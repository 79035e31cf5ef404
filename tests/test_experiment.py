"The shipped experiment configurations: every one loads and passes the checks once its paths are given."
import pytest
from pathlib import Path
from omegaconf import OmegaConf
from groundsup.experiment import load_config, shipped_configs

NAMES = shipped_configs()
DATASET_NAMES = [n for n in NAMES if not n.startswith('world_')]   # the world's configs have their own defaults (made on first use)

def test_configs_ship():
    assert {'waterbirds_95_gals', 'waterbirds_100_gals', 'redmeat_gals', 'waterbirds_95_vanilla', 'waterbirds_95_abn',
            'waterbirds_95_upweight', 'waterbirds_95_gals_cf', 'waterbirds_100_gals_cf', 'redmeat_gals_cf'} <= set(NAMES)

@pytest.mark.parametrize('dataset, prompts', [('waterbirds_95', ['an image of a bird', 'a photo of a bird']),
                                              ('waterbirds_100', ['an image of a bird', 'a photo of a bird']),
                                              ('redmeat', ['an image of meat', 'a photo of meat'])])
def test_gals_configs_ground_with_gals_recipe(dataset, prompts):
    "The GALS configs carry GALS's stage 1 (configs/*_attention.yaml of the GALS repository); the _cf ones differ in the loss only."
    from groundsup.experiment import config_changes
    ov = ['data.root=/x', 'data.grounding=/y']
    gals, cf = load_config(f'{dataset}_gals', ov), load_config(f'{dataset}_gals_cf', ov)
    for c in (gals, cf):
        assert (c.grounding.model, c.grounding.pretrained, list(c.grounding.prompts), c.grounding.method, c.grounding.layer) == \
               ('RN50', 'openai', prompts, 'gradcam', None)
    assert {k.split('.')[1] for k in config_changes(gals, cf)} == {'gradient_outside', 'counterfactual'} and cf.loss.gradient_outside is None
    t = cf.loss.counterfactual
    assert (t.weight, t.threshold, t.criterion, t.combine, t.source) == (3 if dataset == 'waterbirds_100' else 1, 0.3, 'l1', 'average_nonzero', 'grounding')
    assert 'untested on the real data' in (Path(__file__).parents[1]/'groundsup'/'assets'/'configs'/f'{dataset}_gals_cf.yaml').read_text().splitlines()[0].lower()

def test_world_object_share_option():
    "data.world.object_share reaches make_world's options; a share the shapes cannot have is refused when the config is read."
    from groundsup.experiment import config_changes
    cfg = load_config('world_vanilla', ['data.root=/x', 'data.world.object_share=0.12'])
    assert cfg.data.world.object_share == 0.12 and load_config('world_vanilla').data.world.object_share is None
    for bad in ('0.5', '0', '-0.1'):
        with pytest.raises(ValueError, match='data.world.object_share=.*expected'):
            load_config('world_vanilla', ['data.root=/x', f'data.world.object_share={bad}'])
    old = load_config('world_vanilla'); saved = OmegaConf.to_container(old); del saved['data']['world']['object_share']
    assert config_changes(saved, old) == []                     # a run saved before the option existed is the same config
    assert config_changes(saved, cfg) == ['data.root', 'data.world.object_share']

@pytest.mark.parametrize('name', NAMES)
def test_shipped_config_loads_with_paths(name, tmp_path):
    ov = [f'data.root={tmp_path}', f'data.grounding={tmp_path}'] if name.endswith(('gals', 'gals_cf')) else [f'data.root={tmp_path}']
    if name.endswith('feedback'):      # the answers file must exist (its content is checked when the data is built)
        (tmp_path/'answers.jsonl').touch(); ov.append(f'data.feedback={tmp_path}/answers.jsonl')
    cfg = load_config(name, ov)
    assert cfg.name == name and cfg.train.epochs > 0

@pytest.mark.parametrize('name', DATASET_NAMES)
def test_shipped_config_names_what_is_missing(name):
    with pytest.raises(ValueError, match='not set: .*data.root'):
        load_config(name)

@pytest.mark.parametrize('name', [n for n in NAMES if n.startswith('world_') and not n.endswith('_feedback')])   # those need answers (tests/test_feedback.py)
def test_world_configs_run_without_arguments(name):
    cfg = load_config(name)
    assert cfg.data.kind == 'world' and cfg.seeds == [0, 1, 2] and cfg.model.pretrained == 'world'
    assert cfg.data.root == 'groundsup-world/world-95'            # relative to the working directory, not to the package

def test_gals_published_hyperparameters():
    cfg = load_config('waterbirds_95_gals', ['data.root=/x', 'data.grounding=/y'])
    assert (cfg.loss.gradient_outside.weight, cfg.loss.gradient_outside.criterion, cfg.train.lr, cfg.train.head_lr,
            cfg.train.batch_size, cfg.train.epochs, cfg.train.weight_decay) == (10000, 'l1', 0.005, 0.0001, 96, 200, 1e-5)

def test_bad_override_fails_before_training():
    with pytest.raises(ValueError, match='loss.gradient_outside.*criterion'):
        load_config('waterbirds_95_gals', ['data.root=/x', 'data.grounding=/y', 'loss.gradient_outside.criterion=l3'])
    with pytest.raises(ValueError, match='EXP'):
        load_config('waterbirds_95_gals', ['data.root=/x', 'data.grounding=/y', 'EXP.LOSSES.GRADIENT_OUTSIDE.WEIGHT=1'])

def test_eval_crop_option(tmp_path):
    "`data.eval_crop: false` evaluates on the whole image (plain resize); true: Waterbirds' resize + centre crop."
    import torch
    from groundsup.world import make_world
    from groundsup.experiment import build_datasets
    from groundsup.data import WaterbirdsDataset, gals_transform
    root = make_world(tmp_path / 'w', n_train=8, n_val=4, n_test=4, size=64, progress=False)
    base = [f'data.root={root}', 'data.size=32', 'data.augment=crop_flip']
    crop = build_datasets(load_config('world_vanilla', base + ['data.eval_crop=true']), splits=('test',))['test'][0]['image']
    whole = build_datasets(load_config('world_vanilla', base + ['data.eval_crop=false']), splits=('test',))['test'][0]['image']
    resized = WaterbirdsDataset(root, 'test', transform=gals_transform(32))[0]['image']
    assert torch.equal(whole, resized) and not torch.equal(crop, resized)
    assert load_config('world_gals').data.eval_crop is False and load_config('waterbirds_95_gals', ['data.root=/x', 'data.grounding=/y']).data.eval_crop is True

def test_every_config_key_is_documented_and_read_from_the_library():
    "The YAML schema's keys, types, defaults and meanings come from the dataclasses and the library code they are made from."
    import dataclasses
    from omegaconf import OmegaConf
    from groundsup.experiment import config_schema, ExperimentCfg, TermCfg, LossCfg, TrainCfg
    from groundsup.losses import Term, TERMS
    from groundsup.train import TrainConfig
    rows = config_schema()
    assert [r['key'] for r in rows if not r['meaning']] == []
    flat = lambda c, p='': [k for key, v in c.items() for k in (flat(v, f'{p}{key}.') if isinstance(v, dict) else [f'{p}{key}'])]
    assert set(flat(OmegaConf.to_container(OmegaConf.structured(ExperimentCfg)))) <= {r['key'] for r in rows}
    assert [f.name for f in dataclasses.fields(TermCfg)] == [f.name for f in dataclasses.fields(Term)]
    assert {f.name for f in dataclasses.fields(TrainCfg)} == {f.name for f in dataclasses.fields(TrainConfig)} - {'seed', 'num_workers'}
    assert set(TERMS) | {'abn_classification'} == {f.name for f in dataclasses.fields(LossCfg)}

@pytest.mark.parametrize('layer, ok', [('layer3', True), ('visual.layer4', True), ('layer4.0', True), (None, True),
                                       ('layer5', False), ('attnpool', False), ('conv1', False), ('', False)])
def test_grounding_layer_is_a_stage_of_the_resnet_tower(layer, ok):
    "grounding.layer is checked when the config is read (before: a wrong name failed after the world was made, in `ground`)."
    cfg = {'data': {'root': '/w', 'grounding': '/g'}, 'grounding': {'layer': layer}, 'loss': {'gradient_outside': {}}}
    if ok: assert load_config(cfg).grounding.layer == layer
    else:
        with pytest.raises(ValueError, match=r"grounding.layer=.*expected null \(the last stage\) or a stage of 'RN50'.*layer1, layer2, layer3, layer4"):
            load_config(cfg)

def _food101(root, n=8, size=64):
    "A Food-101 folder (images/<class>/<k>.jpg, meta/train.txt, meta/test.txt) of Red Meat's five classes, rendered world scenes as images."
    from PIL import Image
    from groundsup.world import sample_scenes, render_scenes
    classes = ['prime_rib', 'pork_chop', 'steak', 'baby_back_ribs', 'filet_mignon']
    imgs, lines = render_scenes(sample_scenes(n * len(classes), seed=1), size)[0], []
    (root/'meta').mkdir(parents=True)
    for c, name in enumerate(classes):
        (root/'images'/name).mkdir(parents=True)
        for k in range(n):
            Image.fromarray((imgs[c * n + k].permute(1, 2, 0) * 255).byte().numpy()).save(root/'images'/name/f'{k}.jpg'); lines.append(f'{name}/{k}')
    (root/'meta'/'train.txt').write_text('\n'.join(lines)); (root/'meta'/'test.txt').write_text('\n'.join(lines[::4]))
    return root

@pytest.mark.parametrize('name', ['waterbirds_95_gals_cf', 'redmeat_gals_cf'])   # waterbirds_100_gals_cf: the same with another weight
def test_counterfactual_dataset_configs_run(name, tmp_path):
    "The _cf configs ground (their two prompts) and train end to end on small data: a world folder (Waterbirds format), a Food-101 folder."
    from groundsup.world import make_world
    from groundsup.experiment import run_grounding, run_experiment
    root = _food101(tmp_path/'food-101').parent if name.startswith('redmeat') else make_world(tmp_path/'wb', n_train=16, n_val=8, n_test=8, size=64, progress=False)
    small = ['grounding.model=groundsup-tiny-rn', 'grounding.pretrained=null', 'model.name=resnet_small', 'model.pretrained=false',
             'data.size=32', 'train.epochs=1', 'train.batch_size=4', 'data.num_workers=0', 'train.device=cpu']
    cfg = load_config(name, [f'data.root={root}', f'data.grounding={tmp_path}/g', f'out={tmp_path}/runs'] + small)
    assert len(run_grounding(cfg, progress=False).prompts) == 2
    assert run_experiment(cfg, progress=False)['trials'][0]['train_counterfactual'] > 0
