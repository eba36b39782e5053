"""COCO-style box AP: a Detectron2-protocol evaluator and a function for results files.

The numbers come from the COCO API's ``COCOeval`` (bbox): ``faster_coco_eval``'s C++
implementation when it imports (the same algorithm, several times faster; Detectron2 uses its own
C++ ``COCOeval_opt`` for the same reason), with ``pycocotools`` as the fallback. Both give the same
statistics (tested). AP values are in percent, with Detectron2's key names.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from resdet.errors import UserError

logger = logging.getLogger("resdet.evaluation")

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
BACKENDS = ("auto", "faster_coco_eval", "pycocotools")


def coco_backend(backend: str = "auto") -> Tuple[Any, Any, str]:
    """``(COCO, COCOeval, name)`` of the COCO API to use.

    Args:
        backend: ``"auto"`` (faster_coco_eval if it imports, else pycocotools),
            ``"faster_coco_eval"`` or ``"pycocotools"``.
    """
    if backend not in BACKENDS:
        raise UserError(f"COCO evaluation backend {backend!r} is unknown; use one of {BACKENDS}.")
    if backend in ("auto", "faster_coco_eval"):
        try:
            from faster_coco_eval import COCO, COCOeval_faster

            return COCO, COCOeval_faster, "faster_coco_eval"
        except ImportError:
            if backend == "faster_coco_eval":
                raise UserError("faster_coco_eval is not installed; `pip install "
                                "faster-coco-eval`, or use the pycocotools backend.") from None
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise UserError("Neither faster_coco_eval nor pycocotools is installed; "
                        "`pip install faster-coco-eval pycocotools`.") from None
    return COCO, COCOeval, "pycocotools"


def load_coco_gt(gt: Any, backend: str = "auto") -> Any:
    """A COCO API object for ground truth given as a path, a COCO dict, or an API object."""
    if not isinstance(gt, (str, os.PathLike, dict)):
        return gt  # already a COCO api object
    coco_cls, _, _ = coco_backend(backend)
    if not isinstance(gt, dict):
        from resdet.data.coco import read_json

        path = os.fspath(gt)
        gt = read_json(path)
        if not isinstance(gt, dict) or not isinstance(gt.get("images"), list) \
                or not isinstance(gt.get("categories"), list):
            raise UserError(f"{path} is not a COCO ground-truth file (needs 'images' and "
                            "'categories' lists).")
    api = coco_cls()
    api.dataset = gt
    with contextlib.redirect_stdout(io.StringIO()):
        api.createIndex()
    return api


def check_results(results: Any, gt_img_ids: Iterable[Any], source: str = "results",
                  gt_cat_ids: Optional[Iterable[Any]] = None) -> None:
    """Check a COCO results list: each entry has image_id (known), category_id, 4-number bbox,
    score. Category ids not in ``gt_cat_ids`` only get a warning (COCOeval ignores them).

    Raises:
        UserError: naming ``source`` and the first bad entry.
    """
    if not isinstance(results, list):
        raise UserError(f"{source} must be a JSON list of detections "
                        "({image_id, category_id, bbox: [x, y, w, h], score}).")
    i = 0
    try:
        for r in results:
            if len(r["bbox"]) != 4 or r["score"] is None or r["category_id"] is None:
                raise ValueError
            i += 1
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{source}: entry {i} is not a detection {{image_id, category_id, "
                        f"bbox: [x, y, w, h], score}}: {str(results[i])[:120]}") from None
    try:
        ids = {r["image_id"] for r in results}
    except (KeyError, TypeError):
        raise UserError(f"{source}: every detection needs a hashable 'image_id'.") from None
    unknown = ids.difference(gt_img_ids)
    if unknown:
        some = sorted(map(str, unknown))[:3]
        raise UserError(f"{source}: {len(unknown)} image_id(s) are not in the ground truth "
                        f"(e.g. {', '.join(some)}); check that the file is for this dataset.")
    if gt_cat_ids is not None:
        cats = {r["category_id"] for r in results}.difference(gt_cat_ids)
        if cats:
            logger.warning("%s: category_id(s) %s are not in the ground truth; those detections "
                           "are ignored (COCO data uses the dataset's own category ids).",
                           source, sorted(map(str, cats))[:5])


def load_results(coco_gt: Any, results: List[dict], backend: str = "auto") -> Any:
    """The COCO API's ``loadRes`` for box results, without its per-box polygon.

    Sets the same fields (``area`` = w * h, ``id`` = 1..N, ``iscrowd`` = 0) on the result dicts,
    but skips the rectangle ``segmentation`` that ``loadRes`` adds to each box, which box AP never
    reads and which is the slowest part of loading a val2017-sized file.
    """
    coco_cls, _, _ = coco_backend(backend)
    try:
        for i, ann in enumerate(results, 1):
            bb = ann["bbox"]
            ann["area"] = float(bb[2]) * float(bb[3])
            ann["id"] = i
            ann["iscrowd"] = 0
    except (KeyError, IndexError, TypeError, ValueError):
        raise UserError(f"Detection {i - 1} of the results has no numeric 'bbox' [x, y, w, h]: "
                        f"{str(results[i - 1])[:120]}") from None
    res = coco_cls()
    res.dataset["images"] = list(coco_gt.dataset["images"])
    res.dataset["categories"] = [dict(c) for c in coco_gt.dataset["categories"]]
    res.dataset["annotations"] = results
    with contextlib.redirect_stdout(io.StringIO()):
        res.createIndex()
    return res


def _percent(x: float) -> float:
    # Detectron2's convention: -1 (no ground truth in the area range) becomes NaN.
    return float(x * 100) if x >= 0 else float("nan")


def evaluate_coco(
    gt: Any,
    results: List[dict],
    *,
    backend: str = "auto",
    img_ids: Optional[Sequence[Any]] = None,
    per_category: bool = True,
    summary: Optional[List[str]] = None,
) -> Dict[str, float]:
    """COCO box AP of ``results`` against ``gt``.

    Args:
        gt: ground truth: a COCO json path, a COCO dict, or a COCO API object.
        results: COCO results (image_id, category_id (the dataset's own id), bbox [x, y, w, h],
            score); used as given (the COCO API adds keys to the dicts).
        backend: see :func:`coco_backend`.
        img_ids: evaluate only these images (default: all images of ``gt``, as COCOeval does).
        per_category: add ``"AP-<class name>"`` entries, as Detectron2 does.
        summary: if given, the COCO API's 12-line summary text is appended to it.

    Returns:
        ``{"AP", "AP50", "AP75", "APs", "APm", "APl"}`` (percent; NaN where an area range has no
        ground truth) and per-category APs.
    """
    _, cocoeval_cls, name = coco_backend(backend)
    coco_gt = load_coco_gt(gt, backend)
    if not results:
        # An empty result list has nothing matched: AP 0 (pycocotools cannot load it).
        logger.warning("No detections to evaluate; every AP is 0.")
        out = {k: 0.0 for k in METRICS}
        if per_category:
            out.update({f"AP-{c['name']}": 0.0 for c in coco_gt.loadCats(coco_gt.getCatIds())})
        return out
    with contextlib.redirect_stdout(io.StringIO()) as text:
        coco_dt = load_results(coco_gt, results, backend)
        kwargs = {"print_function": print} if name == "faster_coco_eval" else {}
        coco_eval = cocoeval_cls(coco_gt, coco_dt, "bbox", **kwargs)
        if img_ids is not None:
            coco_eval.params.imgIds = list(img_ids)
        coco_eval.evaluate()
        coco_eval.accumulate()
    with contextlib.redirect_stdout(io.StringIO()) as text:
        coco_eval.summarize()
    if summary is not None:
        # pycocotools' 12 lines (faster_coco_eval adds AR@.5 and AR@.75 after them)
        summary.append("\n".join(text.getvalue().rstrip().splitlines()[:12]))
    stats = coco_eval.stats
    out = {k: _percent(stats[i]) for i, k in enumerate(METRICS)}
    if per_category:
        precisions = coco_eval.eval["precision"]  # [IoU, recall, class, area, max dets]
        cats = coco_gt.loadCats(coco_eval.params.catIds)
        for k, cat in enumerate(cats):
            p = precisions[:, :, k, 0, -1]
            p = p[p > -1]
            out[f"AP-{cat['name']}"] = float(np.mean(p) * 100) if p.size else float("nan")
    logger.info("COCO box AP (%s): %s", name,
                ", ".join(f"{k} {out[k]:.3f}" for k in METRICS))
    return out


def convert_to_coco_dict(dataset_dicts: List[dict], thing_classes: Sequence[str]) -> dict:
    """Ground truth in COCO form for datasets that are not stored as COCO (e.g. VOC).

    As Detectron2's ``convert_to_coco_dict``: category ids become 1..K in ``thing_classes``
    order, areas are box areas, and every box (VOC's "difficult" ones included) is regular
    ground truth. Image ids become 1..N (the COCO API needs integers); each image's original
    ``image_id`` is kept as ``orig_image_id``.
    """
    images, annotations = [], []
    for idx, d in enumerate(dataset_dicts, start=1):
        images.append({"id": idx, "width": d["width"], "height": d["height"],
                       "file_name": d["file_name"], "orig_image_id": d["image_id"]})
        for a in d.get("annotations", ()):
            x0, y0, x1, y1 = a["bbox"]
            if a.get("bbox_mode", 1) == 1:  # XYWH_ABS
                x1, y1 = x0 + x1, y0 + y1
            w, h = x1 - x0, y1 - y0
            annotations.append({"id": len(annotations) + 1, "image_id": idx,
                                "category_id": a["category_id"] + 1, "bbox": [x0, y0, w, h],
                                "area": w * h, "iscrowd": int(a.get("iscrowd", 0))})
    categories = [{"id": k + 1, "name": n} for k, n in enumerate(thing_classes)]
    return {"info": {"description": "converted by resdet"}, "images": images,
            "annotations": annotations, "categories": categories}


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def unpack_outputs(output: dict) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(boxes XYXY [N, 4], scores [N], labels [N])`` of one model output.

    Accepts resdet's ``{"boxes", "scores", "labels"}`` and Detectron2's ``{"instances"}``.
    """
    if "instances" in output:
        inst = output["instances"]
        return (_to_numpy(inst.pred_boxes.tensor), _to_numpy(inst.scores),
                _to_numpy(inst.pred_classes))
    return _to_numpy(output["boxes"]), _to_numpy(output["scores"]), _to_numpy(output["labels"])


def gather_to_main(items: list) -> Optional[list]:
    """Concatenate a list from every process on the main one (``None`` elsewhere); a no-op when
    ``torch.distributed`` is not running (it is not imported just for this)."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return items
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, items)
    if dist.get_rank() != 0:
        return None
    return [x for part in gathered for x in part]


class COCOEvaluator:
    """Detectron2-style evaluator (``reset``/``process``/``evaluate``) for COCO box AP.

    Args:
        dataset_name: a catalog name. COCO-layout datasets are evaluated against their json file
            (as Detectron2 does); others (VOC) through :func:`convert_to_coco_dict`.
        output_dir: where ``coco_instances_results.json`` is written (optional).
        backend: see :func:`coco_backend`.
    """

    def __init__(self, dataset_name: str, output_dir: Optional[str] = None, *,
                 backend: str = "auto"):
        from resdet.data import catalog

        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._backend = backend
        self._metadata = catalog.get_metadata(dataset_name)
        self._gt = None
        self._image_id_map: Optional[Dict[Any, int]] = None
        id_map = self._metadata.get("thing_dataset_id_to_contiguous_id")
        if self._metadata.get("json_file") and id_map:
            self._label_to_cat = {v: int(k) for k, v in id_map.items()}
        else:  # converted ground truth: contiguous k -> category id k + 1
            self._label_to_cat = {k: k + 1 for k in range(len(self._metadata["thing_classes"]))}
        self.reset()

    def _ground_truth(self) -> Any:
        if self._gt is None:
            from resdet.data import catalog

            json_file = self._metadata.get("json_file")
            if json_file:
                catalog.ensure_generated(self._dataset_name)
                self._gt = load_coco_gt(json_file, self._backend)
            else:
                dicts = catalog.get_dataset_dicts(self._dataset_name)
                coco = convert_to_coco_dict(dicts, self._metadata["thing_classes"])
                self._image_id_map = {im["orig_image_id"]: im["id"] for im in coco["images"]}
                self._gt = load_coco_gt(coco, self._backend)
        return self._gt

    def reset(self) -> None:
        self._predictions: List[dict] = []
        self._image_ids: List[Any] = []

    def process(self, inputs: List[dict], outputs: List[dict]) -> None:
        """Record one batch: ``inputs`` are dataset dicts, ``outputs`` the model's detections in
        original image pixels (see :func:`unpack_outputs`)."""
        for inp, out in zip(inputs, outputs):
            boxes, scores, labels = unpack_outputs(out)
            image_id = inp["image_id"]
            self._image_ids.append(image_id)
            boxes = boxes.reshape(-1, 4).astype(np.float64)
            xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).tolist()
            for b, s, c in zip(xywh, scores.tolist(), labels.tolist()):
                self._predictions.append({"image_id": image_id,
                                          "category_id": self._label_to_cat[int(c)],
                                          "bbox": b, "score": float(s)})

    def evaluate(self) -> Dict[str, Dict[str, float]]:
        """``{"bbox": {AP, AP50, AP75, APs, APm, APl, AP-<class>...}}`` on the main process
        (``{}`` on others)."""
        predictions = gather_to_main(self._predictions)
        image_ids = gather_to_main(self._image_ids)
        if predictions is None:
            return {}
        if self._output_dir:
            os.makedirs(self._output_dir, exist_ok=True)
            path = os.path.join(self._output_dir, "coco_instances_results.json")
            with open(path, "w") as f:
                json.dump(predictions, f)
            logger.info("Saved %d detections to %s", len(predictions), path)
        gt = self._ground_truth()
        if self._image_id_map is not None:
            predictions = [dict(p, image_id=self._image_id_map[p["image_id"]])
                           for p in predictions]
            image_ids = [self._image_id_map[i] for i in image_ids]
        summary: List[str] = []
        res = evaluate_coco(gt, predictions, backend=self._backend,
                            img_ids=sorted(set(image_ids)), summary=summary)
        if summary:
            logger.info("Evaluation of %s:\n%s", self._dataset_name, summary[0])
        return {"bbox": res}
