"""torchvision's Faster R-CNN with Detectron2's conventions, so one config means the same on both.

The parts are torchvision's own (``GeneralizedRCNNTransform``, ``RegionProposalNetwork``,
``RoIHeads``, ``FeaturePyramidNetwork``, ``TwoMLPHead``); the subclasses below change only what
Detectron2 does differently and a Detectron2 config sets: pixel mean/std in 0-255 units, test-time
resizing, anchor shapes, the smooth-L1 beta of both losses, the RoI pooler type and the loss names.
Modules take explicit arguments; :mod:`resdet.tvdet.build` reads the config.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import roi_align, roi_pool
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

from resdet.detection.mapper import shortest_edge_size  # noqa: F401  (also re-exported)

# Detectron2's loss names, so metrics.json reads the same on both engines.
LOSS_NAMES = {
    "loss_objectness": "loss_rpn_cls",
    "loss_rpn_box_reg": "loss_rpn_loc",
    "loss_classifier": "loss_cls",
    "loss_box_reg": "loss_box_reg",
}


class ResdetRCNNTransform(GeneralizedRCNNTransform):
    """Normalisation and resizing as Detectron2 does them.

    Images are float tensors in 0-255, channels in the config's ``INPUT.FORMAT`` order, and are
    normalised with ``MODEL.PIXEL_MEAN``/``PIXEL_STD`` (0-255 units), so torchvision's own 0-1
    mean/std are identity here. Training images arrive already resized by the data loader (as
    Detectron2's ``ResizeShortestEdge`` in the loader workers); at test time the model resizes
    to ``min_size_test``/``max_size_test`` itself and maps boxes back to the input size.

    A uint8 test image is resized before normalisation exactly as the data loaders resize
    (``cv2.resize``, bilinear, on the uint8 pixels), which is where the Detectron2 engine's test
    loader resizes: the same weights then see the same pixels on both engines. Float inputs are
    resized with ``F.interpolate`` (bilinear) after normalisation.
    """

    def __init__(self, pixel_mean: Sequence[float], pixel_std: Sequence[float],
                 min_size_test: int, max_size_test: int, size_divisible: int):
        super().__init__(min_size_test, max_size_test, image_mean=[0.0] * len(pixel_mean),
                         image_std=[1.0] * len(pixel_std), size_divisible=max(size_divisible, 1))
        self.min_size_test = min_size_test
        self.max_size_test = max_size_test
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)

    def normalize(self, image: Tensor) -> Tensor:
        """A [C, H, W] image -> float, mean subtracted, divided by std (a uint8 test image is
        resized first, as the test loader resizes).
        """
        # torchvision's forward calls normalize, then resize, image by image.
        self._resized_uint8 = False
        if image.dtype == torch.uint8:
            if not self.training and self.min_size_test:
                image = self._resize_uint8(image)
                self._resized_uint8 = True
            image = image.float()
        return (image - self.pixel_mean) / self.pixel_std

    def _resize_uint8(self, image: Tensor) -> Tensor:
        import cv2

        h, w = image.shape[-2:]
        new_h, new_w = shortest_edge_size(h, w, self.min_size_test, self.max_size_test)
        if (new_h, new_w) == (h, w):
            return image
        hwc = image.permute(1, 2, 0).cpu().numpy()
        resized = cv2.resize(hwc, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        if resized.ndim == 2:  # cv2 drops a single channel
            resized = resized[:, :, None]
        return torch.from_numpy(resized).permute(2, 0, 1).to(image.device)

    def resize(self, image: Tensor, target: Optional[Dict[str, Tensor]] = None):
        """At test time, resize the shortest edge to ``min_size_test`` (longest at most
        ``max_size_test``, pixels); training images and targets pass unchanged.
        """
        if self.training or self.min_size_test == 0 or getattr(self, "_resized_uint8", False):
            return image, target
        h, w = image.shape[-2:]
        new_h, new_w = shortest_edge_size(h, w, self.min_size_test, self.max_size_test)
        if (new_h, new_w) != (h, w):
            image = F.interpolate(image[None], size=(new_h, new_w), mode="bilinear",
                                  align_corners=False)[0]
        return image, target


class ResdetAnchorGenerator(AnchorGenerator):
    """Detectron2's ``DefaultAnchorGenerator`` cell anchors: size-major order, w*h = size**2,
    h/w = ratio, not rounded (torchvision rounds them), offset 0."""

    def generate_anchors(self, scales, aspect_ratios, dtype=torch.float32,
                         device=None) -> Tensor:
        """[len(scales) * len(aspect_ratios), 4] XYXY anchors centred on 0 (pixels)."""
        anchors = []
        for size in scales:
            area = float(size) ** 2
            for ratio in aspect_ratios:
                w = math.sqrt(area / float(ratio))
                h = float(ratio) * w
                anchors.append([-w / 2.0, -h / 2.0, w / 2.0, h / 2.0])
        return torch.tensor(anchors, dtype=dtype, device=device)


class ResdetRPN(RegionProposalNetwork):
    """torchvision's RPN reading only ``in_features`` and with Detectron2's smooth-L1 beta
    (``MODEL.RPN.SMOOTH_L1_BETA``; 0 = L1, Detectron2's default; torchvision fixes 1/9)."""

    def __init__(self, *args, in_features: Sequence[str], smooth_l1_beta: float,
                 loss_weight: float, bbox_reg_loss_weight: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.in_features = list(in_features)
        self.smooth_l1_beta = smooth_l1_beta
        self.loss_weight = loss_weight
        self.bbox_reg_loss_weight = bbox_reg_loss_weight

    def forward(self, images, features, targets=None):
        """torchvision's RPN on the ``in_features`` maps only: (proposals, losses)."""
        features = OrderedDict((name, features[name]) for name in self.in_features)
        return super().forward(images, features, targets)

    def compute_loss(self, objectness, pred_bbox_deltas, labels, regression_targets):
        """(objectness loss, box loss) over the sampled anchors: binary cross-entropy and
        smooth-L1 (``smooth_l1_beta``), both divided by the number of sampled anchors and scaled
        by ``loss_weight`` (the box loss also by ``bbox_reg_loss_weight``).
        """
        sampled_pos, sampled_neg = self.fg_bg_sampler(labels)
        sampled_pos = torch.where(torch.cat(sampled_pos, dim=0))[0]
        sampled_neg = torch.where(torch.cat(sampled_neg, dim=0))[0]
        sampled = torch.cat([sampled_pos, sampled_neg], dim=0)
        labels = torch.cat(labels, dim=0)
        regression_targets = torch.cat(regression_targets, dim=0)
        normalizer = max(sampled.numel(), 1)
        box_loss = F.smooth_l1_loss(pred_bbox_deltas[sampled_pos].float(),
                                    regression_targets[sampled_pos], beta=self.smooth_l1_beta,
                                    reduction="sum") / normalizer
        objectness_loss = F.binary_cross_entropy_with_logits(
            objectness.flatten()[sampled].float(), labels[sampled], reduction="sum") / normalizer
        return (objectness_loss * self.loss_weight,
                box_loss * self.loss_weight * self.bbox_reg_loss_weight)


class RoIPooler(nn.Module):
    """RoI pooling over one feature map (C4, VGG) or several (FPN), as Detectron2's ``ROIPooler``.

    ``pooler_type``: "ROIPool" (the paper's Faster R-CNN), "ROIAlign" or "ROIAlignV2" (RoIAlign
    with the half-pixel offset, ``aligned=True``). With several maps each box goes to level
    ``floor(4 + log2(sqrt(area) / 224))`` (FPN paper, Eq. 1), clamped to the levels present.
    torchvision's ``MultiScaleRoIAlign`` is not used because it always has ``aligned=False``.
    """

    def __init__(self, in_features: Sequence[str], strides: Sequence[int], output_size: int,
                 sampling_ratio: int, pooler_type: str):
        super().__init__()
        self.in_features = list(in_features)
        self.scales = [1.0 / s for s in strides]
        self.output_size = (output_size, output_size)
        self.sampling_ratio = sampling_ratio
        self.pooler_type = pooler_type
        levels = [int(round(math.log2(s))) for s in strides]
        self.min_level, self.max_level = min(levels), max(levels)

    def _pool(self, x: Tensor, rois: Tensor, scale: float) -> Tensor:
        if self.pooler_type == "ROIPool":
            return roi_pool(x, rois, self.output_size, scale)
        return roi_align(x, rois, self.output_size, scale, self.sampling_ratio,
                         aligned=self.pooler_type == "ROIAlignV2")

    def forward(self, features: Dict[str, Tensor], boxes: List[Tensor],
                image_shapes: Optional[list] = None) -> Tensor:
        """{name: [N, C, H, W]} features and per-image [R_i, 4] boxes (pixels) ->
        [sum R_i, C, S, S] pooled features.
        """
        rois = torch.cat([torch.cat([torch.full_like(b[:, :1], i), b], dim=1)
                          for i, b in enumerate(boxes)], dim=0)
        maps = [features[name] for name in self.in_features]
        if len(maps) == 1:
            return self._pool(maps[0], rois.to(maps[0].dtype), self.scales[0])
        sizes = torch.sqrt((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2]))
        levels = torch.floor(4 + torch.log2(sizes / 224 + 1e-8))
        levels = levels.clamp(self.min_level, self.max_level).to(torch.int64) - self.min_level
        out = maps[0].new_zeros((rois.shape[0], maps[0].shape[1]) + self.output_size)
        for level, (x, scale) in enumerate(zip(maps, self.scales)):
            idx = torch.where(levels == level)[0]
            out[idx] = self._pool(x, rois[idx].to(x.dtype), scale).to(out.dtype)
        return out


class Res5BoxHead(nn.Module):
    """The paper's C4 per-RoI head: res5 (first block stride 2: 14x14 -> 7x7) and global average
    pooling (Sec. 4.3, Appendix A), as Detectron2's ``Res5ROIHeads``."""

    def __init__(self, res5: nn.Module, out_channels: int):
        super().__init__()
        self.res5 = res5
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        """[R, C, 14, 14] pooled RoI features -> [R, out_channels] (res5, global average pool)."""
        return self.res5(x).mean(dim=(2, 3))


class VGGBoxHead(nn.Module):
    """Faster R-CNN's VGG-16 head: fc6 and fc7 (4096) with ReLU and dropout 0.5, after a 7x7 RoI
    pool of conv5_3; layer names as the classifier's, so its fc6/fc7 weights load unchanged."""

    def __init__(self, in_channels: int, resolution: int, fc_dim: int = 4096):
        super().__init__()
        self.fc6 = nn.Linear(in_channels * resolution * resolution, fc_dim)
        self.fc7 = nn.Linear(fc_dim, fc_dim)
        self.out_channels = fc_dim
        for fc in (self.fc6, self.fc7):
            nn.init.normal_(fc.weight, 0, 0.01)
            nn.init.zeros_(fc.bias)

    def forward(self, x: Tensor) -> Tensor:
        """[R, C, 7, 7] pooled RoI features -> [R, fc_dim] (fc6, fc7, ReLU, dropout 0.5)."""
        x = F.dropout(F.relu(self.fc6(x.flatten(1))), 0.5, self.training)
        return F.dropout(F.relu(self.fc7(x)), 0.5, self.training)


class BoxPredictor(nn.Module):
    """Class scores (background is index 0, torchvision's convention) and class-specific box
    deltas, initialised as Detectron2's ``FastRCNNOutputLayers`` (std 0.01 and 0.001)."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.cls_score = nn.Linear(in_channels, num_classes + 1)
        self.bbox_pred = nn.Linear(in_channels, (num_classes + 1) * 4)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """[R, D] features -> (class scores [R, K + 1], box deltas [R, 4 * (K + 1)])."""
        x = x.flatten(1)
        return self.cls_score(x), self.bbox_pred(x)


class ResdetRoIHeads(RoIHeads):
    """torchvision's box RoI heads (sampling, box coding, NMS) with Detectron2's smooth-L1 beta
    (``MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA``) and loss weight; boxes only (no masks/keypoints)."""

    def __init__(self, *args, smooth_l1_beta: float, bbox_reg_loss_weight: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.smooth_l1_beta = smooth_l1_beta
        self.bbox_reg_loss_weight = bbox_reg_loss_weight

    def forward(self, features, proposals, image_shapes, targets=None):
        """Training: ([], losses); inference: (per-image detections, {})."""
        labels = regression_targets = None
        if self.training:
            proposals, _, labels, regression_targets = self.select_training_samples(
                proposals, targets)
        x = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(x)
        if self.training:
            return [], self.fast_rcnn_losses(class_logits, box_regression, labels,
                                             regression_targets)
        boxes, scores, labels = self.postprocess_detections(class_logits, box_regression,
                                                            proposals, image_shapes)
        return [{"boxes": b, "labels": c, "scores": s}
                for b, s, c in zip(boxes, scores, labels)], {}

    def fast_rcnn_losses(self, class_logits, box_regression, labels, regression_targets):
        """Cross-entropy and smooth-L1 (``smooth_l1_beta``) losses, the box loss normalised by the
        number of sampled RoIs and scaled by ``bbox_reg_loss_weight``.
        """
        labels = torch.cat(labels, dim=0)
        regression_targets = torch.cat(regression_targets, dim=0)
        loss_cls = F.cross_entropy(class_logits.float(), labels)
        pos = torch.where(labels > 0)[0]
        box_regression = box_regression.reshape(box_regression.shape[0], -1, 4)
        loss_box = F.smooth_l1_loss(box_regression[pos, labels[pos]].float(),
                                    regression_targets[pos], beta=self.smooth_l1_beta,
                                    reduction="sum") / max(labels.numel(), 1)
        return {"loss_classifier": loss_cls,
                "loss_box_reg": loss_box * self.bbox_reg_loss_weight}


class FPNBackbone(nn.Module):
    """A resdet backbone (res2..res5) under torchvision's ``FeaturePyramidNetwork`` with a
    max-pooled "p6" (``LastLevelMaxPool``), returning Detectron2's names p2..p6."""

    def __init__(self, body: nn.Module, in_features: Sequence[str], out_channels: int):
        super().__init__()
        self.body = body
        self.in_features = list(in_features)
        shapes = body.output_shape()
        self.fpn = FeaturePyramidNetwork([shapes[f].channels for f in self.in_features],
                                         out_channels, extra_blocks=LastLevelMaxPool())
        strides = [shapes[f].stride for f in self.in_features]
        self.out_features = [f"p{int(math.log2(s))}" for s in strides]
        self.out_features.append(f"p{int(math.log2(strides[-1])) + 1}")
        self.strides = dict(zip(self.out_features, strides + [strides[-1] * 2]))
        self.out_channels = out_channels
        # The coarsest map must divide the padded input exactly (Detectron2's FPN: 32).
        self.size_divisibility = strides[-1]

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        """[N, C, H, W] images -> {p2..p6: FPN feature maps}."""
        feats = self.body(x)
        outs = self.fpn(OrderedDict((f, feats[f]) for f in self.in_features))
        return OrderedDict(zip(self.out_features, outs.values()))


class SingleMapBackbone(nn.Module):
    """A resdet backbone returning one feature map (C4: res4; VGG-16: conv5_3), stride 16."""

    def __init__(self, body: nn.Module, feature: str):
        super().__init__()
        self.body = body
        self.feature = feature
        shape = body.output_shape()[feature]
        self.out_features = [feature]
        self.strides = {feature: shape.stride}
        self.out_channels = shape.channels
        self.size_divisibility = 0

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        """[N, C, H, W] images -> {feature: its feature map} (one map)."""
        return OrderedDict([(self.feature, self.body(x)[self.feature])])


class ResdetFasterRCNN(FasterRCNN):
    """torchvision's Faster R-CNN assembled from the parts above.

    Inputs: a list of float CHW images in 0-255 (``INPUT.FORMAT`` channel order) and, in training,
    targets ``{"boxes": XYXY float [N, 4], "labels": int64 [N]}`` with contiguous 0-based class
    ids (Detectron2's convention; torchvision's background index 0 stays inside). Training
    returns Detectron2-named losses (``loss_rpn_cls``, ``loss_rpn_loc``, ``loss_cls``,
    ``loss_box_reg``); inference returns ``[{"boxes", "scores", "labels"}]`` in input pixels.
    """

    def __init__(self, backbone: nn.Module, rpn: RegionProposalNetwork, roi_heads: RoIHeads,
                 transform: GeneralizedRCNNTransform):
        # FasterRCNN.__init__ only builds default parts; all parts are given, so go to its base.
        GeneralizedRCNN.__init__(self, backbone, rpn, roi_heads, transform)

    def forward(self, images: List[Tensor], targets: Optional[List[Dict[str, Tensor]]] = None):
        """[C, H, W] images (and targets) -> {Detectron2 loss name: loss} in training, else
        per-image ``{"boxes", "scores", "labels"}`` with 0-based labels, in input pixels.
        """
        if self.training:  # test images stay uint8: the transform resizes them as the loaders do
            images = [img if img.is_floating_point() else img.float() for img in images]
        if targets is not None:
            targets = [dict(t, labels=t["labels"] + 1) for t in targets]
        out = super().forward(images, targets)
        if self.training:
            return {LOSS_NAMES.get(k, k): v for k, v in out.items()}
        for det in out:
            det["labels"] = det["labels"] - 1
        return out
