"""Weights that do not fit the model: an error where nothing will train them, a warning only for
the expected class-count change when fine-tuning (issue 15)."""

import logging
import re

import pytest
import torch
import torchvision

from resdet.checkpoint import LoadReport, is_class_count_mismatch, load_weights
from resdet.errors import UserError
from resdet.modeling import build_classifier


@pytest.fixture(scope="module")
def tv_sd():
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).state_dict()  # 1000 classes


def test_evaluate_refuses_weights_that_do_not_fit_with_exact_counts(tv_sd):
    sd = {k: v for k, v in tv_sd.items() if k != "layer4.1.conv2.weight"}
    model = build_classifier("resnet18", num_classes=10, stride_in_1x1=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(UserError) as e:
        load_weights(model, sd, arch="resnet18", purpose="evaluate", source="r18.pth")
    # 122 model keys: 1 missing, 2 of another shape (the 10-class fc), 119 matched
    assert str(e.value) == (
        "r18.pth does not fit the model resnet18: 119 weights matched, 1 missing "
        "('res5.1.conv2.weight'), 2 with another shape ('fc.weight' (1000, 512) in the file, "
        "(10, 512) in the model; 'fc.bias' (1000,) in the file, (10,) in the model), 0 in the "
        "file unused; nothing trains the missing or mismatched layers when evaluating, so the "
        "results would come from a partly random network: pass the weights trained for this "
        "model (its run's model_final.pth) with the config of that run")
    for k, v in model.state_dict().items():  # refused before anything was loaded
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)


def test_evaluate_accepts_weights_that_fit(tv_sd):
    model = build_classifier("resnet18", stride_in_1x1=False)
    report = load_weights(model, tv_sd, purpose="evaluate")
    assert len(report.matched) == 122 and report.missing == [] and report.mismatched == []


def test_finetune_to_another_class_count_warns_only(tv_sd, caplog):
    model = build_classifier("resnet18", num_classes=10, stride_in_1x1=False)
    with caplog.at_level(logging.INFO, logger="resdet.checkpoint"):
        report = load_weights(model, tv_sd, arch="resnet18", source="r18.pth")  # finetune
    assert report.mismatched == ["fc.weight", "fc.bias"] and report.missing == []
    assert len(report.matched) == 120
    torch.testing.assert_close(model.state_dict()["res5.1.conv2.weight"],
                               tv_sd["layer4.1.conv2.weight"])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["Not loaded from r18.pth, its class count differs (1000 in the file, 10 "
                        "in the model; these layers start from scratch): fc.{bias,weight}"]


def test_finetune_other_shape_mismatch_is_still_an_error(tv_sd):
    sd = dict(tv_sd)
    sd["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    model = build_classifier("resnet18", num_classes=10)
    with pytest.raises(UserError, match=re.escape(
            "r18.pth: weight 'layer1.0.conv1.weight' (resdet name 'res2.0.conv1.weight') has "
            "shape (64, 64, 1, 1) but the model resnet18 expects (64, 64, 3, 3); build the "
            "architecture and options the weights were made for")):
        load_weights(model, sd, arch="resnet18", source="r18.pth")


def _detector(num_classes):
    """A detector's state dict in Detectron2's names, with a box predictor for num_classes."""
    g = torch.Generator().manual_seed(num_classes)
    return {"backbone.bottom_up.stem.conv1.weight": torch.randn(64, 3, 7, 7, generator=g),
            "roi_heads.box_head.fc1.weight": torch.randn(1024, 256 * 49, generator=g),
            "roi_heads.box_predictor.cls_score.weight": torch.randn(num_classes + 1, 1024,
                                                                    generator=g),
            "roi_heads.box_predictor.cls_score.bias": torch.randn(num_classes + 1, generator=g),
            "roi_heads.box_predictor.bbox_pred.weight": torch.randn(4 * num_classes, 1024,
                                                                    generator=g),
            "roi_heads.box_predictor.bbox_pred.bias": torch.randn(4 * num_classes, generator=g)}


def test_detector_box_predictor_for_another_class_count():
    """What the detection adapters call: LoadReport.compare, then check(purpose)."""
    report = LoadReport.compare(_detector(20), _detector(80))  # COCO weights, a VOC model
    assert report.class_count_mismatches() == report.mismatched and len(report.mismatched) == 4
    report.check("finetune", source="coco.pth", model="the detector")  # no error
    with pytest.raises(UserError, match=re.escape(
            "coco.pth does not fit the detector: 2 weights matched, 0 missing, 4 with another "
            "shape ('roi_heads.box_predictor.cls_score.weight' (81, 1024) in the file, (21, "
            "1024) in the model; ")):
        report.check("evaluate", source="coco.pth", model="the detector")

    other = _detector(20)
    other["roi_heads.box_head.fc1.weight"] = torch.zeros(1024, 512 * 49)  # another head
    other.pop("backbone.bottom_up.stem.conv1.weight")
    report = LoadReport.compare(_detector(20), other)
    with pytest.raises(UserError, match=re.escape(
            "r.pth does not fit the detector: 4 weights matched, 1 missing "
            "('backbone.bottom_up.stem.conv1.weight'), 1 with another shape "
            "('roi_heads.box_head.fc1.weight' (1024, 25088) in the file, (1024, 12544) in the "
            "model), 0 in the file unused; 1 of the mismatched weights are not a classifier or "
            "box predictor for another class count")):
        report.check("finetune", source="r.pth", model="the detector")


@pytest.mark.parametrize("name, file_shape, model_shape, expected", [
    ("fc.weight", (1000, 512), (10, 512), True),
    ("fc.bias", (1000,), (10,), True),
    ("roi_heads.box_predictor.cls_score.weight", (81, 1024), (21, 1024), True),
    ("roi_heads.box_predictor.bbox_pred.bias", (320,), (80,), True),
    ("roi_heads.mask_head.predictor.weight", (80, 256, 1, 1), (20, 256, 1, 1), True),
    ("fc.weight", (1000, 2048), (10, 512), False),  # another width: another network
    ("res2.0.conv1.weight", (64, 64, 1, 1), (32, 64, 1, 1), False),
])
def test_class_count_mismatch_rule(name, file_shape, model_shape, expected):
    assert is_class_count_mismatch(name, file_shape, model_shape) is expected


def test_unknown_purpose_is_a_programming_error(tv_sd):
    with pytest.raises(ValueError, match="purpose must be one of"):
        load_weights(build_classifier("resnet18"), tv_sd, purpose="train")
