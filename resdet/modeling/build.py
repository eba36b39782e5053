"""One table of architectures drives the builders, ``analyze_model`` and the tests."""

from __future__ import annotations

from typing import Dict, Optional, Sequence

from torch import nn

from resdet.errors import UserError
from resdet.modeling.layers import NORMS
from resdet.modeling.resnet import (
    IMAGENET_DEPTHS,
    IMAGENET_STAGES,
    SHORTCUTS,
    build_cifar_resnet,
    build_imagenet_resnet,
    imagenet_stage_args,
    make_stage,
)
from resdet.modeling.vgg import VGG


def _table() -> Dict[str, dict]:
    archs = {}
    for depth, (block, _) in IMAGENET_DEPTHS.items():
        for residual, prefix in ((True, "resnet"), (False, "plain")):
            archs[f"{prefix}{depth}"] = dict(family="resnet", depth=depth, block=block,
                                             residual=residual, stages=IMAGENET_STAGES)
    # CIFAR: the paper trains plain nets up to 110 layers and residual ones up to 1202 (Table 6).
    for depth in (20, 32, 44, 56, 110, 1202):
        archs[f"cifar_resnet{depth}"] = dict(family="cifar", depth=depth, block="basic",
                                             residual=True, stages=("res2", "res3", "res4"))
        if depth != 1202:
            archs[f"cifar_plain{depth}"] = dict(family="cifar", depth=depth, block="basic",
                                                residual=False, stages=("res2", "res3", "res4"))
    archs["vgg16"] = dict(family="vgg", depth=16, block=None, residual=False,
                          stages=("conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3"))
    return archs


ARCHITECTURES = _table()


def list_architectures() -> list:
    """Every network name that ``build_classifier`` and ``build_backbone`` accept."""
    return list(ARCHITECTURES)


def arch_info(name: str) -> dict:
    """Family ("resnet", "cifar", "vgg"), depth, block type, residual flag and stage names."""
    if name not in ARCHITECTURES:
        raise UserError(
            f"Unknown architecture {name!r}; valid names are: {', '.join(ARCHITECTURES)}."
        )
    return dict(ARCHITECTURES[name])


def _check_options(info: dict, shortcut: Optional[str], norm: Optional[str]) -> str:
    """The shortcut option to use; empty means the paper's default (Sec. 3.3, 4.2)."""
    if norm and norm not in NORMS:
        raise UserError(f"Unknown norm {norm!r}; use one of {', '.join(NORMS)} (or None).")
    if not shortcut:
        return "A" if info["family"] == "cifar" else "B"
    if shortcut not in SHORTCUTS:
        raise UserError(f"Unknown shortcut option {shortcut!r}; use one of A, B, C (Sec. 3.3).")
    return shortcut


def _build(name: str, *, num_classes: Optional[int], out_features: Optional[Sequence[str]],
           shortcut: Optional[str] = None, stride_in_1x1: bool = True,
           norm: Optional[str] = "default", freeze_at: int = 0, **extra) -> nn.Module:
    info = arch_info(name)
    if norm == "default":
        # VGG-16 has no BN (configuration D, as torchvision's vgg16); the ResNets have BN after
        # every conv (Sec. 3.4).
        norm = None if info["family"] == "vgg" else "BN"
    shortcut = _check_options(info, shortcut, norm)
    if extra:
        raise UserError(f"Unknown option(s) {', '.join(sorted(extra))} for {name!r}; valid "
                        "options are shortcut, stride_in_1x1, norm, freeze_at.")
    if info["family"] == "vgg":
        return VGG(num_classes=num_classes, out_features=out_features, norm=norm,
                   freeze_at=freeze_at)
    common = dict(residual=info["residual"], shortcut=shortcut, norm=norm, freeze_at=freeze_at,
                  num_classes=num_classes, out_features=out_features)
    if info["family"] == "cifar":
        return build_cifar_resnet(info["depth"], **common)
    return build_imagenet_resnet(info["depth"], stride_in_1x1=stride_in_1x1, **common)


def build_classifier(name: str, num_classes: int = 1000, **options) -> nn.Module:
    """A classification network whose forward returns logits.

    Args:
        name: one of :func:`list_architectures` (e.g. "resnet50", "cifar_plain20", "vgg16").
        num_classes: size of the final fc layer.
        **options: ``shortcut`` ("A" | "B" | "C"; default B for ImageNet nets, A for CIFAR),
            ``stride_in_1x1`` (default True, the paper's placement), ``norm`` ("BN", "FrozenBN",
            "GN", "SyncBN"; VGG-16 defaults to none), ``freeze_at`` (0 = train everything).

    Returns:
        The network; ``model.fc`` (``fc8`` for VGG-16) is its classifier.
    """
    return _build(name, num_classes=num_classes, out_features=None, **options)


def build_backbone(name: str, out_features: Sequence[str] = ("res4",), **options) -> nn.Module:
    """A feature extractor: forward gives ``{feature_name: tensor}`` for ``out_features``.

    ``model.output_shape()`` reports each feature's channels and stride. Stages deeper than the
    deepest requested feature are not built (so a C4 backbone has no res5). VGG-16's feature is
    ``conv5_3``; it is used when ``out_features`` names a ResNet stage.
    """
    if arch_info(name)["family"] == "vgg" and not any(f.startswith("conv") for f in out_features):
        out_features = ("conv5_3",)
    return _build(name, num_classes=None, out_features=out_features, **options)


def build_stage(name: str, stage: str = "res5", *, shortcut: Optional[str] = None,
                stride_in_1x1: bool = True, norm: Optional[str] = "BN") -> nn.Sequential:
    """The blocks of one ImageNet stage, exactly as the backbone ``name`` builds them.

    Used as the per-RoI head of the paper's C4 detector (res5, Sec. 4.3 and Appendix A), so plain
    nets and shortcut options A/C reach the head unchanged.
    """
    info = arch_info(name)
    if info["family"] != "resnet" or stage not in IMAGENET_STAGES:
        raise UserError(f"build_stage needs an ImageNet ResNet or plain net and one of "
                        f"{', '.join(IMAGENET_STAGES)}; got {name!r}, {stage!r}.")
    shortcut = _check_options(info, shortcut, norm)
    return make_stage(**imagenet_stage_args(info["depth"], stage), residual=info["residual"],
                      shortcut=shortcut, norm=norm, stride_in_1x1=stride_in_1x1)
