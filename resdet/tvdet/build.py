"""Config -> torchvision Faster R-CNN with a resdet backbone (C4, FPN or VGG-16).

Every key is read from the name Detectron2 reads it from; :data:`SUPPORTED_KEYS` lists what this
engine honours and :func:`check_config` refuses a config that changes any other key from its
default (DESIGN.md: never silently ignored).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Dict, List, Sequence

from torch import nn
from torchvision.models.detection.faster_rcnn import TwoMLPHead
from torchvision.models.detection.rpn import RPNHead

from resdet.config import check_keys_honoured, lookup
from resdet.detection.options import check_resdet_can_build, network_options
from resdet.errors import UserError
from resdet.modeling import build_backbone, build_stage, get_arch
from resdet.tvdet.model import (
    BoxPredictor,
    FPNBackbone,
    Res5BoxHead,
    ResdetAnchorGenerator,
    ResdetFasterRCNN,
    ResdetRCNNTransform,
    ResdetRoIHeads,
    ResdetRPN,
    RoIPooler,
    SingleMapBackbone,
    VGGBoxHead,
)

if TYPE_CHECKING:
    from fvcore.common.config import CfgNode

logger = logging.getLogger(__name__)

# Keys (or prefixes) this engine reads. Keys of the default config not listed here must keep
# their default value (check_config).
MODEL_KEYS = (
    "VERSION", "ENGINE", "OUTPUT_DIR", "SEED", "CUDNN_BENCHMARK", "FLOAT32_PRECISION",
    "MODEL.DEVICE", "MODEL.META_ARCHITECTURE", "MODEL.WEIGHTS", "MODEL.PIXEL_MEAN",
    "MODEL.PIXEL_STD",
    "MODEL.RESDET.ARCH", "MODEL.RESDET.SHORTCUT", "MODEL.RESDET.VGG_FC_DIM",
    "MODEL.BACKBONE.NAME", "MODEL.BACKBONE.FREEZE_AT",
    "MODEL.RESNETS.DEPTH", "MODEL.RESNETS.OUT_FEATURES", "MODEL.RESNETS.NORM",
    "MODEL.RESNETS.STRIDE_IN_1X1", "MODEL.RESNETS.RES2_OUT_CHANNELS",
    "MODEL.FPN.IN_FEATURES", "MODEL.FPN.OUT_CHANNELS",
    "MODEL.PROPOSAL_GENERATOR.MIN_SIZE",
    "MODEL.ANCHOR_GENERATOR.SIZES", "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS",
    "MODEL.RPN.IN_FEATURES", "MODEL.RPN.IOU_THRESHOLDS", "MODEL.RPN.BATCH_SIZE_PER_IMAGE",
    "MODEL.RPN.POSITIVE_FRACTION", "MODEL.RPN.BBOX_REG_LOSS_WEIGHT", "MODEL.RPN.SMOOTH_L1_BETA",
    "MODEL.RPN.LOSS_WEIGHT", "MODEL.RPN.PRE_NMS_TOPK_TRAIN", "MODEL.RPN.PRE_NMS_TOPK_TEST",
    "MODEL.RPN.POST_NMS_TOPK_TRAIN", "MODEL.RPN.POST_NMS_TOPK_TEST", "MODEL.RPN.NMS_THRESH",
    "MODEL.ROI_HEADS.NAME", "MODEL.ROI_HEADS.NUM_CLASSES", "MODEL.ROI_HEADS.IN_FEATURES",
    "MODEL.ROI_HEADS.IOU_THRESHOLDS", "MODEL.ROI_HEADS.IOU_LABELS",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "MODEL.ROI_HEADS.POSITIVE_FRACTION",
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "MODEL.ROI_HEADS.NMS_THRESH_TEST",
    "MODEL.ROI_BOX_HEAD.NAME", "MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT",
    "MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS", "MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA",
    "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", "MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO",
    "MODEL.ROI_BOX_HEAD.POOLER_TYPE", "MODEL.ROI_BOX_HEAD.NUM_FC", "MODEL.ROI_BOX_HEAD.FC_DIM",
    "MODEL.ROI_BOX_HEAD.NUM_CONV", "MODEL.ROI_BOX_HEAD.CONV_DIM",
    "INPUT.MIN_SIZE_TRAIN", "INPUT.MIN_SIZE_TRAIN_SAMPLING", "INPUT.MAX_SIZE_TRAIN",
    "INPUT.MIN_SIZE_TEST", "INPUT.MAX_SIZE_TEST", "INPUT.RANDOM_FLIP", "INPUT.FORMAT",
    "TEST.DETECTIONS_PER_IMAGE",
)
TRAIN_KEYS = (
    "DATASETS.TRAIN", "DATASETS.TEST",
    "DATALOADER.NUM_WORKERS", "DATALOADER.ASPECT_RATIO_GROUPING",
    "DATALOADER.FILTER_EMPTY_ANNOTATIONS", "DATALOADER.SKIP_BAD_SAMPLES",
    # resdet.engine's schedule: WarmupMultiStepLR only (it rejects other names itself).
    "SOLVER.LR_SCHEDULER_NAME", "SOLVER.MAX_ITER", "SOLVER.BASE_LR",
    "SOLVER.MOMENTUM", "SOLVER.NESTEROV", "SOLVER.WEIGHT_DECAY", "SOLVER.WEIGHT_DECAY_NORM",
    "SOLVER.GAMMA", "SOLVER.STEPS", "SOLVER.WARMUP_FACTOR", "SOLVER.WARMUP_ITERS",
    "SOLVER.WARMUP_METHOD", "SOLVER.CHECKPOINT_PERIOD", "SOLVER.IMS_PER_BATCH",
    "SOLVER.BIAS_LR_FACTOR", "SOLVER.WEIGHT_DECAY_BIAS", "SOLVER.AMP",
    "SOLVER.SKIP_NONFINITE_LOSS", "SOLVER.CHANNELS_LAST", "SOLVER.COMPILE",
    "TEST.EVAL_PERIOD", "TEST.VOC_SUBMISSION_DIR",
)
SUPPORTED_KEYS = MODEL_KEYS + TRAIN_KEYS

POOLER_TYPES = ("ROIPool", "ROIAlign", "ROIAlignV2")


def check_config(cfg: CfgNode, supported: Sequence[str] = SUPPORTED_KEYS) -> None:
    """Refuse keys this engine would ignore, and values of read keys it cannot honour.

    Raises:
        UserError: naming the key and what to do.
    """
    check_keys_honoured(cfg, supported, engine="torchvision")
    network_options(cfg)
    if cfg.MODEL.META_ARCHITECTURE != "GeneralizedRCNN":
        raise UserError(f"MODEL.META_ARCHITECTURE = {cfg.MODEL.META_ARCHITECTURE!r} is not "
                        "supported by the torchvision engine; use 'GeneralizedRCNN'.")
    if cfg.INPUT.FORMAT not in ("BGR", "RGB"):
        raise UserError(f"INPUT.FORMAT = {cfg.INPUT.FORMAT!r}: use 'BGR' or 'RGB'.")
    thresholds = list(cfg.MODEL.ROI_HEADS.IOU_THRESHOLDS)
    labels = list(cfg.MODEL.ROI_HEADS.IOU_LABELS)
    if not ((len(thresholds) == 1 and labels == [0, 1])
            or (len(thresholds) == 2 and labels == [0, -1, 1])):
        raise UserError("MODEL.ROI_HEADS.IOU_THRESHOLDS/IOU_LABELS: the torchvision engine takes "
                        "one threshold with labels [0, 1] or two with labels [0, -1, 1].")
    if len(cfg.MODEL.RPN.IOU_THRESHOLDS) != 2:
        raise UserError("MODEL.RPN.IOU_THRESHOLDS needs two values [background, foreground].")
    if cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE not in POOLER_TYPES:
        raise UserError(f"MODEL.ROI_BOX_HEAD.POOLER_TYPE = {cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE!r}"
                        f"; use one of {', '.join(POOLER_TYPES)}.")


def _same_features(cfg: CfgNode, expected: List[str], *keys: str) -> None:
    for key in keys:
        node = lookup(cfg, key)
        if list(node) != expected:
            raise UserError(f"{key} = {list(node)} does not match this backbone; set it to "
                            f"{expected}.")


def _broadcast(values: list, count: int, key: str) -> list:
    """Detectron2 repeats a single anchor-size/ratio list over all feature maps."""
    values = [list(v) for v in values]
    if len(values) == 1:
        return values * count
    if len(values) != count:
        raise UserError(f"{key} has {len(values)} lists but the RPN sees {count} feature maps; "
                        f"give one list or {count}.")
    return values


def _build_backbone_and_head(cfg: CfgNode):
    """(backbone, box pooler, box head) for the C4, FPN or VGG-16 layout that the config names
    (:func:`resdet.detection.options.network_options` decides the networks)."""
    options = network_options(cfg)
    check_resdet_can_build(cfg)
    net = options.backbone
    box = cfg.MODEL.ROI_BOX_HEAD
    resolution = box.POOLER_RESOLUTION
    pooler_args = dict(output_size=resolution, sampling_ratio=box.POOLER_SAMPLING_RATIO,
                       pooler_type=box.POOLER_TYPE)

    if options.layout == "VGG16":
        body = build_backbone(net.arch, out_features=("conv5_3",), norm=None,
                              freeze_at=options.freeze_at)
        backbone = SingleMapBackbone(body, "conv5_3")
        _same_features(cfg, ["conv5_3"], "MODEL.RPN.IN_FEATURES", "MODEL.ROI_HEADS.IN_FEATURES")
        pooler = RoIPooler(["conv5_3"], [16], **pooler_args)
        head = VGGBoxHead(backbone.out_channels, resolution, cfg.MODEL.RESDET.VGG_FC_DIM)
        return backbone, pooler, head

    if options.layout == "C4":
        _same_features(cfg, ["res4"], "MODEL.RESNETS.OUT_FEATURES", "MODEL.RPN.IN_FEATURES",
                       "MODEL.ROI_HEADS.IN_FEATURES")
        body = build_backbone(net.arch, out_features=("res4",), freeze_at=options.freeze_at,
                              **net.kwargs())
        backbone = SingleMapBackbone(body, "res4")
        pooler = RoIPooler(["res4"], [16], **pooler_args)
        res5 = build_stage(options.res5.arch, "res5", **options.res5.kwargs())
        channels = get_arch(options.res5.arch).stage_channels[-1]  # res5's output channels
        return backbone, pooler, Res5BoxHead(res5, channels)

    if box.NUM_FC != 2 or box.NUM_CONV != 0:
        raise UserError("The torchvision engine's FPN box head is TwoMLPHead: set "
                        "MODEL.ROI_BOX_HEAD.NUM_FC 2 and MODEL.ROI_BOX_HEAD.NUM_CONV 0.")
    in_features = list(cfg.MODEL.FPN.IN_FEATURES)
    _same_features(cfg, in_features, "MODEL.RESNETS.OUT_FEATURES")
    body = build_backbone(net.arch, out_features=tuple(in_features),
                          freeze_at=options.freeze_at, **net.kwargs())
    backbone = FPNBackbone(body, in_features, cfg.MODEL.FPN.OUT_CHANNELS)
    _same_features(cfg, backbone.out_features, "MODEL.RPN.IN_FEATURES")
    roi_features = list(cfg.MODEL.ROI_HEADS.IN_FEATURES)
    unknown = [f for f in roi_features if f not in backbone.strides]
    if unknown:
        raise UserError(f"MODEL.ROI_HEADS.IN_FEATURES names {unknown}, which the FPN does not "
                        f"give; use some of {backbone.out_features}.")
    pooler = RoIPooler(roi_features, [backbone.strides[f] for f in roi_features], **pooler_args)
    head = TwoMLPHead(backbone.out_channels * resolution ** 2, box.FC_DIM)
    head.out_channels = box.FC_DIM
    return backbone, pooler, head


def build_model(cfg: CfgNode, *, load_weights: bool = True, weights_file=None,
                purpose: str = "finetune") -> ResdetFasterRCNN:
    """Build the detector the config describes (on the CPU; move it with ``.to(device)``).

    Args:
        cfg: a resdet config (:func:`resdet.config.load_config`).
        load_weights: load ``MODEL.WEIGHTS`` into the backbone (and the res5 / fc6-fc7 head).
        weights_file: ``MODEL.WEIGHTS`` already read by
            :func:`resdet.detection.weights_file.read_detection_weights` (not read again).
        purpose: ``"evaluate"`` (``--eval-only``, ``tools/predict.py``: weights must fill the
            whole detector) or ``"finetune"`` (:func:`resdet.tvdet.weights.load_detector_weights`).

    Returns:
        A :class:`~resdet.tvdet.model.ResdetFasterRCNN` (a torchvision ``FasterRCNN``).

    Raises:
        UserError: a key this engine cannot honour, values that do not fit together, or weights
            that do not fit.
    """
    check_config(cfg)
    backbone, pooler, box_head = _build_backbone_and_head(cfg)
    rpn_cfg, roi_cfg = cfg.MODEL.RPN, cfg.MODEL.ROI_HEADS
    num_maps = len(rpn_cfg.IN_FEATURES)
    sizes = _broadcast(cfg.MODEL.ANCHOR_GENERATOR.SIZES, num_maps, "MODEL.ANCHOR_GENERATOR.SIZES")
    ratios = _broadcast(cfg.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS, num_maps,
                        "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS")
    anchors_per_cell = {len(s) * len(r) for s, r in zip(sizes, ratios)}
    if len(anchors_per_cell) != 1:
        raise UserError("MODEL.ANCHOR_GENERATOR: every feature map needs the same number of "
                        "anchors (sizes x aspect ratios), as the shared RPN head predicts them.")
    anchor_generator = ResdetAnchorGenerator(tuple(tuple(s) for s in sizes),
                                             tuple(tuple(float(x) for x in r) for r in ratios))
    rpn = ResdetRPN(
        anchor_generator, RPNHead(backbone.out_channels, anchors_per_cell.pop()),
        fg_iou_thresh=rpn_cfg.IOU_THRESHOLDS[1], bg_iou_thresh=rpn_cfg.IOU_THRESHOLDS[0],
        batch_size_per_image=rpn_cfg.BATCH_SIZE_PER_IMAGE,
        positive_fraction=rpn_cfg.POSITIVE_FRACTION,
        pre_nms_top_n=dict(training=rpn_cfg.PRE_NMS_TOPK_TRAIN, testing=rpn_cfg.PRE_NMS_TOPK_TEST),
        post_nms_top_n=dict(training=rpn_cfg.POST_NMS_TOPK_TRAIN,
                            testing=rpn_cfg.POST_NMS_TOPK_TEST),
        nms_thresh=rpn_cfg.NMS_THRESH, in_features=rpn_cfg.IN_FEATURES,
        smooth_l1_beta=rpn_cfg.SMOOTH_L1_BETA, loss_weight=rpn_cfg.LOSS_WEIGHT,
        bbox_reg_loss_weight=rpn_cfg.BBOX_REG_LOSS_WEIGHT)
    rpn.min_size = max(float(cfg.MODEL.PROPOSAL_GENERATOR.MIN_SIZE), 1e-3)
    thresholds = list(roi_cfg.IOU_THRESHOLDS)
    roi_heads = ResdetRoIHeads(
        pooler, box_head, BoxPredictor(box_head.out_channels, roi_cfg.NUM_CLASSES),
        fg_iou_thresh=thresholds[-1], bg_iou_thresh=thresholds[0],
        batch_size_per_image=roi_cfg.BATCH_SIZE_PER_IMAGE,
        positive_fraction=roi_cfg.POSITIVE_FRACTION,
        bbox_reg_weights=tuple(cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS),
        score_thresh=roi_cfg.SCORE_THRESH_TEST, nms_thresh=roi_cfg.NMS_THRESH_TEST,
        detections_per_img=cfg.TEST.DETECTIONS_PER_IMAGE,
        smooth_l1_beta=cfg.MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA,
        bbox_reg_loss_weight=cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT)
    if len(cfg.MODEL.PIXEL_MEAN) != 3 or len(cfg.MODEL.PIXEL_STD) != 3:
        raise UserError("MODEL.PIXEL_MEAN and MODEL.PIXEL_STD need 3 values each.")
    transform = ResdetRCNNTransform(cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD,
                                    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST,
                                    backbone.size_divisibility)
    model = ResdetFasterRCNN(backbone, rpn, roi_heads, transform)
    if load_weights and cfg.MODEL.WEIGHTS:
        from resdet.tvdet.weights import load_detector_weights

        load_detector_weights(model, weights_file or cfg.MODEL.WEIGHTS, cfg, purpose=purpose)
    return model


def trainable_parameter_count(model: nn.Module) -> Dict[str, int]:
    """Number of trainable and frozen parameters (for the log)."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    return {"trainable": trainable, "frozen": frozen}
