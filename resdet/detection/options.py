"""Config -> the detector's network: which layout, which networks, with which options, once.

Both engines build the network a config describes from :func:`network_options`: the Detectron2
adapter's registered builders (``build_resdet_*_backbone``, ``ResdetRes5ROIHeads``) and the
torchvision engine's :func:`resdet.tvdet.build_model`. The checks that decide whether a config
describes a network at all also live here, so one YAML gives one network on either engine, or the
same error on both.

Builder names are Detectron2's (``MODEL.BACKBONE.NAME``, ``MODEL.ROI_HEADS.NAME``,
``MODEL.ROI_BOX_HEAD.NAME``). With Detectron2's own names (``build_resnet_backbone``,
``build_resnet_fpn_backbone``, ``Res5ROIHeads``) the network is Detectron2's ResNet of
``MODEL.RESNETS.DEPTH`` with projection shortcuts where the shape changes (the paper's option B),
which resdet's ``resnet{DEPTH}`` equals; resdet's keys (``MODEL.RESDET.*``) are then not read, and
setting one is an error naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from resdet.config import get_cfg, lookup
from resdet.errors import UserError
from resdet.modeling import get_arch, list_architectures, resolve_arch

if TYPE_CHECKING:
    from fvcore.common.config import CfgNode

RESDET_C4 = "build_resdet_resnet_backbone"
RESDET_FPN = "build_resdet_resnet_fpn_backbone"
RESDET_VGG = "build_resdet_vgg_backbone"
D2_C4 = "build_resnet_backbone"
D2_FPN = "build_resnet_fpn_backbone"
RESDET_RES5_HEADS = "ResdetRes5ROIHeads"
D2_RES5_HEADS = "Res5ROIHeads"
RESDET_VGG_BOX_HEAD = "ResdetVGGBoxHead"

# MODEL.BACKBONE.NAME -> layout
LAYOUTS = {RESDET_C4: "C4", D2_C4: "C4", RESDET_FPN: "FPN", D2_FPN: "FPN", RESDET_VGG: "VGG16"}

# The MODEL.RESDET keys each builder reads (MODEL.RESDET.NUM_CLASSES is pretraining's).
_RESDET_KEYS_READ = {
    RESDET_C4: ("MODEL.RESDET.ARCH", "MODEL.RESDET.SHORTCUT"),
    RESDET_FPN: ("MODEL.RESDET.ARCH", "MODEL.RESDET.SHORTCUT"),
    RESDET_VGG: ("MODEL.RESDET.ARCH",),
    RESDET_RES5_HEADS: ("MODEL.RESDET.ARCH", "MODEL.RESDET.SHORTCUT"),
    RESDET_VGG_BOX_HEAD: ("MODEL.RESDET.VGG_FC_DIM",),
}

# Detectron2 ResNet keys that resdet's networks do not implement, with the value they must keep.
_FIXED_RESNET_KEYS = {
    "MODEL.RESNETS.NUM_GROUPS": 1,
    "MODEL.RESNETS.WIDTH_PER_GROUP": 64,
    "MODEL.RESNETS.RES5_DILATION": 1,
    "MODEL.RESNETS.STEM_OUT_CHANNELS": 64,
    "MODEL.RESNETS.DEFORM_ON_PER_STAGE": [False, False, False, False],
}


@dataclass(frozen=True)
class ResNetOptions:
    """One resdet ResNet (or plain net): the arguments of :func:`resdet.modeling.build_backbone`
    and :func:`resdet.modeling.build_stage` that the config decides.

    Attributes:
        arch: a resdet architecture name (``resnet50``, ``plain34``, ...).
        shortcut: ``"A"``, ``"B"``, ``"C"`` or None (the arch's paper default).
        stride_in_1x1: bottleneck stride in the 1x1 conv (MSRA, the paper) or the 3x3.
        norm: ``"BN"``, ``"FrozenBN"``, ``"GN"``, ``"SyncBN"`` or None (the arch's default).
    """

    arch: str
    shortcut: Optional[str]
    stride_in_1x1: Optional[bool]
    norm: Optional[str]

    def kwargs(self) -> Dict[str, Any]:
        """``shortcut``, ``stride_in_1x1`` and ``norm`` as keyword arguments (those set)."""
        out = dict(shortcut=self.shortcut, stride_in_1x1=self.stride_in_1x1, norm=self.norm)
        return {k: v for k, v in out.items() if v is not None}


@dataclass(frozen=True)
class NetworkOptions:
    """What a detection config says about its networks.

    Attributes:
        layout: ``"C4"`` (the paper's: res4 shared, res5 per RoI), ``"FPN"`` or ``"VGG16"``.
        backbone: the shared network's options (``arch`` ``"vgg16"`` for VGG16, with the
            other fields unused).
        res5: the C4 per-RoI head's options (None for other layouts).
        freeze_at: MODEL.BACKBONE.FREEZE_AT.
        out_features: the backbone's outputs (``("res4",)`` for C4, the FPN's inputs, ...).
        resdet_backbone: the backbone builder is resdet's (False: Detectron2's own ResNet).
        resdet_res5: the C4 head is resdet's ``ResdetRes5ROIHeads``.
    """

    layout: str
    backbone: ResNetOptions
    res5: Optional[ResNetOptions]
    freeze_at: int
    out_features: Tuple[str, ...]
    resdet_backbone: bool
    resdet_res5: bool


def unread_resdet_keys(cfg: CfgNode) -> List[Tuple[str, Any]]:
    """``(key, value)`` for each ``MODEL.RESDET`` key set away from its default that none of the
    config's builders reads (``MODEL.RESDET.NUM_CLASSES`` is pretraining's and never judged)."""
    read = set()
    for key in ("MODEL.BACKBONE.NAME", "MODEL.ROI_HEADS.NAME", "MODEL.ROI_BOX_HEAD.NAME"):
        read.update(_RESDET_KEYS_READ.get(lookup(cfg, key), ()))
    defaults = get_cfg()
    out = []
    for key in ("MODEL.RESDET.ARCH", "MODEL.RESDET.SHORTCUT", "MODEL.RESDET.VGG_FC_DIM"):
        value = lookup(cfg, key)
        if key not in read and value != lookup(defaults, key):
            out.append((key, value))
    return out


def check_resdet_keys_read(cfg: CfgNode) -> None:
    """Refuse ``MODEL.RESDET`` keys that the chosen builders would ignore (both engines).

    Raises:
        UserError: naming the first such key and the builders that were chosen.
    """
    unread = unread_resdet_keys(cfg)
    if not unread:
        return
    key, value = unread[0]
    also = f" (also {', '.join(k for k, _ in unread[1:])})" if len(unread) > 1 else ""
    raise UserError(
        f"Config key '{key}' = {value!r}{also} is not read by MODEL.BACKBONE.NAME "
        f"{cfg.MODEL.BACKBONE.NAME!r} / MODEL.ROI_HEADS.NAME {cfg.MODEL.ROI_HEADS.NAME!r} / "
        f"MODEL.ROI_BOX_HEAD.NAME {cfg.MODEL.ROI_BOX_HEAD.NAME!r} (Detectron2's own builders "
        f"read MODEL.RESNETS only); use resdet's builders ({RESDET_C4}, {RESDET_FPN} with "
        f"{RESDET_RES5_HEADS}) or remove the key."
    )


def _resnet_options(cfg: CfgNode, arch: str, shortcut: Optional[str]) -> ResNetOptions:
    """The options of a backbone made of residual (or plain) stages, asked of its spec."""
    if arch not in list_architectures():
        raise UserError(f"MODEL.RESDET.ARCH = {arch!r} is not a network; valid names are: "
                        f"{', '.join(list_architectures())}.")
    spec = get_arch(arch)
    if spec.block is None or "res2" not in spec.stage_names:
        raise UserError(
            f"MODEL.RESDET.ARCH = {arch!r} cannot be a detection backbone with "
            f"MODEL.BACKBONE.NAME = {cfg.MODEL.BACKBONE.NAME!r}: it has no residual stages "
            f"res2...; use resnet18..resnet152 or plain18..plain152 (or {RESDET_VGG} with vgg16)."
        )
    if arch == cfg.MODEL.RESDET.ARCH:  # resdet's builders: ARCH and DEPTH say one fact
        resolve_arch(cfg)
    # Detectron2 asserts RES2_OUT_CHANNELS = 64 for R18/R34; resdet's stages are fixed by Table 1.
    res2 = spec.stage_channels[0]
    if cfg.MODEL.RESNETS.RES2_OUT_CHANNELS != res2 and spec.depth in (18, 34, 50, 101, 152):
        raise UserError(
            f"MODEL.RESNETS.RES2_OUT_CHANNELS = {cfg.MODEL.RESNETS.RES2_OUT_CHANNELS} does not fit "
            f"{arch}; set it to {res2}."
        )
    # MODEL.RESNETS.STRIDE_IN_1X1 always has a value (a Detectron2 key): it goes to the nets that
    # take it, and is not an error for the others.
    return ResNetOptions(arch=arch, shortcut=shortcut or None,
                         stride_in_1x1=(bool(cfg.MODEL.RESNETS.STRIDE_IN_1X1)
                                        if spec.supports("stride_in_1x1") else None),
                         norm=cfg.MODEL.RESNETS.NORM or None)


def check_resdet_can_build(cfg: CfgNode) -> None:
    """Refuse Detectron2 ResNet keys that resdet's networks do not implement (ResNeXt groups,
    dilation, deformable convs, another stem width), for configs whose ResNet resdet builds.

    Raises:
        UserError: naming the key and the value to set.
    """
    for key, expected in _FIXED_RESNET_KEYS.items():
        value = lookup(cfg, key)
        if (list(value) if isinstance(value, (list, tuple)) else value) != expected:
            raise UserError(f"{key} = {value!r} is not supported by resdet's networks; set it to "
                            f"{expected!r} (or build Detectron2's own ResNet on the Detectron2 "
                            "engine).")


def network_options(cfg: CfgNode, *, heads: bool = True) -> NetworkOptions:
    """The networks ``cfg`` describes, after every check that both engines share.

    Args:
        cfg: a detection config (resdet's or Detectron2's tree with resdet's keys).
        heads: also check the RoI head names against the layout (False: the backbone only, for a
            Detectron2 meta-architecture without RoI heads, such as RetinaNet).

    Returns:
        The layout and the options of its networks.

    Raises:
        UserError: an unknown MODEL.BACKBONE.NAME, builder names that do not fit together, a
            MODEL.RESDET key no builder reads, or ResNet keys that disagree with the arch.
    """
    check_resdet_keys_read(cfg)
    name = cfg.MODEL.BACKBONE.NAME
    layout = LAYOUTS.get(name)
    if layout is None:
        raise UserError(f"MODEL.BACKBONE.NAME = {name!r} is not one resdet builds; use one of "
                        f"{', '.join(LAYOUTS)}.")
    roi_name = cfg.MODEL.ROI_HEADS.NAME
    box_name = cfg.MODEL.ROI_BOX_HEAD.NAME
    freeze_at = int(cfg.MODEL.BACKBONE.FREEZE_AT)
    if layout == "VGG16":
        arch = cfg.MODEL.RESDET.ARCH
        if arch not in list_architectures() or "conv5_3" not in get_arch(arch).stage_names:
            raise UserError(f"MODEL.BACKBONE.NAME = {name!r} needs MODEL.RESDET.ARCH = 'vgg16', "
                            f"not {arch!r}; set MODEL.RESDET.ARCH to vgg16.")
        if cfg.MODEL.RESNETS.NORM != get_cfg().MODEL.RESNETS.NORM:
            raise UserError("MODEL.RESNETS.NORM does not apply to VGG-16 (it has no norm layers, "
                            "as the paper's baseline); remove it from the config.")
        if heads and (roi_name != "StandardROIHeads" or box_name != RESDET_VGG_BOX_HEAD):
            raise UserError("The VGG-16 detector needs MODEL.ROI_HEADS.NAME 'StandardROIHeads' "
                            f"and MODEL.ROI_BOX_HEAD.NAME '{RESDET_VGG_BOX_HEAD}'.")
        vgg = ResNetOptions(arch=arch, shortcut=None, stride_in_1x1=True, norm=None)
        return NetworkOptions("VGG16", vgg, None, freeze_at, ("conv5_3",), True, False)

    resdet_backbone = name in (RESDET_C4, RESDET_FPN)
    if resdet_backbone:
        backbone = _resnet_options(cfg, cfg.MODEL.RESDET.ARCH, cfg.MODEL.RESDET.SHORTCUT)
    else:
        backbone = _resnet_options(cfg, f"resnet{cfg.MODEL.RESNETS.DEPTH}", None)
    out_features = tuple(cfg.MODEL.RESNETS.OUT_FEATURES)
    if layout == "C4" and not heads:
        return NetworkOptions("C4", backbone, None, freeze_at, out_features, resdet_backbone,
                              False)
    if layout == "C4":
        if roi_name not in (RESDET_RES5_HEADS, D2_RES5_HEADS):
            raise UserError(f"MODEL.ROI_HEADS.NAME = {roi_name!r} does not fit the C4 backbone; "
                            f"use '{RESDET_RES5_HEADS}'.")
        resdet_res5 = roi_name == RESDET_RES5_HEADS
        if resdet_res5:
            res5 = _resnet_options(cfg, cfg.MODEL.RESDET.ARCH, cfg.MODEL.RESDET.SHORTCUT)
        else:
            res5 = _resnet_options(cfg, f"resnet{cfg.MODEL.RESNETS.DEPTH}", None)
        return NetworkOptions("C4", backbone, res5, freeze_at, out_features, resdet_backbone,
                              resdet_res5)
    if heads and (roi_name != "StandardROIHeads" or box_name != "FastRCNNConvFCHead"):
        raise UserError("The FPN detector needs MODEL.ROI_HEADS.NAME 'StandardROIHeads' and "
                        "MODEL.ROI_BOX_HEAD.NAME 'FastRCNNConvFCHead'.")
    missing = [f for f in cfg.MODEL.FPN.IN_FEATURES if f not in out_features]
    if missing:
        raise UserError(
            f"MODEL.FPN.IN_FEATURES names {', '.join(missing)}, which MODEL.RESNETS.OUT_FEATURES "
            f"({', '.join(out_features)}) does not produce; add them there."
        )
    return NetworkOptions("FPN", backbone, None, freeze_at, out_features, resdet_backbone, False)
