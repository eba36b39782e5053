"""Build a network by name: the spec of :mod:`resdet.modeling.arch` picks the registered builder.

Every option is checked here once, for every family: an option the network does not take, a
shortcut outside ``SHORTCUTS`` or a norm outside ``NORMS`` is a :class:`~resdet.errors.UserError`
naming it (``resdet.config.choices`` holds the valid values, shared with the config and tools).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

from fvcore.common.config import CfgNode
from torch import nn

# resnet and vgg register their families and names on import; build.py imports them so that
# the table is full whenever a builder runs.
import resdet.modeling.resnet as _resnet
import resdet.modeling.vgg  # noqa: F401
from resdet.config.choices import NORMS, SHORTCUTS
from resdet.errors import UserError
from resdet.modeling.arch import ARCHITECTURES, FAMILIES, ArchSpec, get_arch

# Detectron2's default of MODEL.RESNETS.DEPTH; a config that leaves it there has not set it.
DEFAULT_DEPTH = 50
_BLOCK_NAMES = {_resnet.BasicBlock: "basic", _resnet.BottleneckBlock: "bottleneck"}


def arch_info(name: str) -> Dict[str, Any]:
    """A dict view of the spec: family, depth, block ("basic" | "bottleneck" | None), residual,
    stages. Prefer :func:`resdet.modeling.get_arch`, whose spec also carries the behaviour.

    Raises:
        UserError: unknown ``name`` (listing the valid names).
    """
    spec = get_arch(name)
    block = None if spec.block is None else _BLOCK_NAMES.get(spec.block, spec.block.__name__)
    return dict(family=spec.family, depth=spec.depth, block=block, residual=spec.residual,
                stages=spec.stage_names)


def resolve_options(spec: ArchSpec, options: Dict[str, Any]) -> Dict[str, Any]:
    """The options ``spec``'s builder gets: defaults filled in, every value checked.

    ``shortcut`` None or "" means the spec's paper default (B for ImageNet nets, A for CIFAR;
    Sec. 3.3, 4.2). ``norm`` absent means the spec's default (BN after every conv, Sec. 3.4; none
    for VGG-16); None or "" means no norm layer. An option the network does not take is accepted
    only with the value None (it then asks for nothing).

    Args:
        spec: the network.
        options: keyword options as a caller gave them.

    Returns:
        ``{option: value}`` with ``shortcut`` and ``norm`` always present when the spec takes them.

    Raises:
        UserError: an option the network does not take, or a value outside its valid list.
    """
    unknown = sorted(k for k, v in options.items() if k not in spec.options and v is not None)
    if unknown:
        raise UserError(f"Unknown option(s) for {spec.name!r}: {', '.join(unknown)}; it takes "
                        f"{', '.join(spec.options)}.")
    # None asks for the default; for norm it means "no norm layer".
    resolved = {k: v for k, v in options.items()
                if k in spec.options and (v is not None or k == "norm")}
    if spec.supports("norm"):
        norm = resolved.get("norm", spec.default_norm)
        if norm and norm not in NORMS:
            raise UserError(f"Unknown norm {norm!r}; use one of {', '.join(NORMS)} (or None).")
        resolved["norm"] = norm or None
    if spec.supports("shortcut"):
        shortcut = resolved.get("shortcut") or spec.default_shortcut
        if shortcut not in SHORTCUTS:
            raise UserError(f"Unknown shortcut option {shortcut!r}; use one of "
                            f"{', '.join(SHORTCUTS)} (Sec. 3.3).")
        resolved["shortcut"] = shortcut
    return resolved


def _build(name: str, *, num_classes: Optional[int], out_features: Optional[Sequence[str]],
           **options) -> nn.Module:
    spec = get_arch(name)
    return FAMILIES[spec.family](spec, num_classes=num_classes, out_features=out_features,
                                 **resolve_options(spec, options))


def build_classifier(name: str, num_classes: Optional[int] = None, **options) -> nn.Module:
    """A classification network whose forward maps (N, 3, H, W) images to (N, num_classes) logits.

    Args:
        name: one of :func:`list_architectures` (e.g. "resnet50", "cifar_plain20", "vgg16").
        num_classes: size of the final fc layer; None: the spec's (1000 ImageNet, 10 CIFAR).
        **options: those the spec lists in ``options``: ``shortcut`` ("A" | "B" | "C"; default
            B for ImageNet nets, A for CIFAR, Sec. 3.3), ``stride_in_1x1`` (ImageNet nets;
            default True, the paper's placement), ``norm`` (one of ``NORMS`` or None; VGG-16
            defaults to none), ``freeze_at`` (0 = train everything).

    Returns:
        The network; ``model.fc`` (``fc8`` for VGG-16) is its classifier.

    Raises:
        UserError: unknown name, an option the network does not take, or a bad option value.
    """
    spec = get_arch(name)
    if num_classes is None:
        num_classes = spec.num_classes
    return _build(name, num_classes=num_classes, out_features=None, **options)


def default_out_features(name: str) -> tuple:
    """The deepest feature of stride at most 16 (res4 for ImageNet ResNets, conv5_3 for VGG-16):
    the paper's shared detection layers (Sec. 4.3); the last stage of a CIFAR net.

    Raises:
        UserError: unknown name.
    """
    shapes = get_arch(name).stage_shapes()
    return tuple(([n for n, s in shapes.items() if n != "stem" and s.stride <= 16]
                  or list(shapes))[-1:])


def build_backbone(name: str, out_features: Optional[Sequence[str]] = None,
                   **options) -> nn.Module:
    """A feature extractor: forward maps (N, 3, H, W) to ``{feature_name: (N, C, H/s, W/s)}``.

    ``model.output_shape()`` reports each feature's channels C and stride s (pixels). Stages
    deeper than the deepest requested feature are not built (so a C4 backbone has no res5).

    Args:
        name: a network name.
        out_features: features to return (``stem``, ``res2``..``res5``; VGG ``conv1_2``..
            ``conv5_3``); default :func:`default_out_features` (res4 / conv5_3).
        **options: as :func:`build_classifier`.

    Raises:
        UserError: unknown name, option or feature.
    """
    if out_features is None:
        out_features = default_out_features(name)
    return _build(name, num_classes=None, out_features=tuple(out_features), **options)


def build_stage(name: str, stage: str = "res5", *, shortcut: Optional[str] = None,
                stride_in_1x1: Optional[bool] = None, norm: Optional[str] = "BN"
                ) -> nn.Sequential:
    """The blocks of one stage, exactly as the network ``name`` builds them.

    Used as the per-RoI head of the paper's C4 detector (res5, Sec. 4.3 and Appendix A), so plain
    nets and shortcut options A/C reach the head unchanged.

    Args:
        name: a network made of blocks (not VGG-16).
        stage: one of the spec's ``stage_names``.
        shortcut: "A" | "B" | "C"; None: the spec's default.
        stride_in_1x1: where the stride goes in a bottleneck block; None: the paper's (True).
        norm: a norm name (default "BN"), or None.

    Returns:
        The stage: (N, C_in, H, W) -> (N, C_out, H / stride, W / stride).

    Raises:
        UserError: a network without blocks, a stage it does not have, or a bad option.
    """
    spec = get_arch(name)
    if spec.block is None or stage not in spec.stage_names:
        with_blocks = [n for n, s in ARCHITECTURES.items() if s.block is not None]
        raise UserError(f"build_stage needs a network made of blocks ({with_blocks[0]}.."
                        f"{with_blocks[-1]}) and one of its stages; got {name!r}, {stage!r}.")
    options = resolve_options(spec, dict(shortcut=shortcut, stride_in_1x1=stride_in_1x1,
                                         norm=norm))
    options.pop("freeze_at", None)
    return _resnet.build_resnet_stage(spec, stage, **options)


def resolve_arch(cfg: CfgNode) -> str:
    """The network name a config asks for: ``MODEL.RESDET.ARCH``, or ``resnet{DEPTH}`` if empty.

    ``MODEL.RESDET.ARCH`` and ``MODEL.RESNETS.DEPTH`` say one thing; either may say it. DEPTH
    left at Detectron2's default (50) follows ARCH; a DEPTH set to anything else must equal the
    named network's depth. Both engines and pretraining call this, once.

    Args:
        cfg: a resdet or Detectron2 config with resdet's keys.

    Returns:
        A name of :func:`list_architectures`.

    Raises:
        UserError: naming both keys when they disagree, or the key whose value names no network.
    """
    arch = cfg.MODEL.RESDET.ARCH
    depth = cfg.MODEL.RESNETS.DEPTH
    if not arch:
        name = f"resnet{depth}"
        if name not in ARCHITECTURES:
            depths = [str(s.depth) for n, s in ARCHITECTURES.items() if n == f"resnet{s.depth}"]
            raise UserError(f"MODEL.RESNETS.DEPTH = {depth} names no ResNet (MODEL.RESDET.ARCH is "
                            f"empty, so it follows DEPTH); use one of {', '.join(depths)}, or set "
                            "MODEL.RESDET.ARCH.")
        return name
    if arch not in ARCHITECTURES:
        raise UserError(f"MODEL.RESDET.ARCH = {arch!r} is not a network; valid names are: "
                        f"{', '.join(ARCHITECTURES)}.")
    spec = ARCHITECTURES[arch]
    if depth != DEFAULT_DEPTH and depth != spec.depth:
        raise UserError(f"MODEL.RESDET.ARCH = {arch!r} has {spec.depth} layers but "
                        f"MODEL.RESNETS.DEPTH = {depth}; set only one of them (MODEL.RESNETS.DEPTH "
                        f"to {spec.depth}, or MODEL.RESDET.ARCH to '' to follow DEPTH).")
    return arch
