"""--eval-only with one weights file writes the same eval_results.json on both engines."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import pytest
import torch

pytest.importorskip("detectron2")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests", "tvdet"))
from tvdet_helpers import write_tiny_coco  # noqa: E402

QUICKSTART = os.path.join(REPO, "configs", "quickstart.yaml")
OPTS = ["MODEL.DEVICE", "cpu", "DATASETS.TRAIN", "('coco_2017_train',)",
        "DATASETS.TEST", "('coco_2017_val',)", "MODEL.ROI_HEADS.NUM_CLASSES", "80",
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "DATALOADER.NUM_WORKERS", "0",
        "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "96"]


def _args(output_dir, weights):
    return argparse.Namespace(
        config_file=QUICKSTART, opts=[*OPTS, "OUTPUT_DIR", str(output_dir), "MODEL.WEIGHTS",
                                      str(weights)],
        resume=False, eval_only=True, num_gpus=1, num_machines=1, machine_rank=0,
        dist_url="auto", debug=False, engine=None)


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=0, abs_tol=1e-6)


def test_eval_only_writes_the_same_results_on_both_engines(tmp_path, monkeypatch):
    root = str(tmp_path / "ds")
    write_tiny_coco(root)
    monkeypatch.setenv("DETECTRON2_DATASETS", root)
    from resdet.config import load_config
    from resdet.d2 import register_resdet_datasets
    from resdet.d2.train import main as d2_main
    from resdet.tvdet import build_model
    from resdet.tvdet.train import main as tv_main

    register_resdet_datasets()
    try:
        torch.manual_seed(0)
        cfg = load_config(QUICKSTART, [*OPTS, "MODEL.WEIGHTS", ""])
        weights = tmp_path / "model_final.pth"
        torch.save({"model": build_model(cfg).state_dict()}, weights)
        tv_main(_args(tmp_path / "tv", weights))
        d2_main(_args(tmp_path / "d2", weights))
        tv = json.loads((tmp_path / "tv" / "eval_results.json").read_text())
        d2 = json.loads((tmp_path / "d2" / "eval_results.json").read_text())
        assert list(tv) == list(d2) == ["coco_2017_val"]
        assert _same(tv, d2), (tv, d2)
        dets = [json.loads((tmp_path / e / "inference" / "coco_2017_val" /
                            "coco_instances_results.json").read_text()) for e in ("tv", "d2")]
        assert len(dets[0]) == len(dets[1]) > 0  # a real comparison, not two empty lists
    finally:
        monkeypatch.undo()
        register_resdet_datasets()
