"The concept audit: refusals (concept lists, checkpoints that do not fit the config), and the cache on a tiny world."
import pytest, torch
from groundsup.audit import audit, check_concepts
from groundsup.cli import main, audit_command
from groundsup.data import WaterbirdsDataset, gals_transform
from groundsup.models import build_model
from groundsup.train import save_checkpoint
from groundsup.world import make_world, load_world_clip, OBJECT_PROMPT, PLACE_PROMPTS

CONCEPTS = [OBJECT_PROMPT] + PLACE_PROMPTS

@pytest.mark.parametrize('concepts, msg', [([], r'concepts=\[\]'), (['', 'a photo of land'], 'blank'), ([OBJECT_PROMPT, '   '], 'blank'),
                                           ('a photo of a shape', 'list of prompts'), ([OBJECT_PROMPT, OBJECT_PROMPT], 'more than once')])
def test_bad_concept_lists_are_refused(concepts, msg):
    with pytest.raises(ValueError, match=msg): check_concepts(concepts)

def test_cli_refuses_blank_concepts_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(['audit', '--config', 'world_vanilla', '--checkpoint', str(tmp_path / 'nowhere'), f'data.root={tmp_path}/w', '--concepts', ' ']) == 1
    assert 'blank' in capsys.readouterr().err
    with pytest.raises(ValueError, match=r'concepts=\[\]'): audit_command('world_vanilla', str(tmp_path / 'nowhere'), concepts=[])
    assert not any(tmp_path.iterdir())

@pytest.mark.parametrize('arch, classes', [('resnet18', 2), ('resnet_small', 3)])
def test_checkpoint_of_another_model_is_refused(tmp_path, capsys, arch, classes):
    ck = save_checkpoint(tmp_path / 'ck', build_model(arch, classes, pretrained=False))
    assert main(['audit', '--config', 'world_vanilla', '--checkpoint', str(ck), f'data.root={tmp_path}/w']) == 1
    err = capsys.readouterr().err
    assert 'does not match the config' in err and 'model.name=resnet_small' in err
    assert not (tmp_path / 'w').exists()                 # refused before the data is made

def test_audit_is_cached_and_refuses_other_settings(tmp_path):
    root = make_world(tmp_path / 'w', n_train=4, n_val=4, n_test=8, progress=False)
    ds = WaterbirdsDataset(root, 'test', transform=gals_transform(32))
    clip = load_world_clip(device='cpu')
    torch.manual_seed(0); net = build_model('resnet_small', 2, pretrained=False)
    r = audit(net, ds, clip, CONCEPTS, out=tmp_path / 'a', progress=False)
    assert r.shares.shape == (8, 3) and not r.reused
    assert torch.allclose(r.shares.sum(1), torch.ones(8), atol=1e-4)
    r2 = audit(net, ds, clip, CONCEPTS, out=tmp_path / 'a', progress=False)
    assert r2.reused and torch.equal(r2.shares, r.shares)
    with pytest.raises(ValueError, match='differs in: context'): audit(net, ds, clip, CONCEPTS, context='grounding', out=tmp_path / 'a', progress=False)
    with pytest.raises(ValueError, match='differs in: concepts'): audit(net, ds, clip, CONCEPTS[:2], out=tmp_path / 'a', progress=False)
    # the grounding cache is shared: another classifier in another folder grounds nothing again
    net2 = build_model('resnet_small', 2, pretrained=False)
    r3 = audit(net2, ds, clip, CONCEPTS, out=tmp_path / 'b', grounding=tmp_path / 'a' / 'grounding', progress=False)
    assert not r3.reused and r3.shares.shape == (8, 3)
