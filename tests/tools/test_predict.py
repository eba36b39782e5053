"""tools/predict.py draws detections into PNGs without Detectron2."""

from __future__ import annotations

import os
import subprocess
import sys

import cv2
import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _checkpoint(path: str) -> None:
    sys.path.insert(0, REPO)
    from resdet.config import load_config
    from resdet.tvdet.build import build_model

    torch.manual_seed(0)
    model = build_model(load_config(os.path.join(REPO, "configs", "quickstart.yaml")))
    torch.save({"model": model.state_dict(), "iteration": 0}, path)


def test_predict_draws_pngs(tmp_path):
    weights = str(tmp_path / "model_final.pth")
    _checkpoint(weights)
    images = tmp_path / "imgs"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in (("a.jpg", (90, 120)), ("b.png", (100, 80))):
        cv2.imwrite(str(images / name), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "tools/predict.py", "--config", "configs/quickstart.yaml", "--weights",
         weights, "--input", str(images), "--output", str(out), "--score-thresh", "0.0"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(os.listdir(out)) == ["a.png", "b.png"]
    drawn = cv2.imread(str(out / "a.png"))
    # small images are drawn upscaled (integer factor) so that labels are legible: 90 -> 630
    assert drawn.shape == (90 * 7, 120 * 7, 3)
    # score threshold 0: every detection is drawn, so pixels changed
    assert not np.array_equal(drawn, cv2.imread(str(images / "a.jpg")))


def test_predict_refuses_backbone_only_weights(tmp_path):
    torch.save({"stem.conv1.weight": torch.zeros(64, 3, 7, 7)}, tmp_path / "bb.pth")
    proc = subprocess.run(
        [sys.executable, "tools/predict.py", "--config", "configs/quickstart.yaml", "--weights",
         str(tmp_path / "bb.pth"), "--input", str(tmp_path), "--output", str(tmp_path / "o")],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "not a detector checkpoint" in proc.stderr


def test_weights_for_another_network_are_refused_where_nothing_trains_them(tmp_path):
    """Issue 15: the quickstart's R18-FPN model_final.pth with an R50-FPN config: predict.py and
    --eval-only used to load 59 tensors, warn, and draw boxes from a mostly random network."""
    weights = str(tmp_path / "model_final.pth")
    _checkpoint(weights)
    cv2.imwrite(str(tmp_path / "a.jpg"), np.full((60, 80, 3), 128, dtype=np.uint8))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    r50 = ["--config", "configs/faster_rcnn_R50_FPN_coco.yaml", "MODEL.ROI_HEADS.NUM_CLASSES", "3",
           "MODEL.DEVICE", "cpu"]
    predict = subprocess.run(
        [sys.executable, "tools/predict.py", "--weights", weights, "--input", str(tmp_path),
         "--output", str(tmp_path / "o"), *r50], cwd=REPO, capture_output=True, text=True,
        timeout=300, env=env)
    assert predict.returncode == 2, predict.stderr[-2000:]
    line = predict.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: {weights} does not fit the detector: ")
    assert " weights matched, " in line and " with another shape (" in line
    assert not (tmp_path / "o").exists() or not os.listdir(tmp_path / "o")
    # the same on --eval-only (torchvision engine; the Detectron2 engine uses the same check)
    ev = subprocess.run(
        [sys.executable, "tools/train_net.py", "--engine", "torchvision", "--eval-only", *r50,
         "DATASETS.TEST", "('shapes_val',)", "MODEL.WEIGHTS", weights,
         "OUTPUT_DIR", str(tmp_path / "ev")], cwd=REPO, capture_output=True, text=True,
        timeout=300, env=dict(env, DETECTRON2_DATASETS=str(tmp_path / "ds")))
    assert ev.returncode == 2, ev.stdout[-2000:] + ev.stderr[-2000:]
    assert ev.stderr.strip().splitlines()[-1] == line
    assert not (tmp_path / "ev" / "eval_results.json").exists()
