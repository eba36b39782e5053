"""Classification pretraining (paper Sec. 3.4, 4.2): model, data, evaluation, multi-crop tests."""

from resdet.pretrain.data import EvalDataset, Normalizer, TrainDataset, compute_normalizer
from resdet.pretrain.multicrop import class_score_map, multiscale_probs, ten_crop_probs
from resdet.pretrain.task import ClassificationTask, evaluate_classifier
from resdet.pretrain.train import build_pretrain_model, check_pretrain_config, main, run

__all__ = [
    "ClassificationTask",
    "Normalizer",
    "EvalDataset",
    "TrainDataset",
    "build_pretrain_model",
    "check_pretrain_config",
    "class_score_map",
    "compute_normalizer",
    "evaluate_classifier",
    "main",
    "multiscale_probs",
    "run",
    "ten_crop_probs",
]
