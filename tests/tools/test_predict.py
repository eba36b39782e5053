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
