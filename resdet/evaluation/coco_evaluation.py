"""COCO-style box AP: a Detectron2-protocol evaluator and a function for results files.

The numbers come from the COCO API's ``COCOeval`` (bbox): ``faster_coco_eval``'s C++
implementation when it imports (the same algorithm, several times faster; Detectron2 uses its own
C++ ``COCOeval_opt`` for the same reason), with ``pycocotools`` as the fallback. Both get the
same input, ground truth normalised by :mod:`resdet.data.coco_format` (missing ``area``/``iscrowd``
filled in, non-integer image ids mapped) and results checked by one policy (non-finite values
refused), so they give the same statistics (tested on a corpus of odd files). AP values are in
percent, with Detectron2's key names; no detections at all score as ``COCOeval`` scores them.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

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


def load_coco_gt(gt: Any, backend: str = "auto", source: Optional[str] = None) -> Any:
    """A COCO API object for ground truth given as a path, a COCO dict, or an API object.

    Paths and dicts go through :func:`resdet.data.coco_format.normalize_coco_gt` (missing
    ``area``/``iscrowd``/``id`` filled in, non-integer image ids mapped to 1..N) and
    :func:`~resdet.data.coco_format.check_coco_gt`, so both backends see the same file.

    Raises:
        UserError: the file is not COCO ground truth, or has an entry neither backend can score.
    """
    if not isinstance(gt, (str, os.PathLike, dict)):
        return gt  # already a COCO api object
    from resdet.data.coco_format import check_coco_gt, normalize_coco_gt

    coco_cls, _, _ = coco_backend(backend)
    if not isinstance(gt, dict):
        from resdet.data.coco import read_json

        source = os.fspath(gt)
        gt = read_json(source)
        if not isinstance(gt, dict) or not isinstance(gt.get("images"), list) \
                or not isinstance(gt.get("categories"), list):
            raise UserError(f"{source} is not a COCO ground-truth file (needs 'images' and "
                            "'categories' lists).")
    source = source or "the ground truth"
    gt = normalize_coco_gt(gt, source)
    # copies: COCOeval writes an "ignore" flag into the ground truth's annotations
    gt["annotations"] = [dict(a) if isinstance(a, dict) else a
                         for a in gt.get("annotations", [])]
    check_coco_gt(gt, source)
    api = coco_cls()
    api.dataset = gt
    with contextlib.redirect_stdout(io.StringIO()):
        api.createIndex()
    return api


def check_results(results: Any, coco_gt: Any, source: str = "results") -> List[dict]:
    """The results list checked against ground truth from :func:`load_coco_gt`, its image ids
    mapped as the ground truth's were (see :func:`resdet.data.coco_format.normalize_coco_results`:
    one policy for every backend).

    Raises:
        UserError: naming ``source`` and the first bad entry (missing field, non-finite score or
            box, image not in the ground truth).
    """
    from resdet.data.coco_format import image_id_map, normalize_coco_results

    id_map = image_id_map(coco_gt.dataset)
    img_ids = list(id_map) if id_map is not None else coco_gt.getImgIds()
    return normalize_coco_results(results, source, img_ids, id_map, coco_gt.getCatIds())


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


def null_nonfinite(value: Any) -> Any:
    """``value`` (nested dicts/lists) with NaN/inf floats as None, so that ``json.dumps(...,
    allow_nan=False)`` writes valid JSON: an undefined metric (APl without large objects, the AP
    of a class without ground truth) is null, never a bare NaN."""
    if isinstance(value, dict):
        return {k: null_nonfinite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [null_nonfinite(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


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
    source: str = "results",
) -> Dict[str, float]:
    """COCO box AP of ``results`` against ``gt``.

    Both backends get the same input: the ground truth normalised by :func:`load_coco_gt` and the
    results checked and id-mapped by :func:`check_results`, so they give the same numbers.

    Args:
        gt: ground truth: a COCO json path, a COCO dict, or a COCO API object from
            :func:`load_coco_gt`.
        results: COCO results (image_id as in the ground truth file, category_id (the dataset's
            own id), bbox [x, y, w, h], score); not modified.
        backend: see :func:`coco_backend`.
        img_ids: evaluate only these images (the file's own ids; default: all images of ``gt``,
            as COCOeval does).
        per_category: add ``"AP-<class name>"`` entries, as Detectron2 does.
        summary: if given, the COCO API's 12-line summary text is appended to it.
        source: the results' name (a file path) for messages.

    Returns:
        ``{"AP", "AP50", "AP75", "APs", "APm", "APl"}`` (percent) and per-category APs, as
        pycocotools' COCOeval gives them: 0 where there is ground truth and nothing matched it,
        NaN where an area range or class has no ground truth.

    Raises:
        UserError: bad ground truth or results (one sentence naming the file and entry).
    """
    from resdet.data.coco_format import image_id_map

    _, cocoeval_cls, name = coco_backend(backend)
    coco_gt = load_coco_gt(gt, backend)
    results = check_results(results, coco_gt, source)
    id_map = image_id_map(coco_gt.dataset)
    if img_ids is not None and id_map is not None:
        img_ids = [id_map[i] for i in img_ids]
    if not results:
        # Scored like any other list (pycocotools' loadRes cannot load an empty one; resdet's
        # load_results can): AP 0 where there is ground truth, NaN where there is none.
        logger.warning("No detections to evaluate.")
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
                self._gt = load_coco_gt(coco, self._backend, source=self._dataset_name)
        return self._gt

    def reset(self) -> None:
        """Forget the recorded predictions (before a new evaluation)."""
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
                # valid JSON even from a diverged model (non-finite scores are refused below)
                json.dump(null_nonfinite(predictions), f, allow_nan=False)
            logger.info("Saved %d detections to %s", len(predictions), path)
        summary: List[str] = []
        res = evaluate_coco(self._ground_truth(), predictions, backend=self._backend,
                            img_ids=sorted(set(image_ids), key=str), summary=summary,
                            source=f"the detections on {self._dataset_name}")
        if summary:
            logger.info("Evaluation of %s:\n%s", self._dataset_name, summary[0])
        return {"bbox": res}
