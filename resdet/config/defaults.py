"""Default config tree: Detectron2's keys for Faster R-CNN (C4 and FPN), plus resdet's own keys.

The Detectron2 part is copied from ``detectron2/config/defaults.py`` (facebookresearch/detectron2,
commit 02b5c4e2, Apache-2.0): same key names, same default values, so one YAML file means the
same on the Detectron2 engine and on the torchvision engine (DESIGN.md, "Why two detection
engines"). The mask, keypoint, cascade, semantic-segmentation, panoptic and RetinaNet sections
are left out; only ``MODEL.MASK_ON`` / ``MODEL.KEYPOINT_ON`` stay (False) so Detectron2-style
configs load.

resdet's keys are added by :func:`add_resdet_config`, which never changes an existing default and
also works on Detectron2's own config (as ``projects/PointRend/point_rend/config.py`` does).
"""

from fvcore.common.config import CfgNode as _FvcoreCfgNode

from resdet.config.choices import CHOICES  # noqa: F401  (re-exported for older imports)
from resdet.config.node import CN, CfgNode

# -----------------------------------------------------------------------------
# Detectron2's defaults (detectron2/config/defaults.py), Faster R-CNN subset.
# -----------------------------------------------------------------------------
_C = CN()

# Detectron2 upgrades older configs by VERSION; resdet configs keep VERSION: 2.
_C.VERSION = 2

_C.MODEL = CN()
_C.MODEL.LOAD_PROPOSALS = False
_C.MODEL.MASK_ON = False
_C.MODEL.KEYPOINT_ON = False
# "cuda" (Detectron2's default): this process's GPU when one is visible, else the CPU, quietly.
_C.MODEL.DEVICE = "cuda"
_C.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
# A checkpoint file (resdet .pth, torchvision .pth, Detectron2/MSRA .pkl) loaded into the model.
_C.MODEL.WEIGHTS = ""
# BGR means of ImageNet; std is 1 because MSRA models absorbed it into conv1 (Detectron2's note).
_C.MODEL.PIXEL_MEAN = [103.530, 116.280, 123.675]
_C.MODEL.PIXEL_STD = [1.0, 1.0, 1.0]

# ---------------------------------------------------------------------------- #
# INPUT
# ---------------------------------------------------------------------------- #
_C.INPUT = CN()
_C.INPUT.MIN_SIZE_TRAIN = (800,)
_C.INPUT.MIN_SIZE_TRAIN_SAMPLING = "choice"
_C.INPUT.MAX_SIZE_TRAIN = 1333
# 0 disables resizing at test time.
_C.INPUT.MIN_SIZE_TEST = 800
_C.INPUT.MAX_SIZE_TEST = 1333
# "horizontal", "vertical" or "none".
_C.INPUT.RANDOM_FLIP = "horizontal"
_C.INPUT.CROP = CN({"ENABLED": False})
_C.INPUT.CROP.TYPE = "relative_range"
_C.INPUT.CROP.SIZE = [0.9, 0.9]
_C.INPUT.FORMAT = "BGR"
_C.INPUT.MASK_FORMAT = "polygon"

# ---------------------------------------------------------------------------- #
# Dataset
# ---------------------------------------------------------------------------- #
_C.DATASETS = CN()
_C.DATASETS.TRAIN = ()
_C.DATASETS.PROPOSAL_FILES_TRAIN = ()
_C.DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TRAIN = 2000
_C.DATASETS.TEST = ()
_C.DATASETS.PROPOSAL_FILES_TEST = ()
_C.DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST = 1000

# ---------------------------------------------------------------------------- #
# DataLoader
# ---------------------------------------------------------------------------- #
_C.DATALOADER = CN()
_C.DATALOADER.NUM_WORKERS = 4
_C.DATALOADER.ASPECT_RATIO_GROUPING = True
_C.DATALOADER.SAMPLER_TRAIN = "TrainingSampler"
_C.DATALOADER.REPEAT_THRESHOLD = 0.0
_C.DATALOADER.REPEAT_SQRT = True
_C.DATALOADER.FILTER_EMPTY_ANNOTATIONS = True

# ---------------------------------------------------------------------------- #
# Backbone options
# ---------------------------------------------------------------------------- #
_C.MODEL.BACKBONE = CN()
_C.MODEL.BACKBONE.NAME = "build_resnet_backbone"
# Stem and res2 frozen (stage count 2), as Detectron2.
_C.MODEL.BACKBONE.FREEZE_AT = 2

# ---------------------------------------------------------------------------- #
# FPN options
# ---------------------------------------------------------------------------- #
_C.MODEL.FPN = CN()
_C.MODEL.FPN.IN_FEATURES = []
_C.MODEL.FPN.OUT_CHANNELS = 256
_C.MODEL.FPN.NORM = ""
_C.MODEL.FPN.FUSE_TYPE = "sum"

# ---------------------------------------------------------------------------- #
# Proposal generator options
# ---------------------------------------------------------------------------- #
_C.MODEL.PROPOSAL_GENERATOR = CN()
_C.MODEL.PROPOSAL_GENERATOR.NAME = "RPN"
_C.MODEL.PROPOSAL_GENERATOR.MIN_SIZE = 0

# ---------------------------------------------------------------------------- #
# Anchor generator options
# ---------------------------------------------------------------------------- #
_C.MODEL.ANCHOR_GENERATOR = CN()
_C.MODEL.ANCHOR_GENERATOR.NAME = "DefaultAnchorGenerator"
_C.MODEL.ANCHOR_GENERATOR.SIZES = [[32, 64, 128, 256, 512]]
_C.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS = [[0.5, 1.0, 2.0]]
_C.MODEL.ANCHOR_GENERATOR.ANGLES = [[-90, 0, 90]]
_C.MODEL.ANCHOR_GENERATOR.OFFSET = 0.0

# ---------------------------------------------------------------------------- #
# RPN options
# ---------------------------------------------------------------------------- #
_C.MODEL.RPN = CN()
_C.MODEL.RPN.HEAD_NAME = "StandardRPNHead"
_C.MODEL.RPN.IN_FEATURES = ["res4"]
_C.MODEL.RPN.BOUNDARY_THRESH = -1
_C.MODEL.RPN.IOU_THRESHOLDS = [0.3, 0.7]
_C.MODEL.RPN.IOU_LABELS = [0, -1, 1]
_C.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 256
_C.MODEL.RPN.POSITIVE_FRACTION = 0.5
_C.MODEL.RPN.BBOX_REG_LOSS_TYPE = "smooth_l1"
_C.MODEL.RPN.BBOX_REG_LOSS_WEIGHT = 1.0
_C.MODEL.RPN.BBOX_REG_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
_C.MODEL.RPN.SMOOTH_L1_BETA = 0.0
_C.MODEL.RPN.LOSS_WEIGHT = 1.0
# With FPN these are per level (Detectron2's note).
_C.MODEL.RPN.PRE_NMS_TOPK_TRAIN = 12000
_C.MODEL.RPN.PRE_NMS_TOPK_TEST = 6000
_C.MODEL.RPN.POST_NMS_TOPK_TRAIN = 2000
_C.MODEL.RPN.POST_NMS_TOPK_TEST = 1000
_C.MODEL.RPN.NMS_THRESH = 0.7
_C.MODEL.RPN.CONV_DIMS = [-1]

# ---------------------------------------------------------------------------- #
# ROI HEADS options
# ---------------------------------------------------------------------------- #
_C.MODEL.ROI_HEADS = CN()
_C.MODEL.ROI_HEADS.NAME = "Res5ROIHeads"
_C.MODEL.ROI_HEADS.NUM_CLASSES = 80
_C.MODEL.ROI_HEADS.IN_FEATURES = ["res4"]
_C.MODEL.ROI_HEADS.IOU_THRESHOLDS = [0.5]
_C.MODEL.ROI_HEADS.IOU_LABELS = [0, 1]
_C.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 512
_C.MODEL.ROI_HEADS.POSITIVE_FRACTION = 0.25
_C.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.05
_C.MODEL.ROI_HEADS.NMS_THRESH_TEST = 0.5
_C.MODEL.ROI_HEADS.PROPOSAL_APPEND_GT = True

# ---------------------------------------------------------------------------- #
# Box Head
# ---------------------------------------------------------------------------- #
_C.MODEL.ROI_BOX_HEAD = CN()
# C4 models do not use the head name; FPN models use "FastRCNNConvFCHead".
_C.MODEL.ROI_BOX_HEAD.NAME = ""
_C.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE = "smooth_l1"
_C.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT = 1.0
_C.MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
_C.MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA = 0.0
_C.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 14
_C.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO = 0
# "ROIAlignV2", "ROIAlign" or "ROIPool" (the paper's Faster R-CNN used RoI pooling).
_C.MODEL.ROI_BOX_HEAD.POOLER_TYPE = "ROIAlignV2"
_C.MODEL.ROI_BOX_HEAD.NUM_FC = 0
_C.MODEL.ROI_BOX_HEAD.FC_DIM = 1024
_C.MODEL.ROI_BOX_HEAD.NUM_CONV = 0
_C.MODEL.ROI_BOX_HEAD.CONV_DIM = 256
_C.MODEL.ROI_BOX_HEAD.NORM = ""
_C.MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG = False
_C.MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES = False
_C.MODEL.ROI_BOX_HEAD.USE_FED_LOSS = False
_C.MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE = False
_C.MODEL.ROI_BOX_HEAD.FED_LOSS_FREQ_WEIGHT_POWER = 0.5
_C.MODEL.ROI_BOX_HEAD.FED_LOSS_NUM_CLASSES = 50

# ---------------------------------------------------------------------------- #
# ResNe[X]t options; they apply to both the backbone and the res5 box head of C4.
# ---------------------------------------------------------------------------- #
_C.MODEL.RESNETS = CN()
_C.MODEL.RESNETS.DEPTH = 50
# res4 for C4, res2..res5 for FPN.
_C.MODEL.RESNETS.OUT_FEATURES = ["res4"]
_C.MODEL.RESNETS.NUM_GROUPS = 1
# "FrozenBN", "GN", "SyncBN" or "BN".
_C.MODEL.RESNETS.NORM = "FrozenBN"
_C.MODEL.RESNETS.WIDTH_PER_GROUP = 64
# True for the original MSRA ResNet (paper); False for torchvision / Caffe2 models.
_C.MODEL.RESNETS.STRIDE_IN_1X1 = True
_C.MODEL.RESNETS.RES5_DILATION = 1
# Must be 64 for R18/R34.
_C.MODEL.RESNETS.RES2_OUT_CHANNELS = 256
_C.MODEL.RESNETS.STEM_OUT_CHANNELS = 64
_C.MODEL.RESNETS.DEFORM_ON_PER_STAGE = [False, False, False, False]
_C.MODEL.RESNETS.DEFORM_MODULATED = False
_C.MODEL.RESNETS.DEFORM_NUM_GROUPS = 1

# ---------------------------------------------------------------------------- #
# Solver
# ---------------------------------------------------------------------------- #
_C.SOLVER = CN()
# "WarmupMultiStepLR" or "WarmupCosineLR".
_C.SOLVER.LR_SCHEDULER_NAME = "WarmupMultiStepLR"
_C.SOLVER.MAX_ITER = 40000
_C.SOLVER.BASE_LR = 0.001
# Only used by WarmupCosineLR.
_C.SOLVER.BASE_LR_END = 0.0
_C.SOLVER.MOMENTUM = 0.9
_C.SOLVER.NESTEROV = False
_C.SOLVER.WEIGHT_DECAY = 0.0001
_C.SOLVER.WEIGHT_DECAY_NORM = 0.0
_C.SOLVER.GAMMA = 0.1
_C.SOLVER.STEPS = (30000,)
_C.SOLVER.NUM_DECAYS = 3
_C.SOLVER.WARMUP_FACTOR = 1.0 / 1000
_C.SOLVER.WARMUP_ITERS = 1000
_C.SOLVER.WARMUP_METHOD = "linear"
_C.SOLVER.RESCALE_INTERVAL = False
_C.SOLVER.CHECKPOINT_PERIOD = 5000
# Total images per iteration over all GPUs and machines.
_C.SOLVER.IMS_PER_BATCH = 16
# Non-zero: scale batch size and lr to the actual number of workers (DefaultTrainer.auto_scale).
_C.SOLVER.REFERENCE_WORLD_SIZE = 0
_C.SOLVER.BIAS_LR_FACTOR = 1.0
# None means "same as WEIGHT_DECAY".
_C.SOLVER.WEIGHT_DECAY_BIAS = None
_C.SOLVER.CLIP_GRADIENTS = CN({"ENABLED": False})
# "value" or "norm".
_C.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "value"
_C.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 1.0
_C.SOLVER.CLIP_GRADIENTS.NORM_TYPE = 2.0
_C.SOLVER.AMP = CN({"ENABLED": False})

# ---------------------------------------------------------------------------- #
# Specific test options
# ---------------------------------------------------------------------------- #
_C.TEST = CN()
_C.TEST.EXPECTED_RESULTS = []
# 0 disables evaluation during training.
_C.TEST.EVAL_PERIOD = 0
_C.TEST.KEYPOINT_OKS_SIGMAS = []
_C.TEST.DETECTIONS_PER_IMAGE = 100
_C.TEST.AUG = CN({"ENABLED": False})
_C.TEST.AUG.MIN_SIZES = (400, 500, 600, 700, 800, 900, 1000, 1100, 1200)
_C.TEST.AUG.MAX_SIZE = 4000
_C.TEST.AUG.FLIP = True
_C.TEST.PRECISE_BN = CN({"ENABLED": False})
_C.TEST.PRECISE_BN.NUM_ITER = 200

# ---------------------------------------------------------------------------- #
# Misc options
# ---------------------------------------------------------------------------- #
_C.OUTPUT_DIR = "./output"
# Negative: a random seed; positive: fixed (reproducible, not bit-exact on GPUs).
_C.SEED = -1
_C.CUDNN_BENCHMARK = False
# "", "highest", "high" or "medium" (torch.set_float32_matmul_precision).
_C.FLOAT32_PRECISION = ""
_C.VIS_PERIOD = 0
_C.GLOBAL = CN()
_C.GLOBAL.HACK = 1.0


# -----------------------------------------------------------------------------
# resdet's own keys.
# -----------------------------------------------------------------------------
def add_resdet_config(cfg: _FvcoreCfgNode) -> _FvcoreCfgNode:
    """Add resdet's keys to ``cfg`` (resdet's or Detectron2's config) without changing any other.

    Keys that already exist keep their value, so calling it twice, or on a config that already
    has them, is harmless.

    Args:
        cfg: an fvcore/Detectron2 CfgNode; must not be frozen.

    Returns:
        The same ``cfg``, for chaining.
    """
    node_cls = type(cfg)
    _add_node(cfg, "MODEL.RESDET", node_cls)
    # A network name of resdet.modeling.list_architectures(); "" means resnet{MODEL.RESNETS.DEPTH}.
    # One fact, one key: resdet.modeling.resolve_arch refuses a DEPTH set to another depth.
    _add(cfg, "MODEL.RESDET.ARCH", "resnet50")
    # "A", "B" or "C" (paper Sec. 3.3); "" = the arch's paper default (B ImageNet, A CIFAR).
    _add(cfg, "MODEL.RESDET.SHORTCUT", "")
    # Classes of the classification head (pretraining).
    _add(cfg, "MODEL.RESDET.NUM_CLASSES", 1000)
    # fc6/fc7 width of the VGG-16 box head (the paper's VGG-16 Faster R-CNN baseline).
    _add(cfg, "MODEL.RESDET.VGG_FC_DIM", 4096)

    # True: skip an unreadable image or annotation with a warning naming it; False: fail.
    _add(cfg, "DATALOADER.SKIP_BAD_SAMPLES", True)
    # False: a non-finite loss stops training with a message; True: skip the step and count it.
    _add(cfg, "SOLVER.SKIP_NONFINITE_LOSS", False)
    # Autocast dtype when SOLVER.AMP.ENABLED: "bfloat16" or "float16" (float16 adds a GradScaler).
    _add_node(cfg, "SOLVER.AMP", node_cls)
    _add(cfg, "SOLVER.AMP.DTYPE", "bfloat16")
    _add(cfg, "SOLVER.CHANNELS_LAST", False)
    # torch.compile the model.
    _add(cfg, "SOLVER.COMPILE", False)
    # Non-empty: also write VOC-server submission files (comp4_det_test_<class>.txt) here.
    _add(cfg, "TEST.VOC_SUBMISSION_DIR", "")
    # "auto" (Detectron2 when it imports), "detectron2" or "torchvision".
    _add(cfg, "ENGINE", "auto")
    # A user's own datasets by name, usable wherever a builtin name is (resdet.data.custom):
    # NAME: {FORMAT: coco, JSON_FILE: .., IMAGE_ROOT: ..} or
    # NAME: {FORMAT: voc, ROOT: .., SPLIT: .., CLASSES: [..], YEAR: 2012 (2007: 11-point AP)}.
    _add_node(cfg, "DATASETS", node_cls)
    _add(cfg, "DATASETS.CUSTOM", node_cls(new_allowed=True))

    _add_pretrain_config(cfg, node_cls)
    return cfg


def _add_pretrain_config(cfg: _FvcoreCfgNode, node_cls: type) -> None:
    """PRETRAIN: the classification recipe (paper Sec. 3.4 ImageNet, Sec. 4.2 CIFAR-10).

    Owned by the pretraining engineer, who may append keys here (this function only).
    """
    _add_node(cfg, "PRETRAIN", node_cls)
    # Scale augmentation: shorter side sampled in [256, 480] (Sec. 3.4).
    _add(cfg, "PRETRAIN.TRAIN_RESIZE_RANGE", [256, 480])
    _add(cfg, "PRETRAIN.CROP_SIZE", 224)
    # AlexNet's PCA colour (lighting) augmentation (Sec. 3.4), with this std.
    _add(cfg, "PRETRAIN.COLOR_AUG", True)
    _add(cfg, "PRETRAIN.COLOR_AUG_STD", 0.1)
    # "center" (224 crop of the 256-resized image), "10crop" (Table 3) or "multiscale"
    # (fully convolutional, averaged over TEST_SCALES; Table 4/5).
    _add(cfg, "PRETRAIN.TEST_MODE", "center")
    _add(cfg, "PRETRAIN.TEST_SCALES", [224, 256, 384, 480, 640])
    _add(cfg, "PRETRAIN.TEST_RESIZE", 256)
    # CIFAR: pad 4 pixels each side, random 32x32 crop (Sec. 4.2).
    _add(cfg, "PRETRAIN.PAD", 4)
    # 110-layer CIFAR trick (Sec. 4.2): lr WARMUP_LR until train error < WARMUP_UNTIL_ERROR
    # (about 400 iterations, at most WARMUP_MAX_ITERS), then SOLVER.BASE_LR. 0.0 disables it.
    _add(cfg, "PRETRAIN.WARMUP_LR", 0.0)
    _add(cfg, "PRETRAIN.WARMUP_UNTIL_ERROR", 0.8)
    _add(cfg, "PRETRAIN.WARMUP_MAX_ITERS", 400)
    # "step" (SOLVER.STEPS, SOLVER.GAMMA) or "plateau" (divide by 10 when the error plateaus,
    # Sec. 3.4; PLATEAU_PATIENCE evaluations without improvement).
    _add(cfg, "PRETRAIN.LR_POLICY", "step")
    _add(cfg, "PRETRAIN.PLATEAU_PATIENCE", 3)
    # Images held out of the training set for validation: 0 = none, 5000 = the 45k/5k CIFAR split.
    _add(cfg, "PRETRAIN.VAL_SPLIT", 0)
    _add(cfg, "PRETRAIN.LOG_PERIOD", 20)
    # Appended by the pretraining engineer.
    # Training augmentation: "scale" (ImageNet, Sec. 3.4: shorter side in TRAIN_RESIZE_RANGE,
    # random CROP_SIZE crop, flip) or "pad_crop" (CIFAR, Sec. 4.2: PAD, random crop, flip).
    _add(cfg, "PRETRAIN.AUGMENTATION", "scale")
    # "pixel": subtract the per-pixel mean image of the training set (Sec. 3.4 and 4.2, as
    # AlexNet); "channel": subtract per-channel means and divide by per-channel stds.
    _add(cfg, "PRETRAIN.MEAN", "pixel")
    # Training images averaged for the mean image (all of them when the set is smaller).
    _add(cfg, "PRETRAIN.MEAN_SAMPLES", 10000)
    # Normalisation layers of the classifier: "BN" (paper), "FrozenBN", "GN", "SyncBN".
    _add(cfg, "PRETRAIN.NORM", "BN")
    # The error the "plateau" policy watches: "val" (top-1 error at each TEST.EVAL_PERIOD) or
    # "train" (training error averaged over PLATEAU_WINDOW iterations).
    _add(cfg, "PRETRAIN.PLATEAU_METRIC", "val")
    _add(cfg, "PRETRAIN.PLATEAU_WINDOW", 5000)
    # Relative improvement below which an observation counts as "no improvement".
    _add(cfg, "PRETRAIN.PLATEAU_THRESHOLD", 0.01)
    # At most this many divisions by 10 (the paper went 0.1 -> 0.001).
    _add(cfg, "PRETRAIN.PLATEAU_MAX_DROPS", 3)
    # Evaluation batch size per process (10-crop and multi-scale multiply the work per image).
    _add(cfg, "PRETRAIN.TEST_BATCH_SIZE", 50)


def _add_node(cfg: _FvcoreCfgNode, full_key: str, node_cls: type) -> None:
    parent, name = _parent(cfg, full_key)
    if name not in parent:
        parent[name] = node_cls()


def _add(cfg: _FvcoreCfgNode, full_key: str, value: object) -> None:
    parent, name = _parent(cfg, full_key)
    if name not in parent:
        parent[name] = value


def _parent(cfg: _FvcoreCfgNode, full_key: str) -> tuple:
    *path, name = full_key.split(".")
    node = cfg
    for part in path:
        node = node[part]
    return node, name


def get_cfg() -> CfgNode:
    """A fresh, unfrozen copy of the default config: Detectron2's keys plus resdet's.

    Returns:
        A :class:`CfgNode` that the caller may change.
    """
    return add_resdet_config(_C.clone())
