"""--eval-only with one weights file writes the same eval_results.json on both engines.

The weights are a quickstart detector trained briefly on the torchvision engine (so that AP is
neither 0 nor 100), saved in that engine's names; the Detectron2 engine renames them
(resdet.detection.weights_file). The test images are lossless PNGs fed at their stored size
(INPUT.MIN_SIZE_TEST 0), so this compares the engines' models, renaming and evaluation; image
decoding and the test-time resize are the data layer's (both engines' loaders use
resdet.detection's mapper, and the torchvision engine's model resizes uint8 images the same way:
ResdetRCNNTransform).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import pytest

pytest.importorskip("detectron2")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests", "tvdet"))
from tvdet_helpers import write_tiny_coco  # noqa: E402

QUICKSTART = os.path.join(REPO, "configs", "quickstart.yaml")
OPTS = ["MODEL.DEVICE", "cpu", "DATASETS.TRAIN", "('coco_2017_train',)",
        "DATASETS.TEST", "('coco_2017_val',)", "MODEL.ROI_HEADS.NUM_CLASSES", "80",
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "DATALOADER.NUM_WORKERS", "0",
        "INPUT.MIN_SIZE_TEST", "0"]  # 0: no test-time resize (Detectron2's meaning too)
TRAIN = ["SOLVER.MAX_ITER", "60", "SOLVER.IMS_PER_BATCH", "3", "SOLVER.STEPS", "(50,)",
         "SOLVER.WARMUP_ITERS", "10", "SOLVER.BASE_LR", "0.005", "INPUT.MIN_SIZE_TRAIN", "(64,)",
         "INPUT.MAX_SIZE_TRAIN", "80", "TEST.EVAL_PERIOD", "0", "DATASETS.TEST", "()",
         "MODEL.WEIGHTS", "", "SOLVER.CHECKPOINT_PERIOD", "0"]


def _args(output_dir, *opts, eval_only=True):
    return argparse.Namespace(
        config_file=QUICKSTART, opts=[*OPTS, "OUTPUT_DIR", str(output_dir), *opts],
        resume=False, eval_only=eval_only, num_gpus=1, num_machines=1, machine_rank=0,
        dist_url="auto", debug=False, engine=None)


def _val_as_png(root: str) -> None:
    import cv2

    path = os.path.join(root, "coco", "annotations", "instances_val2017.json")
    with open(path) as f:
        data = json.load(f)
    for im in data["images"]:
        src = os.path.join(root, "coco", "val2017", im["file_name"])
        im["file_name"] = os.path.splitext(im["file_name"])[0] + ".png"
        cv2.imwrite(os.path.join(root, "coco", "val2017", im["file_name"]), cv2.imread(src))
        os.remove(src)
    with open(path, "w") as f:
        json.dump(data, f)


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=0, abs_tol=1e-6)


@pytest.mark.slow
def test_eval_only_writes_the_same_results_on_both_engines(tmp_path, monkeypatch):
    root = str(tmp_path / "ds")
    write_tiny_coco(root)
    _val_as_png(root)
    monkeypatch.setenv("DETECTRON2_DATASETS", root)
    from resdet.d2 import register_resdet_datasets
    from resdet.d2.train import main as d2_main
    from resdet.tvdet.train import main as tv_main

    register_resdet_datasets()
    try:
        tv_main(_args(tmp_path / "train", *TRAIN, eval_only=False))
        weights = str(tmp_path / "train" / "model_final.pth")
        tv_main(_args(tmp_path / "tv", "MODEL.WEIGHTS", weights))
        d2_main(_args(tmp_path / "d2", "MODEL.WEIGHTS", weights))
        tv = json.loads((tmp_path / "tv" / "eval_results.json").read_text())
        d2 = json.loads((tmp_path / "d2" / "eval_results.json").read_text())
        assert list(tv) == list(d2) == ["coco_2017_val"]
        assert _same(tv, d2), (tv, d2)
        assert 0 < tv["coco_2017_val"]["bbox"]["AP"] < 100  # a real comparison
        assert tv["coco_2017_val"]["bbox"]["APl"] is None  # null alike (no large objects)
        dets = [json.loads((tmp_path / e / "inference" / "coco_2017_val" /
                            "coco_instances_results.json").read_text()) for e in ("tv", "d2")]
        key = lambda d: (d["image_id"], -round(d["score"], 4), d["category_id"])  # noqa: E731
        a, b = sorted(dets[0], key=key), sorted(dets[1], key=key)
        assert len(a) == len(b) > 0
        assert [(d["image_id"], d["category_id"]) for d in a] == \
            [(d["image_id"], d["category_id"]) for d in b]
        assert max(abs(x["score"] - y["score"]) for x, y in zip(a, b)) < 1e-4
    finally:
        monkeypatch.undo()
        register_resdet_datasets()
