"""Every detection config in configs/ builds, trains 2 iterations and evaluates, without
Detectron2, on tiny data in the official layouts."""

from __future__ import annotations

import glob
import json
import os

import pytest
import torch
from tvdet_helpers import tiny_opts, train_args

from resdet.config import load_config
from resdet.tvdet.build import build_model
from resdet.tvdet.train import main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = sorted(p for p in glob.glob(os.path.join(REPO, "configs", "*.yaml"))
                 if not os.path.basename(p).startswith("Base-"))
LOSSES = {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg"}


def test_all_configs_are_listed():
    names = {os.path.basename(p) for p in CONFIGS}
    expected = {f"faster_rcnn_{n}_coco.yaml" for n in ("R50", "R101", "R152", "VGG16")}
    expected |= {"faster_rcnn_R50_FPN_coco.yaml", "faster_rcnn_R101_FPN_coco.yaml",
                 "quickstart.yaml"}
    expected |= {f"faster_rcnn_{n}_{s}.yaml" for n in ("R101", "VGG16")
                 for s in ("voc0712", "voc2012")}
    assert expected <= names


@pytest.mark.parametrize("path", CONFIGS, ids=[os.path.basename(p) for p in CONFIGS])
def test_config_trains_two_iterations_and_evaluates(path, datasets_env, tmp_path):
    cfg = load_config(path)
    if cfg.DATASETS.TRAIN == ("shapes_train",):  # quickstart: use the tiny COCO data instead
        extra = {"DATASETS.TRAIN": '("coco_2017_train",)', "DATASETS.TEST": '("coco_2017_val",)',
                 "SOLVER.CHECKPOINT_PERIOD": "1"}
    else:
        # Random weights under frozen BN (made for ImageNet weights, not downloadable here) give
        # huge activations; lr 0 keeps the two steps finite, the plumbing is what is tested.
        extra = {"SOLVER.BASE_LR": "0.0", "SOLVER.IMS_PER_BATCH": "1"}
    if "VGG16" in path:  # fc6 alone is 25088 x 4096 (100M weights); a narrower head is enough
        extra["MODEL.RESDET.VGG_FC_DIM"] = "64"
    out = str(tmp_path / "out")
    results = main(train_args(path, tiny_opts(out, **extra)))

    with open(os.path.join(out, "metrics.json")) as f:
        records = [json.loads(line) for line in f]
    train_rec = [r for r in records if "total_loss" in r]
    assert train_rec and train_rec[-1]["iteration"] == 1
    assert LOSSES <= set(train_rec[-1])
    assert all(torch.isfinite(torch.tensor(train_rec[-1][k])) for k in LOSSES)
    for name in ("config.yaml", "log.txt", "model_final.pth", "last_checkpoint",
                 "eval_results.json"):
        assert os.path.isfile(os.path.join(out, name)), name
    if "SOLVER.CHECKPOINT_PERIOD" in extra:
        assert os.path.isfile(os.path.join(out, "model_0000000.pth"))
    with open(os.path.join(out, "eval_results.json")) as f:
        written = json.load(f)
    test_set = load_config(path, tiny_opts(out, **extra)).DATASETS.TEST[0]
    assert set(written) == {test_set}
    # the same numbers; JSON has no NaN, so an undefined AP is written as null
    assert json.dumps(written, sort_keys=True) == \
        json.dumps(results, sort_keys=True).replace("NaN", "null")
    if test_set == "voc_2012_test":
        # no public labels: the VOC server's submission files instead of numbers
        folder = os.path.join(out, "inference", test_set, "results", "VOC2012", "Main")
        assert os.path.isfile(os.path.join(folder, "comp4_det_test_aeroplane.txt"))
        assert written[test_set] == {}
    else:
        assert {"AP", "AP50", "AP75"} <= set(written[test_set]["bbox"])
    with open(os.path.join(out, "log.txt")) as f:
        assert "Engine: torchvision" in f.readline()
    final = torch.load(os.path.join(out, "model_final.pth"), weights_only=False)
    assert final["iteration"] == 1 and "MODEL:" in final["cfg"]


@pytest.mark.parametrize("path", CONFIGS, ids=[os.path.basename(p) for p in CONFIGS])
def test_config_reads_paper_keys(path):
    """The keys that define each setting reach the torchvision modules."""
    narrow = ["MODEL.RESDET.VGG_FC_DIM", "64"] if "VGG16" in path else []
    cfg = load_config(path, ["MODEL.WEIGHTS", "", *narrow])
    model = build_model(cfg)
    rpn, roi = model.rpn, model.roi_heads
    assert rpn._pre_nms_top_n == {"training": cfg.MODEL.RPN.PRE_NMS_TOPK_TRAIN,
                                  "testing": cfg.MODEL.RPN.PRE_NMS_TOPK_TEST}
    assert rpn._post_nms_top_n["testing"] == cfg.MODEL.RPN.POST_NMS_TOPK_TEST
    assert rpn.nms_thresh == cfg.MODEL.RPN.NMS_THRESH
    assert rpn.fg_bg_sampler.batch_size_per_image == cfg.MODEL.RPN.BATCH_SIZE_PER_IMAGE
    assert roi.fg_bg_sampler.batch_size_per_image == cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE
    assert roi.fg_bg_sampler.positive_fraction == cfg.MODEL.ROI_HEADS.POSITIVE_FRACTION
    assert roi.detections_per_img == cfg.TEST.DETECTIONS_PER_IMAGE
    assert roi.box_predictor.cls_score.out_features == cfg.MODEL.ROI_HEADS.NUM_CLASSES + 1
    assert roi.box_roi_pool.pooler_type == cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE
    assert roi.box_roi_pool.output_size == (cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION,) * 2
    sizes = [len(s) for s in cfg.MODEL.ANCHOR_GENERATOR.SIZES]
    ratios = [len(r) for r in cfg.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS]
    assert model.rpn.anchor_generator.num_anchors_per_location()[0] == sizes[0] * ratios[0]
    assert model.transform.min_size_test == cfg.INPUT.MIN_SIZE_TEST
    mean = torch.tensor(cfg.MODEL.PIXEL_MEAN).view(3, 1, 1)
    torch.testing.assert_close(model.transform.pixel_mean, mean)
