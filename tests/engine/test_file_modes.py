"""Every file a pretraining run and a torchvision-engine run write follows the user's umask."""

from __future__ import annotations

import argparse
import os
import stat

import pytest

from resdet.checkpoint.atomic import atomic_write_bytes, current_umask
from resdet.config import load_config
from tests.pretrain.tiny_cls_data import make_imagenet_folders
from tests.tvdet.tvdet_helpers import config_path, tiny_opts, train_args, write_tiny_coco

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs")


@pytest.fixture(params=[0o022, 0o077], ids=["umask022", "umask077"])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _modes(out: str) -> dict:
    """``{relative path: permission bits}`` of every file and folder under ``out``."""
    modes = {}
    for dirpath, dirnames, filenames in os.walk(out):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            modes[os.path.relpath(path, out)] = stat.S_IMODE(os.stat(path).st_mode)
    return modes


def _assert_umask(out: str, umask: int, expected_files) -> None:
    modes = _modes(out)
    assert set(expected_files) <= set(modes), sorted(modes)
    want_file, want_dir = 0o666 & ~umask, 0o777 & ~umask
    wrong = {p: oct(m) for p, m in modes.items()
             if m != (want_dir if os.path.isdir(os.path.join(out, p)) else want_file)}
    assert wrong == {}, f"want {oct(want_file)} files, {oct(want_dir)} folders"


def test_current_umask_and_atomic_write(tmp_path, umask):
    assert current_umask() == umask
    path = tmp_path / "x.bin"
    atomic_write_bytes(path, b"abc")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask
    assert path.read_bytes() == b"abc" and os.listdir(tmp_path) == ["x.bin"]


def test_pretraining_run_files_follow_umask(tmp_path, monkeypatch, umask):
    from resdet.pretrain.train import run

    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "datasets"))
    monkeypatch.setenv("RESDET_PROGRESS", "0")
    make_imagenet_folders(str(tmp_path / "datasets"), classes=3, per_class=4, val_per_class=2)
    out = str(tmp_path / "out")
    cfg = load_config(os.path.join(CONFIGS, "pretrain", "imagenet_resnet18.yaml"), [
        "MODEL.DEVICE", "cpu", "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "4",
        "PRETRAIN.LOG_PERIOD", "1", "PRETRAIN.TEST_BATCH_SIZE", "4", "SOLVER.AMP.ENABLED",
        "False", "MODEL.RESDET.ARCH", "cifar_resnet20", "MODEL.RESDET.NUM_CLASSES", "3",
        "SOLVER.MAX_ITER", "2", "SOLVER.CHECKPOINT_PERIOD", "1", "PRETRAIN.CROP_SIZE", "32",
        "PRETRAIN.TRAIN_RESIZE_RANGE", "[36, 48]", "PRETRAIN.TEST_RESIZE", "36",
        "PRETRAIN.LR_POLICY", "step", "OUTPUT_DIR", out])
    run(cfg, argparse.Namespace(eval_only=False, resume=False))
    _assert_umask(out, umask, ["config.yaml", "log.txt", "metrics.json", "last_checkpoint",
                               "model_0000000.pth", "model_final.pth", "eval_results.json"])


def test_torchvision_engine_run_files_follow_umask(tmp_path, monkeypatch, umask):
    from resdet.tvdet.train import main

    write_tiny_coco(str(tmp_path / "datasets"))
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "datasets"))
    monkeypatch.setenv("RESDET_PROGRESS", "0")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = str(tmp_path / "out")
    main(train_args(config_path("quickstart.yaml"), tiny_opts(out, **{
        "DATASETS.TRAIN": '("coco_2017_train",)', "DATASETS.TEST": '("coco_2017_val",)',
        "SOLVER.CHECKPOINT_PERIOD": "1"})))
    _assert_umask(out, umask, ["config.yaml", "log.txt", "metrics.json", "last_checkpoint",
                               "model_0000000.pth", "model_final.pth", "eval_results.json",
                               "predictions"])
