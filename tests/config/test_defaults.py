"""The default tree holds Detectron2's key names and values, plus resdet's keys."""

import copy

import pytest
from fvcore.common.config import CfgNode as FvcoreCfgNode

from resdet.config import CfgNode, add_resdet_config, flatten, get_cfg
from resdet.config.defaults import _C

# Hardcoded from detectron2/config/defaults.py (commit 02b5c4e2), not read from resdet.
DETECTRON2_VALUES = {
    "VERSION": 2,
    "MODEL.DEVICE": "cuda",
    "MODEL.META_ARCHITECTURE": "GeneralizedRCNN",
    "MODEL.MASK_ON": False,
    "MODEL.KEYPOINT_ON": False,
    "MODEL.PIXEL_MEAN": [103.53, 116.28, 123.675],
    "MODEL.PIXEL_STD": [1.0, 1.0, 1.0],
    "MODEL.BACKBONE.FREEZE_AT": 2,
    "MODEL.ANCHOR_GENERATOR.SIZES": [[32, 64, 128, 256, 512]],
    "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS": [[0.5, 1.0, 2.0]],
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN": 12000,
    "MODEL.RPN.PRE_NMS_TOPK_TEST": 6000,
    "MODEL.RPN.POST_NMS_TOPK_TRAIN": 2000,
    "MODEL.RPN.POST_NMS_TOPK_TEST": 1000,
    "MODEL.RPN.IOU_THRESHOLDS": [0.3, 0.7],
    "MODEL.RPN.BBOX_REG_WEIGHTS": (1.0, 1.0, 1.0, 1.0),
    "MODEL.ROI_HEADS.NAME": "Res5ROIHeads",
    "MODEL.ROI_HEADS.NUM_CLASSES": 80,
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE": 512,
    "MODEL.ROI_HEADS.POSITIVE_FRACTION": 0.25,
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST": 0.05,
    "MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS": (10.0, 10.0, 5.0, 5.0),
    "MODEL.ROI_BOX_HEAD.POOLER_TYPE": "ROIAlignV2",
    "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION": 14,
    "MODEL.RESNETS.DEPTH": 50,
    "MODEL.RESNETS.NORM": "FrozenBN",
    "MODEL.RESNETS.STRIDE_IN_1X1": True,
    "MODEL.RESNETS.OUT_FEATURES": ["res4"],
    "INPUT.MIN_SIZE_TRAIN": (800,),
    "INPUT.MAX_SIZE_TRAIN": 1333,
    "INPUT.MIN_SIZE_TEST": 800,
    "INPUT.FORMAT": "BGR",
    "DATASETS.TRAIN": (),
    "DATALOADER.NUM_WORKERS": 4,
    "SOLVER.BASE_LR": 0.001,
    "SOLVER.MAX_ITER": 40000,
    "SOLVER.STEPS": (30000,),
    "SOLVER.GAMMA": 0.1,
    "SOLVER.MOMENTUM": 0.9,
    "SOLVER.WEIGHT_DECAY": 0.0001,
    "SOLVER.WARMUP_FACTOR": 0.001,
    "SOLVER.WARMUP_ITERS": 1000,
    "SOLVER.IMS_PER_BATCH": 16,
    "SOLVER.CHECKPOINT_PERIOD": 5000,
    "SOLVER.WEIGHT_DECAY_BIAS": None,
    "SOLVER.AMP.ENABLED": False,
    "SOLVER.CLIP_GRADIENTS.ENABLED": False,
    "TEST.EVAL_PERIOD": 0,
    "TEST.DETECTIONS_PER_IMAGE": 100,
    "TEST.AUG.MIN_SIZES": (400, 500, 600, 700, 800, 900, 1000, 1100, 1200),
    "OUTPUT_DIR": "./output",
    "SEED": -1,
    "GLOBAL.HACK": 1.0,
}

RESDET_VALUES = {
    "MODEL.RESDET.ARCH": "resnet50",
    "MODEL.RESDET.SHORTCUT": "",
    "MODEL.RESDET.NUM_CLASSES": 1000,
    "MODEL.RESDET.VGG_FC_DIM": 4096,
    "DATALOADER.SKIP_BAD_SAMPLES": True,
    "SOLVER.SKIP_NONFINITE_LOSS": False,
    "SOLVER.AMP.DTYPE": "bfloat16",
    "SOLVER.CHANNELS_LAST": False,
    "SOLVER.COMPILE": False,
    "TEST.VOC_SUBMISSION_DIR": "",
    "ENGINE": "auto",
    "PRETRAIN.TRAIN_RESIZE_RANGE": [256, 480],
    "PRETRAIN.CROP_SIZE": 224,
    "PRETRAIN.TEST_SCALES": [224, 256, 384, 480, 640],
    "PRETRAIN.WARMUP_LR": 0.0,
    "PRETRAIN.WARMUP_UNTIL_ERROR": 0.8,
    "PRETRAIN.WARMUP_MAX_ITERS": 400,
    "PRETRAIN.VAL_SPLIT": 0,
}


@pytest.mark.parametrize("key", sorted(DETECTRON2_VALUES) + sorted(RESDET_VALUES))
def test_default_value(key):
    expected = {**DETECTRON2_VALUES, **RESDET_VALUES}[key]
    value = flatten(get_cfg())[key]
    assert value == expected
    assert type(value) is type(expected)


def test_get_cfg_is_fresh_fvcore_node():
    cfg = get_cfg()
    assert isinstance(cfg, CfgNode) and isinstance(cfg, FvcoreCfgNode)
    assert isinstance(cfg.MODEL.RESDET, CfgNode)
    assert not cfg.is_frozen()
    cfg.SOLVER.BASE_LR = 5.0
    assert get_cfg().SOLVER.BASE_LR == 0.001
    # The module-level defaults stay Detectron2's alone.
    assert "RESDET" not in _C.MODEL and "PRETRAIN" not in _C


def test_no_out_of_scope_sections():
    model = get_cfg().MODEL
    for name in ("ROI_MASK_HEAD", "ROI_KEYPOINT_HEAD", "RETINANET", "SEM_SEG_HEAD", "PANOPTIC_FPN"):
        assert name not in model


def test_add_resdet_config_changes_no_existing_key():
    base = _C.clone()
    before = flatten(base)
    add_resdet_config(base)
    after = flatten(base)
    assert {k: after[k] for k in before} == before
    assert set(after) - set(before) == {
        k for k in after if k.startswith(("MODEL.RESDET.", "PRETRAIN."))
    } | {
        "DATALOADER.SKIP_BAD_SAMPLES", "SOLVER.SKIP_NONFINITE_LOSS", "SOLVER.AMP.DTYPE",
        "SOLVER.CHANNELS_LAST", "SOLVER.COMPILE", "TEST.VOC_SUBMISSION_DIR", "ENGINE",
    }


def test_add_resdet_config_keeps_values_already_set_and_is_idempotent():
    cfg = get_cfg()
    cfg.MODEL.RESDET.ARCH = "resnet101"
    snapshot = copy.deepcopy(flatten(cfg))
    add_resdet_config(cfg)
    assert flatten(cfg) == snapshot


def test_add_resdet_config_on_plain_fvcore_node_uses_its_class():
    cfg = FvcoreCfgNode({"MODEL": {}, "SOLVER": {}, "DATALOADER": {}, "TEST": {}})
    add_resdet_config(cfg)
    assert type(cfg.MODEL.RESDET) is FvcoreCfgNode and type(cfg.PRETRAIN) is FvcoreCfgNode
    assert cfg.SOLVER.AMP.DTYPE == "bfloat16"
