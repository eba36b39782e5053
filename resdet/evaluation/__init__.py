"""Detection evaluation (COCO AP, PASCAL VOC AP) with Detectron2's evaluator protocol."""

from resdet.evaluation.build import build_evaluator
from resdet.evaluation.coco_evaluation import COCOEvaluator, evaluate_coco
from resdet.evaluation.voc_evaluation import PascalVOCEvaluator

__all__ = ["COCOEvaluator", "PascalVOCEvaluator", "build_evaluator", "evaluate_coco"]
