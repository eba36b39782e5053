"""Pretraining's --eval-only refuses weights that do not fit the model (issue 15): nothing would
train the missing layers, so it would score a partly random network."""

import argparse
import os
import re

import pytest
import torch
import torchvision

from resdet.config import load_config
from resdet.errors import UserError
from resdet.pretrain.train import run
from tests.pretrain.tiny_cls_data import make_imagenet_folders

CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "pretrain",
                      "imagenet_resnet18.yaml")


def test_eval_only_refuses_weights_for_another_class_count(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "datasets"))
    monkeypatch.setenv("RESDET_PROGRESS", "0")
    # Real ImageNet-1k ids, so that the val classes map onto the 1000 outputs (issue 17) and the
    # refusal is about the weights' shapes alone
    make_imagenet_folders(str(tmp_path / "datasets"), classes=3, per_class=1, val_per_class=1,
                          names=("n01440764", "n01443537", "n01484850"))
    weights = str(tmp_path / "tv_resnet18.pth")
    # 1000 classes; the config's shortcut A has no place for its 18 projection tensors
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    cfg = load_config(CONFIG, ["MODEL.DEVICE", "cpu", "DATALOADER.NUM_WORKERS", "0",
                               "MODEL.RESDET.NUM_CLASSES", "3", "MODEL.RESNETS.STRIDE_IN_1X1",
                               "False", "MODEL.WEIGHTS", weights,
                               "OUTPUT_DIR", str(tmp_path / "out")])
    with pytest.raises(UserError, match=re.escape(
            f"{weights} does not fit the model resnet18: 102 weights matched, 0 missing, 2 with "
            "another shape ('fc.weight' (1000, 512) in the file, (3, 512) in the model; "
            "'fc.bias' (1000,) in the file, (3,) in the model), 18 in the file unused; nothing "
            "trains the missing or mismatched layers when evaluating")):
        run(cfg, argparse.Namespace(eval_only=True, resume=False))
    assert not os.path.exists(tmp_path / "out" / "eval_results.json")
