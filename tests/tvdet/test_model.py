"""The torchvision engine's parts follow Detectron2's conventions and the config's keys."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign, roi_align, roi_pool
from tvdet_helpers import config_path

from resdet.config import load_config
from resdet.errors import UserError
from resdet.modeling import build_stage
from resdet.tvdet.build import build_model
from resdet.tvdet.model import ResdetAnchorGenerator, RoIPooler, shortest_edge_size

QUICK = config_path("quickstart.yaml")
SMALL = ["MODEL.RPN.POST_NMS_TOPK_TEST", "20", "INPUT.MIN_SIZE_TEST", "64",
         "INPUT.MAX_SIZE_TEST", "100"]


def _targets():
    return [{"boxes": torch.tensor([[4.0, 6.0, 40.0, 50.0]]), "labels": torch.tensor([2])},
            {"boxes": torch.tensor([[10.0, 10.0, 30.0, 60.0], [1.0, 2.0, 20.0, 20.0]]),
             "labels": torch.tensor([0, 1])}]


@pytest.mark.parametrize("key,value", [
    ("MODEL.RPN.BOUNDARY_THRESH", "0"),
    ("INPUT.CROP.ENABLED", "True"),
    ("MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG", "True"),
    ("SOLVER.CLIP_GRADIENTS.ENABLED", "True"),
    ("TEST.AUG.ENABLED", "True"),
])
def test_unsupported_key_is_an_error_naming_it(key, value):
    cfg = load_config(QUICK, [key, value])
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        build_model(cfg)


def test_bad_values_of_read_keys_are_errors():
    with pytest.raises(UserError, match="POOLER_TYPE"):
        build_model(load_config(QUICK, ["MODEL.ROI_BOX_HEAD.POOLER_TYPE", "ROIMax"]))
    # ARCH and DEPTH carry one fact (resolve_arch): DEPTH at Detectron2's default 50 follows
    # ARCH; a DEPTH set to another network's depth is an error naming both keys
    with pytest.raises(UserError, match="MODEL.RESNETS.DEPTH = 101"):
        build_model(load_config(QUICK, ["MODEL.RESNETS.DEPTH", "101"]))
    with pytest.raises(UserError, match="NUM_FC"):
        build_model(load_config(QUICK, ["MODEL.ROI_BOX_HEAD.NUM_FC", "1"]))


def test_train_losses_and_inference_outputs():
    torch.manual_seed(0)
    model = build_model(load_config(QUICK, SMALL))
    images = [torch.randint(0, 256, (3, 70, 90), dtype=torch.uint8),
              torch.randint(0, 256, (3, 80, 64), dtype=torch.uint8)]
    model.train()
    losses = model(images, _targets())
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg"}
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2
    for det, img in zip(out, images):
        assert det["boxes"].shape[1] == 4 and len(det["scores"]) == len(det["labels"])
        # labels are 0-based contiguous, boxes in the input image's pixels
        assert det["labels"].min() >= 0 and det["labels"].max() < 3
        assert (det["boxes"][:, 2] <= img.shape[2] + 1e-3).all()
        assert (det["boxes"][:, 3] <= img.shape[1] + 1e-3).all()


def test_pixel_mean_std_and_test_resize():
    cfg = load_config(QUICK, SMALL)
    t = build_model(cfg).transform.eval()
    img = torch.full((3, 50, 100), 200.0)
    batch, _ = t([img])
    # shortest edge 64, longest at most 100: (50, 100) -> (50, 100) limited by 100
    assert tuple(batch.image_sizes[0]) == shortest_edge_size(50, 100, 64, 100) == (50, 100)
    mean = torch.tensor(cfg.MODEL.PIXEL_MEAN)
    std = torch.tensor(cfg.MODEL.PIXEL_STD)
    torch.testing.assert_close(batch.tensors[0, :, 10, 10], (200 - mean) / std)
    assert shortest_edge_size(100, 200, 64, 1000) == (64, 128)


def test_anchors_follow_detectron2():
    gen = ResdetAnchorGenerator(((32, 64),), ((0.5, 1.0, 2.0),))
    cell = gen.cell_anchors[0]
    w = cell[:, 2] - cell[:, 0]
    h = cell[:, 3] - cell[:, 1]
    torch.testing.assert_close(w * h, torch.tensor([32.0 ** 2] * 3 + [64.0 ** 2] * 3))
    torch.testing.assert_close(h / w, torch.tensor([0.5, 1.0, 2.0] * 2))
    assert math.isclose(float(cell[0, 0]), -math.sqrt(32 ** 2 / 0.5) / 2, rel_tol=1e-6)


def test_pooler_types_and_levels():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 20, 24)
    boxes = [torch.tensor([[1.0, 2.0, 30.0, 40.0]]), torch.tensor([[5.0, 5.0, 60.0, 70.5]])]
    rois = torch.tensor([[0, 1.0, 2.0, 30.0, 40.0], [1, 5.0, 5.0, 60.0, 70.5]])
    for kind, ref in (("ROIPool", roi_pool(x, rois, (7, 7), 0.25)),
                      ("ROIAlign", roi_align(x, rois, (7, 7), 0.25, 2, aligned=False)),
                      ("ROIAlignV2", roi_align(x, rois, (7, 7), 0.25, 2, aligned=True))):
        pooler = RoIPooler(["f"], [4], 7, 2, kind)
        torch.testing.assert_close(pooler({"f": x}, boxes), ref)
    # several levels: the same level assignment as torchvision's MultiScaleRoIAlign
    feats = {"p2": torch.randn(1, 4, 64, 64), "p3": torch.randn(1, 4, 32, 32),
             "p4": torch.randn(1, 4, 16, 16), "p5": torch.randn(1, 4, 8, 8)}
    many = [torch.tensor([[0.0, 0.0, 20.0, 20.0], [0.0, 0.0, 100.0, 120.0],
                          [10.0, 10.0, 250.0, 250.0], [3.0, 4.0, 60.0, 70.0]])]
    ours = RoIPooler(list(feats), [4, 8, 16, 32], 7, 2, "ROIAlign")(feats, many)
    tv = MultiScaleRoIAlign(list(feats), 7, 2)(feats, many, [(256, 256)])
    torch.testing.assert_close(ours, tv)


def test_c4_head_is_the_backbones_own_res5():
    cfg = load_config(config_path("faster_rcnn_R50_coco.yaml"),
                      ["MODEL.WEIGHTS", "", "MODEL.RESDET.ARCH", "plain50",
                       "MODEL.RESDET.SHORTCUT", "C"])
    model = build_model(cfg)
    res5 = build_stage("plain50", "res5", shortcut="C", norm="FrozenBN")
    head = model.roi_heads.box_head.res5
    assert head.state_dict().keys() == res5.state_dict().keys()
    assert [type(m).__name__ for m in head] == [type(m).__name__ for m in res5]
    assert "res5" not in dict(model.backbone.body.named_children())
    # FrozenBN everywhere; stem and res2 frozen (FREEZE_AT 2)
    assert not any(p.requires_grad for p in model.backbone.body.stem.parameters())
    assert not any(p.requires_grad for p in model.backbone.body.res2.parameters())
    assert all(p.requires_grad for p in model.backbone.body.res3.parameters())
