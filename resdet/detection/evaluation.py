"""Which evaluator scores a detection dataset, where its files go, and eval_results.json: once.

Both engines evaluate with resdet's evaluators (:mod:`resdet.evaluation`: COCO through
pycocotools / faster-coco-eval, VOC with the devkit's algorithm), fed the same records by the same
loaders, so one weights file gives the same ``eval_results.json`` on either engine. The Detectron2
adapter runs them inside Detectron2's own inference loop (they take its ``{"instances"}`` outputs).

Output places (Detectron2's): ``OUTPUT_DIR/inference/<dataset>/`` for an evaluator's files
(``coco_instances_results.json``); for the VOC2012 test split, which has no public labels, the
evaluation server's files ``results/VOC2012/Main/comp4_det_test_<class>.txt`` under
``TEST.VOC_SUBMISSION_DIR`` (default: that inference folder). With ``TEST.VOC_SUBMISSION_DIR``
set, labelled VOC splits write the same files there too, besides their metrics. Submission lines
are the devkit lines resdet's VOC evaluator scores (:func:`resdet.evaluation.voc_evaluation.
format_detection`), so the files a user uploads are the ones whose AP was printed.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict, defaultdict
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence

from resdet.errors import UserError

if TYPE_CHECKING:
    from fvcore.common.config import CfgNode

logger = logging.getLogger(__name__)


def inference_dir(cfg: CfgNode, dataset_name: str) -> str:
    """``OUTPUT_DIR/inference/<dataset>``: where an evaluator writes its files."""
    return os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)


def has_labels(dataset_name: str) -> bool:
    """False for a dataset without public labels (VOC2012 test), whose evaluation writes
    submission files instead of metrics."""
    from resdet.data.catalog import get_metadata

    meta = get_metadata(dataset_name)
    return not (meta.get("evaluator_type") == "pascal_voc" and meta.get("year") == 2012
                and meta.get("split") == "test")


class VOCSubmissionFiles:
    """An evaluator that only writes the VOC evaluation server's files; ``evaluate`` returns {}.

    Args:
        dataset_name: a VOC dataset of the catalog.
        output_dir: the files go to ``output_dir/results/VOC<year>/Main/``.
    """

    def __init__(self, dataset_name: str, output_dir: str):
        from resdet.evaluation import PascalVOCEvaluator

        self._writer = PascalVOCEvaluator(dataset_name, output_dir)
        self._dataset_name = dataset_name
        self.reset()

    def reset(self) -> None:
        """Forget the detections seen so far."""
        self._lines: Dict[int, List[str]] = defaultdict(list)

    def process(self, inputs: List[dict], outputs: List[dict]) -> None:
        """Keep each detection as a submission line (``image_id score x0 y0 x1 y1``, 1-based
        VOC pixels, scores to 3 decimals), per class."""
        from resdet.evaluation.coco_evaluation import unpack_outputs
        from resdet.evaluation.voc_evaluation import format_detection

        for inp, out in zip(inputs, outputs):
            boxes, scores, labels = unpack_outputs(out)
            for box, score, cls in zip(boxes.reshape(-1, 4), scores.tolist(), labels.tolist()):
                self._lines[int(cls)].append(format_detection(inp["image_id"], score, box))

    def evaluate(self) -> dict:
        """Write ``comp4_det_test_<class>.txt`` files (gathered from every process); no metrics
        (the split has no labels), so ``{}``."""
        from resdet.evaluation.coco_evaluation import gather_to_main

        gathered = gather_to_main([dict(self._lines)])
        if gathered is None:
            return {}
        lines: Dict[int, List[str]] = defaultdict(list)
        for part in gathered:
            for cls, cls_lines in part.items():
                lines[cls].extend(cls_lines)
        folder = self._writer.write_submission(lines)
        logger.info("Wrote %d detections of %s as VOC evaluation-server files to %s.",
                    sum(len(v) for v in lines.values()), self._dataset_name, folder)
        return {}


class EvaluatorGroup:
    """Several evaluators run as one (Detectron2's ``DatasetEvaluators``); results are merged."""

    def __init__(self, evaluators: Sequence[Any]):
        self.evaluators = list(evaluators)

    def reset(self) -> None:
        """Reset every evaluator."""
        for e in self.evaluators:
            e.reset()

    def process(self, inputs: List[dict], outputs: List[dict]) -> None:
        """Hand the batch to every evaluator."""
        for e in self.evaluators:
            e.process(inputs, outputs)

    def evaluate(self) -> dict:
        """Every evaluator's results, merged in order (a later key wins)."""
        results: Dict[str, Any] = OrderedDict()
        for e in self.evaluators:
            results.update(e.evaluate() or {})
        return results


def build_detection_evaluator(cfg: CfgNode, dataset_name: str, output_dir: Optional[str] = None):
    """The evaluator for one ``DATASETS.TEST`` entry, on either engine.

    Args:
        cfg: the run's config (OUTPUT_DIR, TEST.VOC_SUBMISSION_DIR).
        dataset_name: a detection dataset of resdet's catalog.
        output_dir: the evaluator's folder (default :func:`inference_dir`).

    Returns:
        An object with ``reset()``, ``process(inputs, outputs)`` and ``evaluate()`` returning
        ``{"bbox": {...}}`` (``{}`` for a split without labels, and off the main process).

    Raises:
        UserError: the dataset is unknown or not a COCO/VOC detection dataset.
    """
    from resdet.data.catalog import get_metadata
    from resdet.evaluation import build_evaluator

    output_dir = output_dir or inference_dir(cfg, dataset_name)
    submission_dir = cfg.TEST.VOC_SUBMISSION_DIR
    is_voc = get_metadata(dataset_name).get("evaluator_type") == "pascal_voc"
    if not is_voc or not submission_dir:
        return build_evaluator(dataset_name, output_dir)
    if not has_labels(dataset_name):
        return build_evaluator(dataset_name, submission_dir)
    return EvaluatorGroup([build_evaluator(dataset_name, output_dir),
                           VOCSubmissionFiles(dataset_name, submission_dir)])


def eval_results(test_names: Sequence[str], results: Mapping[str, Any]) -> "OrderedDict":
    """``{dataset: {"bbox": {...}}}`` in ``DATASETS.TEST`` order, for eval_results.json.

    ``results`` is either that mapping already or, for a single dataset, Detectron2's
    ``{"bbox": {...}}`` of that dataset alone.
    """
    out: "OrderedDict[str, Any]" = OrderedDict()
    if len(test_names) == 1 and test_names[0] not in results:
        out[test_names[0]] = dict(results)
        return out
    for name in test_names:
        out[name] = dict(results.get(name) or {})
    return out


def check_detection_datasets(names: Sequence[str], key: str) -> None:
    """Each name is a COCO or VOC detection dataset of resdet's catalog (or raise)."""
    from resdet.data.catalog import get_metadata

    for name in names:
        kind = get_metadata(name).get("evaluator_type")
        if kind not in ("coco", "pascal_voc"):
            raise UserError(f"Dataset {name!r} in {key} has no COCO or VOC evaluator "
                            f"(evaluator_type {kind!r}); list a detection dataset there.")
