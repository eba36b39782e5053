"""Pick the evaluator a dataset's metadata asks for."""

from __future__ import annotations

from typing import Optional, Union

from resdet.errors import UserError
from resdet.evaluation.coco_evaluation import COCOEvaluator
from resdet.evaluation.voc_evaluation import PascalVOCEvaluator


def build_evaluator(dataset_name: str, output_dir: Optional[str] = None
                    ) -> Union[COCOEvaluator, PascalVOCEvaluator]:
    """The evaluator for ``dataset_name`` by its metadata's ``evaluator_type``
    (``"coco"`` -> :class:`COCOEvaluator`, ``"pascal_voc"`` -> :class:`PascalVOCEvaluator`).

    Args:
        dataset_name: a catalog name.
        output_dir: passed to the evaluator (results file; VOC2012 test submission files).
    """
    from resdet.data.catalog import get_metadata

    kind = get_metadata(dataset_name).get("evaluator_type")
    if kind == "coco":
        return COCOEvaluator(dataset_name, output_dir)
    if kind == "pascal_voc":
        return PascalVOCEvaluator(dataset_name, output_dir)
    raise UserError(f"Dataset {dataset_name} has no detection evaluator (evaluator_type "
                    f"{kind!r}); evaluate a detection dataset (coco_*, voc_*, shapes_*).")
