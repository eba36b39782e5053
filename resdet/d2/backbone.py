"""resdet's networks as Detectron2 backbones: C4 (up to res4), FPN, and VGG-16 (conv5_3).

The builders read the config; the networks themselves come from :mod:`resdet.modeling` and never
see it (STYLE.md). A resdet network already uses Detectron2's state-dict names (``stem.conv1.*``,
``res2.0.conv1.norm.*``), and :class:`ResdetBackbone` keeps them: it adopts the network's
submodules instead of nesting the network, so ``backbone.res2.0.conv1.weight`` is the same key in
Detectron2's own ResNet and in resdet's, and checkpoints move between the two unchanged.
"""

from __future__ import annotations

import math

from typing import TYPE_CHECKING, Dict

import torch
from detectron2.layers import FrozenBatchNorm2d as D2FrozenBatchNorm2d
from detectron2.layers import ShapeSpec as D2ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool
from torch import nn

from resdet.detection.options import check_resdet_can_build, network_options
from resdet.errors import UserError
from resdet.modeling import FrozenBatchNorm2d, build_backbone

if TYPE_CHECKING:
    from fvcore.common.config import CfgNode


def use_detectron2_frozen_bn(module: nn.Module) -> nn.Module:
    """Replace resdet's FrozenBatchNorm2d layers in ``module`` by Detectron2's, in place.

    Both hold the same four buffers under the same names, but Detectron2's runs one fused
    ``F.batch_norm`` when no gradient is needed, which rounds differently (and runs faster) than
    resdet's scale-and-shift. Inside Detectron2, resdet networks use Detectron2's layer so that
    they give bit-identical outputs to Detectron2's own ResNet.
    """
    for name, child in module.named_children():
        if isinstance(child, FrozenBatchNorm2d):
            frozen = D2FrozenBatchNorm2d(child.num_features, eps=child.eps)
            for buf in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, buf).copy_(getattr(child, buf))
            module.add_module(name, frozen.to(child.weight.device))
        else:
            use_detectron2_frozen_bn(child)
    return module


class ResdetBackbone(Backbone):
    """A Detectron2 :class:`Backbone` that runs a resdet network (ResNet, plain net or VGG-16).

    Args:
        net: a network from :func:`resdet.modeling.build_backbone`; its forward returns
            ``{name: feature}`` and its ``output_shape()`` gives each feature's channels and stride.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        # Adopt the submodules so state-dict keys carry no extra prefix (see the module docstring);
        # the network object itself is kept outside the module tree and runs the forward.
        use_detectron2_frozen_bn(net)
        for name, child in net.named_children():
            self.add_module(name, child)
        if any(True for _ in net.parameters(recurse=False)) or any(
            True for _ in net.buffers(recurse=False)
        ):
            raise TypeError("ResdetBackbone needs a network whose tensors live in submodules.")
        self.__dict__["_net"] = net
        self._out_features = list(net.out_features)
        shapes = net.output_shape()
        self._out_feature_channels = {k: s.channels for k, s in shapes.items()}
        self._out_feature_strides = {k: s.stride for k, s in shapes.items()}

    @property
    def net(self) -> nn.Module:
        """The wrapped resdet network (shares every parameter with this backbone)."""
        return self._net

    def train(self, mode: bool = True) -> "ResdetBackbone":
        """Set train/eval mode on this module and on the wrapped resdet network."""
        super().train(mode)
        self._net.training = mode
        return self

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """[N, C, H, W] images -> {feature name: feature map}.

        Raises:
            ValueError: ``x`` is not 4-D.
        """
        if x.dim() != 4:
            raise ValueError(f"ResdetBackbone takes an (N, C, H, W) tensor; got shape {x.shape}.")
        return self._net(x)

    def output_shape(self) -> Dict[str, D2ShapeSpec]:
        """{feature name: ShapeSpec(channels, stride in pixels)} of the returned features."""
        return {
            name: D2ShapeSpec(
                channels=self._out_feature_channels[name], stride=self._out_feature_strides[name]
            )
            for name in self._out_features
        }


def _check_input(input_shape: D2ShapeSpec) -> None:
    if input_shape.channels != 3:
        raise UserError(
            f"resdet backbones take 3-channel images; MODEL.PIXEL_MEAN has {input_shape.channels} "
            "values, give it 3."
        )


@BACKBONE_REGISTRY.register()
def build_resdet_resnet_backbone(cfg: CfgNode, input_shape: D2ShapeSpec) -> ResdetBackbone:
    """The paper's C4 backbone (conv1..res4 shared, stride 16; Sec. 4.3 and Appendix A).

    Reads MODEL.RESDET.{ARCH,SHORTCUT}, MODEL.RESNETS.{DEPTH,NORM,STRIDE_IN_1X1,OUT_FEATURES} and
    MODEL.BACKBONE.FREEZE_AT. With OUT_FEATURES up to res5 it is also the FPN bottom-up.
    """
    _check_input(input_shape)
    options = network_options(cfg, heads=False)
    check_resdet_can_build(cfg)
    net = build_backbone(options.backbone.arch, out_features=options.out_features,
                         freeze_at=options.freeze_at, **options.backbone.kwargs())
    return ResdetBackbone(net)


@BACKBONE_REGISTRY.register()
def build_resdet_resnet_fpn_backbone(cfg: CfgNode, input_shape: D2ShapeSpec) -> FPN:
    """Detectron2's FPN (with a max-pooled P6) over resdet's ResNet bottom-up (the modern setting).

    The bottom-up keys are ``backbone.bottom_up.res2...``, the same as Detectron2's R-FPN models.
    """
    bottom_up = build_resdet_resnet_backbone(cfg, input_shape)
    top_block = LastLevelMaxPool()
    # The extra level pools the deepest FPN output: p5 for res2..res5, p4 for a net whose last
    # stage is res4 (FPN names a level p<log2(stride)>).
    deepest = bottom_up.output_shape()[cfg.MODEL.FPN.IN_FEATURES[-1]].stride
    top_block.in_feature = f"p{int(math.log2(deepest))}"
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=top_block,
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )


@BACKBONE_REGISTRY.register()
def build_resdet_vgg_backbone(cfg: CfgNode, input_shape: D2ShapeSpec) -> ResdetBackbone:
    """VGG-16 conv1_1..conv5_3 (stride 16, 512 channels), Faster R-CNN's shared layers.

    MODEL.BACKBONE.FREEZE_AT counts conv blocks here: 2 keeps conv1_x and conv2_x fixed, as the
    Faster R-CNN VGG-16 models did. MODEL.RESDET.ARCH must be "vgg16".
    """
    _check_input(input_shape)
    options = network_options(cfg, heads=False)
    net = build_backbone(options.backbone.arch, out_features=options.out_features,
                         freeze_at=options.freeze_at)
    return ResdetBackbone(net)
