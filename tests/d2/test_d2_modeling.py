"""resdet's backbones and heads inside Detectron2, and their equivalence with Detectron2's own."""

import pickle

import pytest

pytest.importorskip("detectron2")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.config import get_cfg as d2_get_cfg  # noqa: E402
from detectron2.modeling import (  # noqa: E402
    BACKBONE_REGISTRY,
    ROI_HEADS_REGISTRY,
    build_backbone,
    build_model,
)
from detectron2.modeling.roi_heads import ROI_BOX_HEAD_REGISTRY  # noqa: E402

import resdet.d2  # noqa: E402,F401
from resdet.config import add_resdet_config  # noqa: E402
from resdet.d2 import ResdetCheckpointer  # noqa: E402
from resdet.errors import UserError  # noqa: E402


def _cfg(**kv):
    cfg = add_resdet_config(d2_get_cfg())
    cfg.MODEL.DEVICE = "cpu"
    for key, value in kv.items():
        node = cfg
        *path, last = key.split("__")
        for part in path:
            node = node[part]
        node[last] = value
    return cfg


def test_registered_names():
    assert "build_resdet_resnet_backbone" in BACKBONE_REGISTRY
    assert "build_resdet_resnet_fpn_backbone" in BACKBONE_REGISTRY
    assert "build_resdet_vgg_backbone" in BACKBONE_REGISTRY
    assert "ResdetRes5ROIHeads" in ROI_HEADS_REGISTRY
    assert "ResdetVGGBoxHead" in ROI_BOX_HEAD_REGISTRY


def test_c4_fpn_vgg_backbone_shapes():
    x = torch.rand(1, 3, 64, 96)
    c4 = build_backbone(_cfg(MODEL__BACKBONE__NAME="build_resdet_resnet_backbone"))
    assert {k: (s.channels, s.stride) for k, s in c4.output_shape().items()} == {
        "res4": (1024, 16)}
    assert not hasattr(c4, "res5")  # C4: res5 lives in the RoI head
    assert c4(x)["res4"].shape == (1, 1024, 4, 6)
    # FREEZE_AT 2 (Detectron2's default): stem and res2 get no gradient
    assert not any(p.requires_grad for p in c4.stem.parameters())
    assert not any(p.requires_grad for p in c4.res2.parameters())
    assert all(p.requires_grad for p in c4.res3.parameters())

    cfg = _cfg(MODEL__BACKBONE__NAME="build_resdet_resnet_fpn_backbone")
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    fpn = build_backbone(cfg)
    assert {k: s.stride for k, s in fpn.output_shape().items()} == {
        "p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}
    assert "bottom_up.res5.2.conv3.weight" in fpn.state_dict()

    vgg = build_backbone(_cfg(MODEL__BACKBONE__NAME="build_resdet_vgg_backbone",
                              MODEL__RESDET__ARCH="vgg16"))
    assert {k: (s.channels, s.stride) for k, s in vgg.output_shape().items()} == {
        "conv5_3": (512, 16)}
    assert vgg(x)["conv5_3"].shape == (1, 512, 4, 6)
    assert "conv5_3.weight" in vgg.state_dict()


def test_depth_must_agree_with_arch():
    cfg = _cfg(MODEL__BACKBONE__NAME="build_resdet_resnet_backbone",
               MODEL__RESDET__ARCH="resnet101")
    cfg.MODEL.RESNETS.DEPTH = 152  # one fact, two keys (resolve_arch): a disagreement names both
    with pytest.raises(UserError,
                       match=r"MODEL\.RESDET\.ARCH = 'resnet101'.*MODEL\.RESNETS\.DEPTH = 152"):
        build_backbone(cfg)
    cfg.MODEL.RESNETS.DEPTH = 50  # Detectron2's default: follows ARCH
    assert len(build_backbone(cfg).res4) == 23
    cfg.MODEL.RESNETS.DEPTH = 101
    assert len(build_backbone(cfg).res4) == 23


def test_unsupported_resnet_key_is_an_error():
    cfg = _cfg(MODEL__BACKBONE__NAME="build_resdet_resnet_backbone")
    cfg.MODEL.RESNETS.NUM_GROUPS = 32
    with pytest.raises(UserError, match="MODEL.RESNETS.NUM_GROUPS"):
        build_backbone(cfg)


@pytest.mark.parametrize("arch,shortcut,depth", [("plain50", "", 50), ("resnet50", "C", 50),
                                                 ("resnet18", "A", 18)])
def test_res5_head_follows_backbone_block_type(arch, shortcut, depth):
    cfg = _cfg(MODEL__BACKBONE__NAME="build_resdet_resnet_backbone",
               MODEL__ROI_HEADS__NAME="ResdetRes5ROIHeads", MODEL__RESDET__ARCH=arch,
               MODEL__RESDET__SHORTCUT=shortcut, MODEL__RESNETS__DEPTH=depth)
    if depth == 18:
        cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    model = build_model(cfg)
    res5 = model.roi_heads.res5
    backbone_block = model.backbone.res4[0]
    assert type(res5[0]) is type(backbone_block)
    assert res5[0].residual == backbone_block.residual
    if arch.startswith("plain"):
        assert all(b.shortcut is None and not b.residual for b in res5)
    if shortcut == "C":
        assert all(b.shortcut is not None for b in res5)  # projections everywhere
    if shortcut == "A":
        assert all(b.shortcut is None and b.residual for b in res5)  # zero-padded identity
    assert model.roi_heads.box_predictor.cls_score.in_features == res5[-1].out_channels
    model.eval()
    with torch.no_grad():
        out = model([{"image": torch.rand(3, 64, 96) * 255, "height": 64, "width": 96}])
    assert "instances" in out[0]


def test_vgg_box_head():
    cfg = _cfg(MODEL__BACKBONE__NAME="build_resdet_vgg_backbone", MODEL__RESDET__ARCH="vgg16",
               MODEL__ROI_HEADS__NAME="StandardROIHeads",
               MODEL__ROI_BOX_HEAD__NAME="ResdetVGGBoxHead", MODEL__RESDET__VGG_FC_DIM=64)
    cfg.MODEL.RPN.IN_FEATURES = ["conv5_3"]
    cfg.MODEL.ROI_HEADS.IN_FEATURES = ["conv5_3"]
    cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 7
    cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE = "ROIPool"
    model = build_model(cfg)
    head = model.roi_heads.box_head
    assert (head.fc6.in_features, head.fc6.out_features) == (512 * 7 * 7, 64)
    assert head.output_shape.channels == 64
    assert model.roi_heads.box_predictor.cls_score.in_features == 64
    assert head(torch.rand(2, 512, 7, 7)).shape == (2, 64)


# ---- equivalence with Detectron2's own ResNet ------------------------------------------------

_C2_BRANCH = {"conv1": "branch2a", "conv2": "branch2b", "conv3": "branch2c",
              "shortcut": "branch1"}


def _msra_name(key: str) -> str:
    """resdet/Detectron2 name -> MSRA Caffe2 blob name (inverse of Detectron2's renaming)."""
    if key.startswith("stem.conv1."):
        rest = key[len("stem.conv1."):]
        return {"weight": "conv1_w", "norm.weight": "res_conv1_bn_s",
                "norm.bias": "res_conv1_bn_b"}[rest]
    stage, block, conv, *rest = key.split(".")
    rest = ".".join(rest)
    suffix = {"weight": "w", "norm.weight": "bn_s", "norm.bias": "bn_b"}[rest]
    return f"{stage}_{block}_{_C2_BRANCH[conv]}_{suffix}"


def _write_msra_pkl(path, depth=50):
    """Random ResNet weights in MSRA naming (affine BN only, as the released models)."""
    cfg = _cfg(MODEL__RESNETS__OUT_FEATURES=["res5"], MODEL__RESNETS__DEPTH=depth)
    ref = build_backbone(cfg)  # Detectron2's ResNet, only for the names and shapes
    rng = np.random.default_rng(0)
    blobs = {}
    for key, value in ref.state_dict().items():
        if "running_" in key:
            continue
        shape = tuple(value.shape)
        if key.endswith("norm.weight"):
            arr = rng.uniform(0.5, 1.0, size=shape)
        elif key.endswith("norm.bias"):
            arr = rng.normal(0, 0.1, size=shape)
        else:  # conv weight: He-scaled, damped so 16+ blocks stay finite
            fan_in = int(np.prod(shape[1:]))
            arr = rng.normal(0, 0.5 * np.sqrt(2.0 / fan_in), size=shape)
        blobs[_msra_name(key)] = arr.astype(np.float32)
    # the hand-written naming agrees with resdet's exporter
    from resdet.checkpoint import resdet_to_msra_name

    assert all(resdet_to_msra_name(k) == _msra_name(k) for k in ref.state_dict()
               if "running_" not in k)
    blobs["fc1000_w"] = rng.normal(0, 0.01, size=(1000, 2048)).astype(np.float32)
    blobs["fc1000_b"] = np.zeros(1000, np.float32)
    with open(path, "wb") as f:
        pickle.dump({"blobs": blobs}, f)
    return blobs


def _c4_cfg(resdet: bool):
    cfg = _cfg(MODEL__RESNETS__STRIDE_IN_1X1=True, MODEL__RESNETS__NORM="FrozenBN")
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 50
    if resdet:
        cfg.MODEL.BACKBONE.NAME = "build_resdet_resnet_backbone"
        cfg.MODEL.ROI_HEADS.NAME = "ResdetRes5ROIHeads"
    return cfg


def test_res4_features_match_detectron2_with_msra_weights(tmp_path):
    pkl = tmp_path / "R-50.pkl"
    blobs = _write_msra_pkl(pkl)
    ours = build_backbone(_c4_cfg(resdet=True)).eval()
    theirs = build_backbone(_c4_cfg(resdet=False)).eval()
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())
    ResdetCheckpointer(ours).load(str(pkl))
    DetectionCheckpointer(theirs).load(str(pkl))
    # the file really was loaded (not two equal default initialisations)
    np.testing.assert_array_equal(ours.res3[1].conv2.weight.detach().numpy(),
                                  blobs["res3_1_branch2b_w"])
    x = torch.rand(2, 3, 96, 128) * 255 - 120
    with torch.no_grad():
        a, b = ours(x)["res4"], theirs(x)["res4"]
    assert a.shape == (2, 1024, 6, 8)
    assert a.abs().mean() > 1e-3
    torch.testing.assert_close(a, b)


def test_c4_detector_outputs_match_detectron2(tmp_path):
    pkl = tmp_path / "R-50.pkl"
    _write_msra_pkl(pkl)
    torch.manual_seed(0)
    theirs = build_model(_c4_cfg(resdet=False)).eval()
    ours = build_model(_c4_cfg(resdet=True)).eval()
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())
    DetectionCheckpointer(theirs).load(str(pkl))
    ResdetCheckpointer(ours).load(str(pkl))
    # MSRA files hold the ImageNet network only; give both the same random RPN and box predictor.
    heads = {k: v for k, v in theirs.state_dict().items()
             if k.startswith(("proposal_generator.", "roi_heads.box_predictor."))}
    ours.load_state_dict(heads, strict=False)
    torch.testing.assert_close(ours.roi_heads.res5[2].conv3.weight,
                               theirs.roi_heads.res5[2].conv3.weight)
    image = torch.rand(3, 96, 128) * 255
    inputs = [{"image": image, "height": 96, "width": 128}]
    with torch.no_grad():
        a = ours(inputs)[0]["instances"]
        b = theirs(inputs)[0]["instances"]
    assert len(a) > 0
    torch.testing.assert_close(a.pred_boxes.tensor, b.pred_boxes.tensor)
    torch.testing.assert_close(a.scores, b.scores)
    torch.testing.assert_close(a.pred_classes, b.pred_classes)


def test_detectron2_model_zoo_pkl_loads_by_exact_name(tmp_path):
    """A whole Detectron2 C4 detector saved in model-zoo format (.pkl of numpy arrays)."""
    torch.manual_seed(0)
    theirs = build_model(_c4_cfg(resdet=False)).eval()
    state = {k: v.numpy() for k, v in theirs.state_dict().items()}
    path = tmp_path / "model_final_zoo.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": state, "__author__": "Detectron2 Model Zoo"}, f)
    ours = build_model(_c4_cfg(resdet=True)).eval()
    ResdetCheckpointer(ours).load(str(path))
    for key, value in ours.state_dict().items():
        torch.testing.assert_close(value, theirs.state_dict()[key], msg=key)
