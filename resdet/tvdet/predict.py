"""Draw a detector's boxes, class names and scores into PNG files (``tools/predict.py``)."""

from __future__ import annotations

import logging
import os
from typing import List, Optional, Sequence

import numpy as np
import torch

from resdet.data import get_dataset_dicts, get_metadata, read_image
from resdet.errors import UserError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def list_images(inputs: Sequence[str]) -> List[str]:
    """Image files named by ``inputs`` (files, or folders whose images are taken in name order).

    Raises:
        UserError: an input does not exist, or no image is found.
    """
    files: List[str] = []
    for path in inputs:
        if os.path.isdir(path):
            files.extend(os.path.join(path, f) for f in sorted(os.listdir(path))
                         if f.lower().endswith(IMAGE_SUFFIXES))
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise UserError(f"--input {path} does not exist; give image files or folders.")
    if not files:
        raise UserError(f"No images ({', '.join(IMAGE_SUFFIXES)}) found in {list(inputs)}.")
    return files


def class_names(cfg) -> List[str]:
    """``thing_classes`` of the config's first test (else training) dataset; numbers if none."""
    for name in list(cfg.DATASETS.TEST) + list(cfg.DATASETS.TRAIN):
        try:
            names = get_metadata(name).get("thing_classes")
        except UserError:
            continue
        if names:
            return list(names)
    return [str(i) for i in range(cfg.MODEL.ROI_HEADS.NUM_CLASSES)]


def _colour(label: int) -> tuple:
    rng = np.random.default_rng(label * 7 + 3)
    return tuple(int(c) for c in rng.integers(60, 256, size=3))


def draw_detections(image_bgr: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
                    labels: np.ndarray, names: Sequence[str],
                    score_thresh: float = 0.5) -> np.ndarray:
    """A copy of ``image_bgr`` with each detection scoring at least ``score_thresh`` drawn as a
    box and a ``"name 0.97"`` label."""
    import cv2

    out = np.ascontiguousarray(image_bgr.copy())
    scale = max(0.35, min(out.shape[:2]) / 600.0)
    thick = max(1, int(round(2 * scale)))
    for box, score, label in zip(boxes, scores, labels):
        if score < score_thresh:
            continue
        x0, y0, x1, y1 = (int(round(float(v))) for v in box)
        colour = _colour(int(label))
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, thick)
        name = names[int(label)] if 0 <= int(label) < len(names) else str(int(label))
        text = f"{name} {float(score):.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, 1)
        ty = max(y0, th + base)
        tx = max(0, min(x0, out.shape[1] - tw))  # keep the label inside the image
        cv2.rectangle(out, (tx, ty - th - base), (tx + tw, ty), colour, -1)
        cv2.putText(out, text, (tx, ty - base), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale,
                    (0, 0, 0), 1, cv2.LINE_AA)
    return out


def _output_path(output_dir: str, src: str, used: set) -> str:
    stem = os.path.splitext(os.path.basename(src))[0]
    name, k = stem, 1
    while name in used:  # same file name in two input folders
        k += 1
        name = f"{stem}_{k}"
    used.add(name)
    return os.path.join(output_dir, name + ".png")


def predict_images(cfg, model: torch.nn.Module, files: Sequence[str], output_dir: str,
                   score_thresh: float = 0.5, device: Optional[torch.device] = None) -> List[str]:
    """Run ``model`` on ``files`` and write one PNG per image into ``output_dir``.

    Returns:
        The written paths.
    """
    import cv2

    device = device or next(model.parameters()).device
    names = class_names(cfg)
    os.makedirs(output_dir, exist_ok=True)
    was_training = model.training
    model.eval()
    written, used = [], set()
    try:
        for path in files:
            img = read_image(path, format=cfg.INPUT.FORMAT)
            tensor = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).to(device)
            with torch.no_grad():
                det = model([tensor])[0]
            bgr = img if cfg.INPUT.FORMAT == "BGR" else img[:, :, ::-1]
            drawn = draw_detections(bgr, det["boxes"].float().cpu().numpy(),
                                    det["scores"].float().cpu().numpy(),
                                    det["labels"].cpu().numpy(), names, score_thresh)
            out = _output_path(output_dir, path, used)
            if not cv2.imwrite(out, drawn):
                raise UserError(f"Could not write {out}; check that --output is writable.")
            n = int((det["scores"] >= score_thresh).sum())
            logger.info("%s: %d detections >= %.2f -> %s", path, n, score_thresh, out)
            written.append(out)
    finally:
        model.train(was_training)
    return written


def draw_dataset_examples(cfg, model: torch.nn.Module, dataset_name: str, output_dir: str,
                          count: int = 4, score_thresh: float = 0.5) -> List[str]:
    """Draw predictions on the first ``count`` images of a dataset (after training)."""
    files = [d["file_name"] for d in get_dataset_dicts(dataset_name)[:count]]
    return predict_images(cfg, model, files, output_dir, score_thresh)


def run_predict(config_file: str, weights: str, inputs: Sequence[str], output_dir: str,
                score_thresh: float = 0.5, opts: Optional[Sequence[str]] = None) -> List[str]:
    """``tools/predict.py``: load the config and a detector checkpoint of this engine, draw
    predictions for every input image into ``output_dir``.

    Raises:
        UserError: bad config or paths, or ``weights`` that are not a whole detector.
    """
    from resdet.config import load_config
    from resdet.engine import select_device
    from resdet.engine.events import setup_logging
    from resdet.tvdet.build import build_model
    from resdet.tvdet.weights import is_detector_checkpoint

    setup_logging(None)
    cfg = load_config(config_file, list(opts or []) + ["MODEL.WEIGHTS", weights])
    from resdet.data.custom import register_custom_datasets  # DATASETS.CUSTOM names (issue 12)
    register_custom_datasets(cfg)
    if not is_detector_checkpoint(weights):
        raise UserError(f"--weights {weights} is not a detector checkpoint; pass a "
                        "model_final.pth written by tools/train_net.py (either engine).")
    files = list_images(inputs)
    device = select_device(cfg)
    model = build_model(cfg).to(device)
    written = predict_images(cfg, model, files, output_dir, score_thresh, device)
    logger.info("Wrote %d images to %s", len(written), output_dir)
    return written
