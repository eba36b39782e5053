"""Pretraining checks its datasets, config and OUTPUT_DIR before it downloads weights or builds
the model, and a failed start leaves nothing behind."""

from __future__ import annotations

import argparse
import os
import urllib.error

import pytest
import torch

from resdet.config import load_config
from resdet.errors import UserError
from resdet.pretrain import train as pretrain
from tests.pretrain.tiny_cls_data import make_imagenet_folders

CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "pretrain",
                      "imagenet_resnet18.yaml")
ARGS = argparse.Namespace(eval_only=False, resume=False)


@pytest.fixture
def calls(tmp_path, monkeypatch):
    """Records downloads (which fail: no network) and model builds."""
    seen = []
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "datasets"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def offline(url, dst, *args, **kwargs):
        seen.append(("download", os.path.basename(url)))
        raise urllib.error.URLError("no route to host")

    def build(cfg):
        seen.append(("build", cfg.MODEL.RESDET.ARCH))
        raise AssertionError("the model must not be built")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    monkeypatch.setattr(pretrain, "build_pretrain_model", build)
    return seen


def _cfg(tmp_path, *opts):
    return load_config(CONFIG, ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "torchvision://resnet18",
                                "OUTPUT_DIR", str(tmp_path / "run"), *opts])


def test_missing_dataset_is_said_before_any_download(tmp_path, calls):
    with pytest.raises(UserError, match="imagenet"):
        pretrain.run(_cfg(tmp_path), ARGS)
    assert calls == []
    assert not os.path.exists(tmp_path / "run")


def test_failed_download_says_model_weights_and_leaves_nothing(tmp_path, calls):
    make_imagenet_folders(str(tmp_path / "datasets"), classes=3, per_class=2, val_per_class=1)
    with pytest.raises(UserError) as e:
        pretrain.run(_cfg(tmp_path, "MODEL.RESDET.NUM_CLASSES", "3"), ARGS)
    msg = str(e.value)
    assert msg == ("downloading https://download.pytorch.org/models/resnet18-f37072fd.pth failed "
                   "(<urlopen error no route to host>); download the file manually and pass the "
                   "local file as MODEL.WEIGHTS (or the tool's weights option) instead of "
                   "'torchvision://resnet18'")
    assert calls == [("download", "resnet18-f37072fd.pth")]
    assert not os.path.exists(tmp_path / "run")


def test_unwritable_output_dir_is_said_before_any_download(tmp_path, calls):
    make_imagenet_folders(str(tmp_path / "datasets"), classes=3, per_class=2, val_per_class=1)
    (tmp_path / "a_file").write_text("x")
    out = tmp_path / "a_file" / "run"
    cfg = load_config(CONFIG, ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "torchvision://resnet18",
                               "MODEL.RESDET.NUM_CLASSES", "3", "OUTPUT_DIR", str(out)])
    with pytest.raises(UserError) as e:
        pretrain.run(cfg, ARGS)
    assert str(e.value) == (f"OUTPUT_DIR {out} cannot be created: {tmp_path / 'a_file'} is a "
                            "file; set OUTPUT_DIR to a folder.")
    assert calls == []
