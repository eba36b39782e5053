"""VOC AP: a hand-computed case, and equality with a direct port of the devkit's loop."""

import os

import numpy as np
import pytest
import torch

from tests.tiny_datasets import make_tiny_voc
from resdet.data.voc import VOC_CLASSES
from resdet.errors import UserError
from tests.voc_hand_case import write_hand_voc
from resdet.evaluation.voc_evaluation import (
    IOU_THRESHOLDS,
    PascalVOCEvaluator,
    voc_ap,
    voc_eval_class,
)


def reference_voc_eval(lines, gt, ovthresh, use_07_metric):
    """Detectron2's voc_eval loop (py-faster-rcnn), with gt given in memory."""
    npos = sum(int((~d).sum()) for _, d in gt.values())
    class_recs = {k: {"bbox": b, "difficult": d, "det": [False] * len(d)}
                  for k, (b, d) in gt.items()}
    splitlines = [x.strip().split(" ") for x in lines]
    image_ids = [x[0] for x in splitlines]
    confidence = np.array([float(x[1]) for x in splitlines])
    BB = np.array([[float(z) for z in x[2:]] for x in splitlines]).reshape(-1, 4)
    sorted_ind = np.argsort(-confidence)
    BB = BB[sorted_ind, :]
    image_ids = [image_ids[x] for x in sorted_ind]
    nd = len(image_ids)
    tp, fp = np.zeros(nd), np.zeros(nd)
    for d in range(nd):
        R = class_recs[image_ids[d]]
        bb = BB[d, :].astype(float)
        ovmax = -np.inf
        BBGT = R["bbox"].astype(float)
        if BBGT.size > 0:
            ixmin = np.maximum(BBGT[:, 0], bb[0])
            iymin = np.maximum(BBGT[:, 1], bb[1])
            ixmax = np.minimum(BBGT[:, 2], bb[2])
            iymax = np.minimum(BBGT[:, 3], bb[3])
            iw = np.maximum(ixmax - ixmin + 1.0, 0.0)
            ih = np.maximum(iymax - iymin + 1.0, 0.0)
            inters = iw * ih
            uni = ((bb[2] - bb[0] + 1.0) * (bb[3] - bb[1] + 1.0)
                   + (BBGT[:, 2] - BBGT[:, 0] + 1.0) * (BBGT[:, 3] - BBGT[:, 1] + 1.0) - inters)
            overlaps = inters / uni
            ovmax = np.max(overlaps)
            jmax = np.argmax(overlaps)
        if ovmax > ovthresh:
            if not R["difficult"][jmax]:
                if not R["det"][jmax]:
                    tp[d] = 1.0
                    R["det"][jmax] = 1
                else:
                    fp[d] = 1.0
        else:
            fp[d] = 1.0
    fp, tp = np.cumsum(fp), np.cumsum(tp)
    rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return voc_ap(rec, prec, use_07_metric)


def test_hand_computed_case():
    # image a: A (10x10 at 1..10) and a difficult box; image b: C. Detections by score:
    # A (TP), the difficult box (ignored), A again (FP), nothing (FP), C (TP); 2 positives.
    gt = {"a": (np.array([[1, 1, 10, 10], [21, 21, 30, 30]], float), np.array([False, True])),
          "b": (np.array([[1, 1, 10, 10]], float), np.array([False]))}
    ids = ["a", "a", "a", "b", "b"]
    conf = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    boxes = np.array([[1, 1, 10, 10], [21, 21, 30, 30], [1, 1, 10, 10], [40, 40, 50, 50],
                      [1, 1, 10, 10]], float)
    # recall .5 .5 .5 .5 1, precision 1 1 1/2 1/3 1/2:
    # 11-point: 6 points (recall 0..0.5) at precision 1, 5 points at 1/2 -> 8.5 / 11;
    # area: 0.5 * 1 + 0.5 * 0.5 = 0.75.
    assert voc_eval_class(ids, conf, boxes, gt, (0.5, 0.9), True) == pytest.approx(
        [8.5 / 11, 8.5 / 11], abs=1e-12)
    assert voc_eval_class(ids, conf, boxes, gt, (0.5,), False) == pytest.approx([0.75], abs=1e-12)
    # no non-difficult ground truth: left out (None); no detections: 0
    assert voc_eval_class(ids, conf, boxes, {"a": (gt["a"][0][1:], gt["a"][1][1:])}) is None
    assert voc_eval_class([], np.zeros(0), np.zeros((0, 4)), gt) == [0.0]


@pytest.mark.parametrize("use_07", [True, False])
def test_equals_devkit_loop_on_random_data(use_07):
    rng = np.random.default_rng(3)
    gt = {}
    for i in range(30):
        n = int(rng.integers(0, 5))
        xy = rng.integers(1, 80, (n, 2))
        wh = rng.integers(5, 40, (n, 2))
        gt[f"{i:06d}"] = (np.concatenate([xy, xy + wh], 1).astype(float), rng.random(n) < 0.2)
    lines = []
    for img, (b, _) in gt.items():
        for box in list(b) + [rng.integers(1, 100, 4).astype(float) for _ in range(2)]:
            j = box + rng.normal(0, 3, 4)
            lines.append(f"{img} {rng.random():.3f} {j[0]:.1f} {j[1]:.1f} {j[2]:.1f} {j[3]:.1f}")
    ids = [x.split()[0] for x in lines]
    conf = np.array([float(x.split()[1]) for x in lines])
    boxes = np.array([[float(v) for v in x.split()[2:]] for x in lines])
    ours = voc_eval_class(ids, conf, boxes, gt, IOU_THRESHOLDS, use_07)
    ref = [reference_voc_eval(lines, gt, t, use_07) for t in IOU_THRESHOLDS]
    assert ours == ref  # exactly
    assert 0.2 < ours[0] < 1.0


def _hand_outputs():
    dog = VOC_CLASSES.index("dog")
    inputs = [{"image_id": "000001"}, {"image_id": "000002"}]
    # 0-based boxes, as the model predicts them (the evaluator adds 1 to xmin, ymin)
    outputs = [
        {"boxes": torch.tensor([[0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 10, 10.]]),
         "scores": torch.tensor([0.9, 0.8, 0.7]), "labels": torch.tensor([dog] * 3)},
        {"boxes": torch.tensor([[39, 39, 50, 50], [0, 0, 10, 10.]]),
         "scores": torch.tensor([0.6, 0.5]), "labels": torch.tensor([dog] * 2)},
    ]
    return inputs, outputs


@pytest.mark.parametrize("year,expected", [(2007, 100 * 8.5 / 11), (2012, 75.0)])
def test_evaluator_on_hand_case(tmp_path, monkeypatch, year, expected):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    write_hand_voc(tmp_path, year, "val")
    ev = PascalVOCEvaluator(f"voc_{year}_val")
    ev.reset()
    ev.process(*_hand_outputs())
    res = ev.evaluate()["bbox"]
    assert res == pytest.approx({"AP": expected, "AP50": expected, "AP75": expected}, abs=1e-9)


def test_voc2012_test_writes_submission(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    make_tiny_voc(str(tmp_path), 2012, {"test": 2}, with_test_labels=False)
    with pytest.raises(UserError, match="no public labels.*TEST.VOC_SUBMISSION_DIR"):
        PascalVOCEvaluator("voc_2012_test")
    ev = PascalVOCEvaluator("voc_2012_test", str(tmp_path / "sub"))
    ev.process(*_hand_outputs())
    assert ev.evaluate() == {}
    folder = tmp_path / "sub" / "results" / "VOC2012" / "Main"
    assert sorted(os.listdir(folder)) == sorted(f"comp4_det_test_{c}.txt" for c in VOC_CLASSES)
    lines = (folder / "comp4_det_test_dog.txt").read_text().splitlines()
    assert lines[0] == "000001 0.900 1.0 1.0 10.0 10.0" and len(lines) == 5
    assert (folder / "comp4_det_test_cat.txt").read_text() == ""


def test_nonfinite_detections_are_refused_naming_the_image(tmp_path, monkeypatch):
    """The same policy as the COCO evaluators: a NaN/inf score or box is an error, not a guess."""
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    write_hand_voc(tmp_path, 2007, "test")
    ev = PascalVOCEvaluator("voc_2007_test")
    with pytest.raises(UserError) as e:
        ev.add_detections("000001", [(0.0, 0.0, float("inf"), 10.0)], [0.5], [11])
    assert str(e.value) == (
        "the detections on voc_2007_test: image 000001 has a non-finite score or box (score 0.5, "
        "box [0.0, 0.0, inf, 10.0]); fix the model or the file, resdet does not guess one.")
