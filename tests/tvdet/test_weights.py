"""Weights move between this engine and resdet backbones (hence the Detectron2 engine)."""

from __future__ import annotations

import torch
from tvdet_helpers import config_path

from resdet.checkpoint import load_weights
from resdet.config import load_config
from resdet.modeling import VGG, build_backbone, build_classifier
from resdet.tvdet.build import build_model
from resdet.tvdet.weights import backbone_state_dict

R18 = ["MODEL.WEIGHTS", "", "MODEL.RESDET.ARCH", "resnet18", "MODEL.RESNETS.DEPTH", "18",
       "MODEL.RESNETS.RES2_OUT_CHANNELS", "64"]


def _perturbed(model):
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.add_(torch.rand_like(t))
    return model


def _same(a: dict, b: dict, keys) -> None:
    for k in keys:
        torch.testing.assert_close(a[k], b[k], msg=k)


def test_c4_detector_checkpoint_loads_into_resdet_backbone_all_keys_matched(tmp_path):
    det = _perturbed(build_model(load_config(config_path("faster_rcnn_R50_coco.yaml"), R18)))
    path = tmp_path / "model_final.pth"
    torch.save({"model": det.state_dict(), "iteration": 1}, path)
    net = build_backbone("resnet18", out_features=("res5",), norm="FrozenBN")
    report = load_weights(net, str(path))
    assert report.missing == [] and report.mismatched == []
    assert set(report.matched) == set(net.state_dict())
    _same(net.state_dict(), backbone_state_dict(det), net.state_dict())
    # and back: the detector starts from those backbone weights (res5 goes to the box head)
    torch.save(net.state_dict(), tmp_path / "backbone.pth")
    det2 = build_model(load_config(config_path("faster_rcnn_R50_coco.yaml"),
                                   R18 + ["MODEL.WEIGHTS", str(tmp_path / "backbone.pth")]))
    _same(backbone_state_dict(det2), backbone_state_dict(det), net.state_dict())


def test_fpn_detector_checkpoint_loads_into_resdet_backbone(tmp_path):
    det = _perturbed(build_model(load_config(config_path("quickstart.yaml"))))
    path = tmp_path / "model_final.pth"
    torch.save({"model": det.state_dict()}, path)
    net = build_backbone("resnet18", out_features=("res5",), norm="BN")
    report = load_weights(net, str(path))
    weights = [k for k in net.state_dict() if not k.endswith("num_batches_tracked")]
    assert report.missing == [] and set(weights) <= set(report.matched)
    _same(net.state_dict(), det.backbone.body.state_dict(), weights)


def test_classifier_weights_initialise_backbone_and_res5_head(tmp_path):
    clf = _perturbed(build_classifier("resnet18", num_classes=10, norm="FrozenBN"))
    torch.save({"model": clf.state_dict()}, tmp_path / "clf.pth")
    det = build_model(load_config(config_path("faster_rcnn_R50_coco.yaml"),
                                  R18 + ["MODEL.WEIGHTS", str(tmp_path / "clf.pth")]))
    sd = clf.state_dict()
    got = backbone_state_dict(det)
    _same(got, sd, got.keys())


def test_vgg_fc6_fc7_come_from_the_classifier(tmp_path):
    clf = _perturbed(VGG(num_classes=10, fc_dim=32))
    torch.save(clf.state_dict(), tmp_path / "vgg.pth")
    det = build_model(load_config(config_path("faster_rcnn_VGG16_coco.yaml"),
                                  ["MODEL.WEIGHTS", str(tmp_path / "vgg.pth"),
                                   "MODEL.RESDET.VGG_FC_DIM", "32"]))
    head = det.roi_heads.box_head
    torch.testing.assert_close(head.fc6.weight, clf.fc6.weight)
    torch.testing.assert_close(head.fc7.bias, clf.fc7.bias)
    torch.testing.assert_close(det.backbone.body.conv5_3.weight, clf.conv5_3.weight)


def test_own_detector_checkpoint_restores_everything(tmp_path):
    cfg = load_config(config_path("quickstart.yaml"))
    det = _perturbed(build_model(cfg))
    torch.save({"model": det.state_dict()}, tmp_path / "model_final.pth")
    det2 = build_model(load_config(config_path("quickstart.yaml"),
                                   ["MODEL.WEIGHTS", str(tmp_path / "model_final.pth")]))
    _same(det2.state_dict(), det.state_dict(), det.state_dict().keys())


def test_whole_detector_round_trip_through_detectron2_names(tmp_path):
    """A detector in Detectron2's names (as its engine saves it) loads whole into this engine
    and detects the same; verified against Detectron2 itself by hand (same boxes to 0.1 px)."""
    from resdet.detection.detector_names import tvdet_to_detectron2

    for name, opts, fpn in (("quickstart.yaml", [], True),
                            ("faster_rcnn_R50_coco.yaml", R18 + ["MODEL.ROI_HEADS.NUM_CLASSES",
                                                                 "3"], False)):
        cfg = load_config(config_path(name), opts + ["MODEL.RPN.POST_NMS_TOPK_TEST", "50",
                                                     "INPUT.MIN_SIZE_TEST", "96"])
        torch.manual_seed(0)
        det = build_model(cfg).eval()
        with torch.no_grad():  # confident-enough scores so that detections exist
            det.roi_heads.box_predictor.cls_score.weight.mul_(30)
        d2 = tvdet_to_detectron2(det.state_dict(), fpn=fpn)
        prefix = "backbone.bottom_up." if fpn else "backbone."
        assert prefix + "stem.conv1.weight" in d2
        assert "proposal_generator.rpn_head.objectness_logits.weight" in d2
        assert ("backbone.fpn_lateral2.weight" in d2) == fpn
        assert ("roi_heads.res5.0.conv1.weight" in d2) == (not fpn)
        assert d2["roi_heads.box_predictor.bbox_pred.weight"].shape[0] == 3 * 4
        torch.testing.assert_close(d2["roi_heads.box_predictor.cls_score.bias"][-1],
                                   det.roi_heads.box_predictor.cls_score.bias[0])
        path = tmp_path / f"d2_{fpn}.pth"
        torch.save({"model": d2, "iteration": 9}, path)
        det2 = build_model(load_config(config_path(name), opts + [
            "MODEL.WEIGHTS", str(path), "MODEL.RPN.POST_NMS_TOPK_TEST", "50",
            "INPUT.MIN_SIZE_TEST", "96"])).eval()
        image = torch.randint(0, 256, (3, 80, 100), dtype=torch.uint8)
        with torch.no_grad():
            a, b = det([image])[0], det2([image])[0]
        assert len(a["boxes"]) > 0
        for k in ("boxes", "scores", "labels"):
            torch.testing.assert_close(a[k], b[k])


def test_torchvision_backbone_weights_name_the_input_settings_they_need(tmp_path, caplog):
    import torchvision

    from resdet.detection.input_settings import torchvision_settings_advice

    path = tmp_path / "tv_resnet50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    cfg = load_config(config_path("faster_rcnn_R50_coco.yaml"), ["MODEL.WEIGHTS", str(path)])
    with caplog.at_level("WARNING"):
        build_model(cfg)
    assert (f"{path} holds torchvision weights, trained on RGB images normalised by ImageNet's "
            "mean and std: set MODEL.PIXEL_MEAN [123.675, 116.28, 103.53], MODEL.PIXEL_STD "
            "[58.395, 57.12, 57.375], INPUT.FORMAT 'RGB', MODEL.RESNETS.STRIDE_IN_1X1 False "
            "(Detectron2's settings for torchvision backbones)") in caplog.text
    matching = load_config(config_path("faster_rcnn_R50_coco.yaml"), [
        "MODEL.PIXEL_MEAN", "[123.675, 116.28, 103.53]", "MODEL.PIXEL_STD",
        "[58.395, 57.12, 57.375]", "INPUT.FORMAT", "RGB", "MODEL.RESNETS.STRIDE_IN_1X1", "False"])
    assert torchvision_settings_advice(matching, "torchvision ResNet (or timm)", "w") == ""
    # ResNet-18 has no bottleneck: only the input settings; MSRA weights need none of this
    r18 = load_config(config_path("faster_rcnn_R50_coco.yaml"), R18)
    assert "STRIDE_IN_1X1" not in torchvision_settings_advice(r18, "torchvision ResNet", "w")
    assert torchvision_settings_advice(cfg, "MSRA/Caffe2 blobs", "w") == ""
