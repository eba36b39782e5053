"""PASCAL VOC box AP: the devkit's algorithm as Detectron2's ``pascal_voc_evaluation.py`` runs it.

Same numbers as Detectron2's ``PascalVOCDetectionEvaluator``: detections are written as the
devkit's text lines (score to 3 decimals, 1-based boxes to 1 decimal) and read back; a detection is
matched to the ground-truth box of its class with the highest overlap (the devkit's "+1" pixel
areas), counts as a true positive when the overlap is above the threshold and that box is not yet
taken, and is ignored when the box is "difficult"; AP is the 11-point interpolated average for
VOC2007 and the area under the precision envelope for VOC2012. ``AP`` averages IoU thresholds
0.50:0.95, ``AP50``/``AP75`` are single thresholds, each the mean over classes.

One departure: a class without (non-difficult) ground truth is left out of the class mean, as COCO
does; Detectron2 would count it as 0 or NaN. This never happens on the official VOC splits.

The matching loop is vectorised (per image, then per threshold) but performs the same floating
point operations in the same order as the devkit's loop, so results are identical (tested against a
direct port).
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from resdet.errors import UserError
from resdet.evaluation.coco_evaluation import gather_to_main, unpack_outputs

logger = logging.getLogger("resdet.evaluation")

IOU_THRESHOLDS = tuple(t / 100.0 for t in range(50, 100, 5))


def voc_ap(rec: np.ndarray, prec: np.ndarray, use_07_metric: bool = False) -> float:
    """AP from a precision/recall curve: 11-point (VOC2007) or area under the envelope."""
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            p = 0 if np.sum(rec >= t) == 0 else np.max(prec[rec >= t])
            ap = ap + p / 11.0
        return float(ap)
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):  # precision envelope
        mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]  # where recall changes
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def parse_detection_lines(lines: Sequence[str]) -> Tuple[List[str], np.ndarray, np.ndarray]:
    """``(image_ids, confidence [N], boxes [N, 4])`` from devkit lines ``id score x0 y0 x1 y1``."""
    split = [x.strip().split(" ") for x in lines if x.strip()]
    image_ids = [x[0] for x in split]
    confidence = np.array([float(x[1]) for x in split], dtype=np.float64)
    boxes = np.array([[float(z) for z in x[2:]] for x in split], dtype=np.float64).reshape(-1, 4)
    return image_ids, confidence, boxes


def voc_eval_class(
    image_ids: Sequence[str],
    confidence: np.ndarray,
    boxes: np.ndarray,
    gt: Dict[str, Tuple[np.ndarray, np.ndarray]],
    ovthresh: Sequence[float] = (0.5,),
    use_07_metric: bool = False,
) -> Optional[List[float]]:
    """AP of one class at each IoU threshold.

    Args:
        image_ids, confidence, boxes: the class's detections (1-based devkit boxes).
        gt: image id -> (boxes [G, 4] 1-based devkit coordinates, difficult [G] bool), for every
            image of the split (images without boxes of this class map to empty arrays or are
            absent).
        ovthresh: IoU thresholds (a detection matches when its overlap is strictly above).
        use_07_metric: 11-point AP (VOC2007) instead of the area (VOC2010+).

    Returns:
        AP (fraction) per threshold, or ``None`` when the class has no non-difficult ground truth.
    """
    npos = int(sum(int((~d).sum()) for _, d in gt.values()))
    if npos == 0:
        return None
    nd = len(image_ids)
    if nd == 0:
        return [0.0 for _ in ovthresh]
    sorted_ind = np.argsort(-confidence)  # the devkit's (unstable) order, ties included
    boxes = boxes[sorted_ind, :]
    ids_sorted = [image_ids[x] for x in sorted_ind]

    ovmax = np.full(nd, -np.inf)
    jmax = np.zeros(nd, dtype=np.int64)
    is_difficult = np.zeros(nd, dtype=bool)
    img_index = np.zeros(nd, dtype=np.int64)
    by_image: Dict[str, List[int]] = defaultdict(list)
    for d, img in enumerate(ids_sorted):
        by_image[img].append(d)
    for k, (img, dets) in enumerate(by_image.items()):
        idx = np.asarray(dets)
        img_index[idx] = k
        bbgt, difficult = gt.get(img, (np.zeros((0, 4)), np.zeros(0, dtype=bool)))
        if bbgt.size == 0:
            continue
        bbgt = bbgt.astype(float)
        bb = boxes[idx][:, None, :]  # [n, 1, 4] against [G, 4]
        ixmin = np.maximum(bbgt[None, :, 0], bb[..., 0])
        iymin = np.maximum(bbgt[None, :, 1], bb[..., 1])
        ixmax = np.minimum(bbgt[None, :, 2], bb[..., 2])
        iymax = np.minimum(bbgt[None, :, 3], bb[..., 3])
        iw = np.maximum(ixmax - ixmin + 1.0, 0.0)
        ih = np.maximum(iymax - iymin + 1.0, 0.0)
        inters = iw * ih
        uni = (
            (bb[..., 2] - bb[..., 0] + 1.0) * (bb[..., 3] - bb[..., 1] + 1.0)
            + (bbgt[None, :, 2] - bbgt[None, :, 0] + 1.0) * (bbgt[None, :, 3] - bbgt[None, :, 1]
                                                             + 1.0)
            - inters
        )
        overlaps = inters / uni
        ovmax[idx] = overlaps.max(axis=1)
        jmax[idx] = overlaps.argmax(axis=1)
        is_difficult[idx] = difficult[jmax[idx]]

    aps = []
    for t in ovthresh:
        matched = ovmax > t
        candidate = matched & ~is_difficult
        # The first (highest scoring) detection on a ground-truth box takes it; later ones are FP.
        cand_idx = np.nonzero(candidate)[0]
        key = img_index[cand_idx] * (int(jmax.max()) + 1) + jmax[cand_idx]
        _, first = np.unique(key, return_index=True)
        tp = np.zeros(nd)
        tp[cand_idx[first]] = 1.0
        fp = np.zeros(nd)
        fp[~matched] = 1.0
        fp[candidate] = 1.0
        fp[cand_idx[first]] = 0.0
        fp = np.cumsum(fp)
        tp = np.cumsum(tp)
        rec = tp / float(npos)
        # avoid divide by zero when the first detection matches a difficult ground truth
        prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        aps.append(voc_ap(rec, prec, use_07_metric))
    return aps


def gt_from_dataset_dicts(dataset_dicts: List[dict], num_classes: int
                          ) -> List[Dict[str, Tuple[np.ndarray, np.ndarray]]]:
    """Per class: image id -> (1-based devkit boxes, difficult flags), from VOC dataset dicts.

    The loader's 0-based XYXY boxes get xmin and ymin back to the XML's 1-based values.
    """
    per_class: List[Dict[str, Tuple[list, list]]] = [dict() for _ in range(num_classes)]
    for d in dataset_dicts:
        img = str(d["image_id"])
        for c in range(num_classes):
            per_class[c][img] = ([], [])
        for a in d.get("annotations", ()):
            x0, y0, x1, y1 = a["bbox"]
            if a.get("bbox_mode", 0) == 1:
                x1, y1 = x0 + x1, y0 + y1
            boxes, diff = per_class[a["category_id"]][img]
            boxes.append([x0 + 1.0, y0 + 1.0, x1, y1])
            diff.append(bool(a.get("difficult", 0)))
    return [
        {img: (np.asarray(b, dtype=np.float64).reshape(-1, 4), np.asarray(f, dtype=bool))
         for img, (b, f) in cls.items()}
        for cls in per_class
    ]


def format_detection(image_id: str, score: float, box: Sequence[float]) -> str:
    """A devkit line; 0-based XYXY ``box`` -> 1-based, as Detectron2's evaluator writes it."""
    xmin, ymin, xmax, ymax = box
    xmin += 1
    ymin += 1
    return f"{image_id} {score:.3f} {xmin:.1f} {ymin:.1f} {xmax:.1f} {ymax:.1f}"


class PascalVOCEvaluator:
    """Detectron2-style evaluator for VOC box AP (see the module docstring).

    For the VOC2012 test split, which has no public labels, :meth:`evaluate` writes the
    evaluation server's files ``<output_dir>/results/VOC2012/Main/comp4_det_test_<class>.txt``
    and returns ``{}``.

    Args:
        dataset_name: a catalog name whose metadata has ``dirname``, ``split``, ``year``.
        output_dir: where submission files go (required for the VOC2012 test split).
        use_07_metric: 11-point AP; default: the dataset's year is 2007.
    """

    def __init__(self, dataset_name: str, output_dir: Optional[str] = None,
                 use_07_metric: Optional[bool] = None):
        from resdet.data import catalog

        meta = catalog.get_metadata(dataset_name)
        if meta.get("year") not in (2007, 2012):
            raise UserError(f"Dataset {dataset_name} is not a PASCAL VOC dataset (metadata year "
                            f"{meta.get('year')!r}); use the COCO evaluator for it.")
        self._dataset_name = dataset_name
        self._class_names = list(meta["thing_classes"])
        self._year = meta["year"]
        self._split = meta["split"]
        self._is_2007 = self._year == 2007 if use_07_metric is None else bool(use_07_metric)
        self._output_dir = output_dir
        self._has_labels = not (self._year == 2012 and self._split == "test")
        if not self._has_labels and not output_dir:
            raise UserError(f"{dataset_name} has no public labels, so its detections are written "
                            "as evaluation-server files: give an output directory "
                            "(TEST.VOC_SUBMISSION_DIR; tools/evaluate.py --output DIR).")
        self._gt = None
        self.reset()

    def reset(self) -> None:
        """Forget the recorded detections (before a new evaluation)."""
        self._predictions: Dict[int, List[str]] = defaultdict(list)  # class -> devkit lines

    def add_detections(self, image_id: str, boxes: np.ndarray, scores: Sequence[float],
                       labels: Sequence[int]) -> None:
        """Record one image's detections (0-based XYXY boxes, contiguous labels).

        Raises:
            UserError: a non-finite score or box (the COCO evaluators' policy too).
        """
        for box, score, cls in zip(boxes, scores, labels):
            if not (np.isfinite(score) and np.isfinite(np.asarray(box, dtype=float)).all()):
                raise UserError(
                    f"the detections on {self._dataset_name}: image {image_id} has a non-finite "
                    f"score or box (score {float(score)}, box {[float(v) for v in box]}); fix "
                    "the model or the file, resdet does not guess one.")
            self._predictions[int(cls)].append(format_detection(image_id, float(score), box))

    def process(self, inputs: List[dict], outputs: List[dict]) -> None:
        """Record one batch: ``inputs`` are dataset dicts, ``outputs`` the model's detections in
        original image pixels (see :func:`unpack_outputs`).

        Raises:
            UserError: a non-finite score or box.
        """
        for inp, out in zip(inputs, outputs):
            boxes, scores, labels = unpack_outputs(out)
            self.add_detections(inp["image_id"], boxes.reshape(-1, 4), scores.tolist(),
                                labels.tolist())

    def _ground_truth(self) -> List[Dict[str, Tuple[np.ndarray, np.ndarray]]]:
        if self._gt is None:
            from resdet.data import catalog

            dicts = catalog.get_dataset_dicts(self._dataset_name)
            self._gt = gt_from_dataset_dicts(dicts, len(self._class_names))
        return self._gt

    def write_submission(self, predictions: Dict[int, List[str]]) -> str:
        """Write ``comp4_det_test_<class>.txt`` for every class; returns the folder."""
        folder = os.path.join(self._output_dir, "results", f"VOC{self._year}", "Main")
        os.makedirs(folder, exist_ok=True)
        for cls_id, cls_name in enumerate(self._class_names):
            with open(os.path.join(folder, f"comp4_det_{self._split}_{cls_name}.txt"), "w") as f:
                lines = predictions.get(cls_id, [])
                f.write("\n".join(lines) + ("\n" if lines else ""))
        return folder

    def evaluate(self) -> Dict[str, Dict[str, float]]:
        """``{"bbox": {"AP", "AP50", "AP75"}}`` (percent) on the main process; ``{}`` elsewhere
        and for the unlabelled VOC2012 test split."""
        gathered = gather_to_main([dict(self._predictions)])
        if gathered is None:
            return {}
        predictions: Dict[int, List[str]] = defaultdict(list)
        for part in gathered:
            for cls_id, lines in part.items():
                predictions[cls_id].extend(lines)
        if not self._has_labels:
            folder = self.write_submission(predictions)
            logger.info("%s has no public labels: wrote the evaluation-server files to %s "
                        "(tar the 'results' folder and upload it to "
                        "http://host.robots.ox.ac.uk:8080/).", self._dataset_name, folder)
            return {}
        logger.info("Evaluating %s with the VOC%s metric (%s).", self._dataset_name,
                    2007 if self._is_2007 else 2012,
                    "11-point" if self._is_2007 else "area under the precision envelope")
        gt = self._ground_truth()
        aps: Dict[float, List[float]] = defaultdict(list)
        for cls_id in range(len(self._class_names)):
            ids, conf, boxes = parse_detection_lines(predictions.get(cls_id, []))
            res = voc_eval_class(ids, conf, boxes, gt[cls_id], IOU_THRESHOLDS, self._is_2007)
            if res is None:
                continue
            for t, ap in zip(IOU_THRESHOLDS, res):
                aps[t].append(ap * 100)
        if not aps:
            logger.warning("%s has no ground-truth boxes; AP is undefined.", self._dataset_name)
            return {"bbox": {"AP": float("nan"), "AP50": float("nan"), "AP75": float("nan")}}
        m_ap = {t: float(np.mean(v)) for t, v in aps.items()}
        return {"bbox": {"AP": float(np.mean(list(m_ap.values()))), "AP50": m_ap[0.5],
                         "AP75": m_ap[0.75]}}
