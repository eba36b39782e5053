"""Test-time views of the paper (Sec. 3.4): centre crop, 10-crop, fully-convolutional multi-scale.

- 10-crop ("standard 10-crop testing"): softmax of the 4 corner crops, the centre crop and their
  flips, averaged.
- Multi-scale ("the fully-convolutional form as in [41, 13], and average the scores at multiple
  scales (images are resized such that the shorter side is in {224, 256, 384, 480, 640})"): the
  classifier's fc layers run as convolutions over the final feature map (VGG's fc6 as a 7x7 conv,
  the ResNets' fc as a 1x1 conv), the class score map is averaged spatially, turned into softmax
  probabilities, and averaged over scales and horizontal flips (as [41] does).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from resdet.data.cls_transforms import ten_crop_views


def ten_crop_probs(model: nn.Module, images: torch.Tensor,
                   normalize: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Average softmax over 10 views.

    Args:
        model: classifier returning logits.
        images: ``N x 10 x 3 x S x S`` views from :func:`ten_crop_views` (unnormalised).
        normalize: maps ``B x 3 x S x S`` raw images to network input.

    Returns:
        ``N x C`` probabilities.
    """
    n, v = images.shape[:2]
    logits = model(normalize(images.flatten(0, 1)))
    return F.softmax(logits.float(), dim=1).view(n, v, -1).mean(dim=1)


def class_score_map(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The classifier applied convolutionally: ``N x C x h x w`` class scores (logits).

    ResNets (ImageNet and CIFAR): fc as a 1x1 conv over the last stage's map. VGG-16: pool5, fc6
    as a 7x7 conv, fc7 and fc8 as 1x1 convs (needs an input of at least 224 pixels).
    """
    if hasattr(model, "fc8"):  # VGG-16
        f = F.max_pool2d(model.forward_features(x)["conv5_3"], kernel_size=2, stride=2)
        w6 = model.fc6.weight.view(model.fc6.out_features, -1, 7, 7)
        f = F.relu(F.conv2d(f, w6, model.fc6.bias))
        f = F.relu(F.conv2d(f, model.fc7.weight[:, :, None, None], model.fc7.bias))
        return F.conv2d(f, model.fc8.weight[:, :, None, None], model.fc8.bias)
    feats = model.forward_features(x)[model.stage_names[-1]]
    return F.conv2d(feats, model.fc.weight[:, :, None, None], model.fc.bias)


def multiscale_probs(model: nn.Module, image: torch.Tensor, scales: Sequence[int],
                     normalize: Callable[[torch.Tensor], torch.Tensor],
                     flip: bool = True) -> torch.Tensor:
    """Fully-convolutional multi-scale test of one image.

    Args:
        model: a resdet classifier (ResNet, CIFAR net or VGG-16).
        image: ``3 x H x W`` raw image (any size).
        scales: shorter sides to resize to.
        normalize: maps ``1 x 3 x h x w`` raw images to network input.
        flip: also score the horizontal flip at every scale.

    Returns:
        ``C`` probabilities averaged over scales (and flips).
    """
    _, h, w = image.shape
    probs = []
    for s in scales:
        r = s / min(h, w)
        size = (max(1, round(h * r)), max(1, round(w * r)))
        x = F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False,
                          antialias=r < 1)
        x = normalize(x)
        batch = torch.cat([x, x.flip(-1)]) if flip else x
        scores = class_score_map(model, batch).float().mean(dim=(2, 3))
        probs.append(F.softmax(scores, dim=1))
    return torch.cat(probs).mean(dim=0)


__all__ = ["class_score_map", "multiscale_probs", "ten_crop_probs", "ten_crop_views"]
