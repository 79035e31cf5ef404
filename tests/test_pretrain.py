"Remaking the shipped world backbone: the file's bytes are a function of its tensors."
import json
from pathlib import Path
import pytest, torch
from safetensors.torch import load_file
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
