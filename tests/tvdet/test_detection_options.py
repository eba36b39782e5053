"""The torchvision engine on the detection layer's network options and config loading: one YAML
gives one network on both engines, or the same error (the Detectron2 half is in tests/d2)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from resdet.config import load_config
from resdet.detection.options import network_options
from resdet.errors import UserError
from resdet.tvdet import build_model

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
C4 = os.path.join(REPO, "configs", "faster_rcnn_R50_coco.yaml")
D2_NAMES = ["MODEL.WEIGHTS", "", "MODEL.BACKBONE.NAME", "build_resnet_backbone",
            "MODEL.ROI_HEADS.NAME", "Res5ROIHeads"]


def test_resdet_key_unread_by_detectron2_builders_is_an_error():
    cfg = load_config(C4, D2_NAMES + ["MODEL.RESDET.SHORTCUT", "A"])
    with pytest.raises(UserError) as e:
        build_model(cfg)
    assert str(e.value).startswith(
        "Config key 'MODEL.RESDET.SHORTCUT' = 'A' is not read by MODEL.BACKBONE.NAME "
        "'build_resnet_backbone' / MODEL.ROI_HEADS.NAME 'Res5ROIHeads'")


def test_detectron2_builder_names_build_resnet_of_depth_with_option_b():
    options = network_options(load_config(C4, D2_NAMES + ["MODEL.RESNETS.DEPTH", "101"]))
    assert (options.layout, options.backbone.arch, options.backbone.shortcut) == (
        "C4", "resnet101", None)
    assert options.res5 == options.backbone
    assert not options.resdet_backbone and not options.resdet_res5


def test_detectron2_only_key_at_default_is_accepted_and_changed_is_an_error(tmp_path):
    """p02: Detectron2's full config dump (keys such as MODEL.PANOPTIC_FPN) loads."""
    path = tmp_path / "config.yaml"
    path.write_text("_BASE_: %s\nMODEL:\n  PANOPTIC_FPN:\n    COMBINE:\n      ENABLED: true\n"
                    "      OVERLAP_THRESH: 0.5\n    INSTANCE_LOSS_WEIGHT: 1.0\n"
                    "  RETINANET:\n    IOU_THRESHOLDS: [0.4, 0.5]\n" % C4)
    cfg = load_config(str(path))
    assert "PANOPTIC_FPN" not in cfg.MODEL and cfg.MODEL.RESNETS.DEPTH == 50
    path.write_text("MODEL:\n  RETINANET:\n    NUM_CLASSES: 3\n")
    with pytest.raises(UserError) as e:
        load_config(str(path))
    assert str(e.value) == (
        f"Config key 'MODEL.RETINANET.NUM_CLASSES' = 3 in {path} is a Detectron2 setting that "
        "this engine cannot honour (only Detectron2's default 80 is accepted); remove it or use "
        "--engine detectron2.")
    path.write_text("MODEL:\n  PANOPTIC_FPN:\n    COMBINE:\n      ENABLE: true\n")
    with pytest.raises(UserError, match="Unknown config key 'MODEL.PANOPTIC_FPN.COMBINE.ENABLE'"):
        load_config(str(path))


def _train_net(*args, cwd):
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", "train_net.py"), *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_train_net_help_imports_no_torch(tmp_path):
    code = ("import runpy, sys; sys.argv = ['train_net.py', '--help']\n"
            "try:\n    runpy.run_path(%r, run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "print('torch' in sys.modules, 'detectron2' in sys.modules)"
            % os.path.join(REPO, "tools", "train_net.py"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=REPO), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "False False"


def test_failed_start_says_why_and_leaves_no_output_folder(tmp_path):
    out = tmp_path / "out"
    proc = _train_net("--engine", "torchvision", "OUTPUT_DIR", str(out), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: DATASETS.TRAIN is empty; name at least one training dataset (pass --config "
        "FILE, or DATASETS.TRAIN \"('shapes_train',)\").")
    assert not out.exists()
    proc = _train_net("--engine", "torchvision", "--config", C4, "MODEL.WEIGHTS",
                      str(tmp_path / "nope.pkl"), "OUTPUT_DIR", str(out), cwd=tmp_path)
    assert proc.returncode == 2 and "MODEL.WEIGHTS file" in proc.stderr
    assert not out.exists()
