"""Per-RoI heads: the paper's res5 head (C4) and Faster R-CNN's VGG-16 fc6/fc7 head."""

from __future__ import annotations

from typing import TYPE_CHECKING, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import ShapeSpec as D2ShapeSpec
from detectron2.modeling.roi_heads import ROI_BOX_HEAD_REGISTRY, ROI_HEADS_REGISTRY, Res5ROIHeads
from torch import nn

from resdet.d2.backbone import use_detectron2_frozen_bn
from resdet.detection.options import check_resdet_can_build, network_options
from resdet.modeling import build_stage

if TYPE_CHECKING:
    from fvcore.common.config import CfgNode


@ROI_HEADS_REGISTRY.register()
class ResdetRes5ROIHeads(Res5ROIHeads):
    """Detectron2's C4 RoI heads with res5 built by resdet from the backbone's own block type.

    The paper computes each RoI's feature with conv5_x and global average pooling (Sec. 4.3,
    Appendix A). Building res5 with :func:`resdet.modeling.build_stage` from MODEL.RESDET.ARCH and
    SHORTCUT means plain nets, BasicBlock nets (R18/R34) and shortcut options A/C reach the head,
    where Detectron2's own head is always a residual bottleneck with option B. State-dict keys are
    ``roi_heads.res5.0.conv1.weight``..., the same as Detectron2's.
    """

    @classmethod
    def _build_res5_block(cls, cfg: CfgNode) -> Tuple[nn.Sequential, int]:
        res5_options = network_options(cfg).res5
        check_resdet_can_build(cfg)
        res5 = use_detectron2_frozen_bn(build_stage(res5_options.arch, "res5",
                                                    **res5_options.kwargs()))
        return res5, res5[-1].out_channels


@ROI_BOX_HEAD_REGISTRY.register()
class ResdetVGGBoxHead(nn.Module):
    """VGG-16's fc6 and fc7 (with ReLU and dropout 0.5) as the per-RoI head of Faster R-CNN.

    Parameter names ``fc6``/``fc7`` match resdet's VGG-16 classifier, so ImageNet weights load by
    suffix (``roi_heads.box_head.fc6.weight`` <- ``fc6.weight``). Faster R-CNN fine-tunes them from
    the ImageNet model with the RoI pool output (512 x 7 x 7) in place of pool5.
    """

    @configurable
    def __init__(self, input_shape: D2ShapeSpec, *, fc_dim: int = 4096, dropout: float = 0.5):
        """
        Args:
            input_shape: shape of the pooled RoI features (channels, height, width).
            fc_dim: width of fc6 and fc7 (4096 in VGG-16).
            dropout: dropout probability after fc6 and fc7 in training (VGG-16's 0.5).
        """
        super().__init__()
        in_dim = input_shape.channels * (input_shape.height or 1) * (input_shape.width or 1)
        self.fc6 = nn.Linear(in_dim, fc_dim)
        self.fc7 = nn.Linear(fc_dim, fc_dim)
        self.dropout = dropout
        self._fc_dim = fc_dim
        for layer in (self.fc6, self.fc7):
            # VGG-16's own initialisation (as resdet.modeling.VGG); ImageNet weights replace it.
            nn.init.normal_(layer.weight, 0, 0.01)
            nn.init.zeros_(layer.bias)

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: D2ShapeSpec) -> dict:
        """The head's arguments from ``cfg`` (``MODEL.RESDET.VGG_FC_DIM``)."""
        return {"input_shape": input_shape, "fc_dim": cfg.MODEL.RESDET.VGG_FC_DIM}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[R, C, H, W] pooled RoI features (7 x 7 for VGG-16) -> [R, fc_dim] (fc6, fc7, ReLU,
        dropout in training).
        """
        x = torch.flatten(x, 1)
        x = F.dropout(F.relu(self.fc6(x)), self.dropout, self.training)
        return F.dropout(F.relu(self.fc7(x)), self.dropout, self.training)

    @property
    def output_shape(self) -> D2ShapeSpec:
        """ShapeSpec with ``channels`` = fc_dim (the width of fc7's output)."""
        return D2ShapeSpec(channels=self._fc_dim)
