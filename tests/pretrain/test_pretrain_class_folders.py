"""Pretraining on class folders as users have them (issue 17, case b22): a hidden folder is not a
class; an empty class folder stops training with the sentence datasets/check.py prints."""

import argparse
import os

import pytest
import torch

from resdet.config import load_config
from resdet.errors import UserError
from resdet.pretrain.train import run
from tests.pretrain.tiny_cls_data import make_b22_folders

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "pretrain")
ARGS = argparse.Namespace(eval_only=False, resume=False)


def _cfg(tmp_path):
    return load_config(os.path.join(CONFIGS, "Base-ImageNet.yaml"), [
        "MODEL.DEVICE", "cpu", "MODEL.RESDET.ARCH", "cifar_resnet20", "MODEL.RESDET.NUM_CLASSES",
        "3", "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "3", "SOLVER.MAX_ITER", "1",
        "SOLVER.STEPS", "[]", "SOLVER.CHECKPOINT_PERIOD", "100", "SOLVER.AMP.ENABLED", "False",
        "TEST.EVAL_PERIOD", "0", "PRETRAIN.TRAIN_RESIZE_RANGE", "[32, 36]", "PRETRAIN.CROP_SIZE",
        "32", "PRETRAIN.TEST_RESIZE", "32", "PRETRAIN.MEAN_SAMPLES", "3",
        "PRETRAIN.LR_POLICY", "step", "PRETRAIN.TEST_BATCH_SIZE", "3",
        "OUTPUT_DIR", str(tmp_path / "out")])


def test_b22_trains_with_three_classes_then_empty_class_stops_it(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "ds"))
    monkeypatch.setenv("RESDET_PROGRESS", "0")
    make_b22_folders(str(tmp_path / "ds"))  # with an empty .ipynb_checkpoints in train and val
    res = run(_cfg(tmp_path), ARGS)
    assert not res["interrupted"]
    assert res["eval_results"]["imagenet_val"]["num_images"] == 3
    final = torch.load(str(tmp_path / "out" / "model_final.pth"), weights_only=True)
    assert final["classes"] == ["n01", "n02", "n03"]

    empty = os.path.join(str(tmp_path / "ds"), "imagenet", "train", "n04")
    os.makedirs(empty)
    with pytest.raises(UserError) as e:
        run(_cfg(tmp_path), ARGS)
    assert str(e.value).startswith(
        f"Dataset imagenet_train: 1 class folder(s) hold no images: {empty}; torchvision's "
        "ImageFolder refuses empty classes too, so add images (")
