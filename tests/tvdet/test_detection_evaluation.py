"""The evaluator choice and its files (resdet.detection.evaluation), the same on both engines."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from resdet.config import load_config
from resdet.detection.evaluation import build_detection_evaluator, eval_results
from resdet.evaluation import PascalVOCEvaluator

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests"))
from voc_hand_case import write_hand_voc  # noqa: E402


@pytest.fixture
def hand_voc(tmp_path, monkeypatch):
    write_hand_voc(tmp_path / "ds", 2007, "test")
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "ds"))
    return tmp_path


def _outputs():
    return [{"boxes": np.array([[0.0, 0, 9, 9]]), "scores": np.array([0.9]),
             "labels": np.array([11])},  # dog
            {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0, int)}]


def test_voc_submission_dir_adds_server_files_to_the_metrics(hand_voc):
    sub = hand_voc / "sub"
    cfg = load_config("", ["OUTPUT_DIR", str(hand_voc / "out"), "TEST.VOC_SUBMISSION_DIR",
                           str(sub)])
    evaluator = build_detection_evaluator(cfg, "voc_2007_test")
    evaluator.reset()
    evaluator.process([{"image_id": "000001"}, {"image_id": "000002"}], _outputs())
    results = evaluator.evaluate()
    # one of two (non-difficult) dogs found at precision 1: VOC07 11-point AP 6/11
    assert results["bbox"]["AP50"] == pytest.approx(600 / 11)
    dog = sub / "results" / "VOC2007" / "Main" / "comp4_det_test_dog.txt"
    assert dog.read_text() == "000001 0.900 1.0 1.0 9.0 9.0\n"  # the devkit's lines, 1-based
    assert len(list(dog.parent.iterdir())) == 20


def test_without_submission_dir_only_metrics(hand_voc):
    cfg = load_config("", ["OUTPUT_DIR", str(hand_voc / "out")])
    evaluator = build_detection_evaluator(cfg, "voc_2007_test")
    assert isinstance(evaluator, PascalVOCEvaluator)


def test_eval_results_keyed_by_dataset_in_test_order():
    assert eval_results(("a",), {"bbox": {"AP": 1.0}}) == {"a": {"bbox": {"AP": 1.0}}}
    both = eval_results(("b", "a"), {"a": {"bbox": {}}, "b": {"bbox": {"AP": 2.0}}})
    assert list(both) == ["b", "a"] and both["b"] == {"bbox": {"AP": 2.0}}
