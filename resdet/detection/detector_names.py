"""Whole-detector state dicts between the torchvision engine's names and Detectron2's.

The networks already share names (resdet's are Detectron2's backbone names); the rest differs
only in module paths and in the box predictor's class layout:

================================  =============================================
Detectron2                        torchvision engine
================================  =============================================
backbone.bottom_up.* (FPN)        backbone.body.*
backbone.* (C4, VGG-16)           backbone.body.*
backbone.fpn_lateral{2..5}        backbone.fpn.inner_blocks.{0..3}.0
backbone.fpn_output{2..5}         backbone.fpn.layer_blocks.{0..3}.0
proposal_generator.rpn_head.conv  rpn.head.conv.0.0
...objectness_logits / .anchor_deltas   rpn.head.cls_logits / rpn.head.bbox_pred
roi_heads.res5.* (C4)             roi_heads.box_head.res5.*
roi_heads.box_head.fc1 / fc2      roi_heads.box_head.fc6 / fc7 (FPN's TwoMLPHead)
cls_score: background last        cls_score: background first
bbox_pred: K*4 rows               bbox_pred: (K+1)*4 rows (background's unused)
================================  =============================================

Anchors are generated in Detectron2's order on both engines, so RPN heads carry over exactly.
"""

from __future__ import annotations

import re
from typing import Dict

import torch

_RPN = {"conv": "conv.0.0", "objectness_logits": "cls_logits", "anchor_deltas": "bbox_pred"}
_RPN_BACK = {v: k for k, v in _RPN.items()}


def is_detectron2_detector(sd: Dict[str, object]) -> bool:
    """True for a Detectron2 GeneralizedRCNN state dict (it has an RPN head there)."""
    return any(str(k).startswith("proposal_generator.rpn_head.") for k in sd)


def _fpn_ranks(keys, pattern: str) -> Dict[int, int]:
    stages = sorted({int(m.group(1)) for k in keys for m in [re.match(pattern, k)] if m})
    return {s: i for i, s in enumerate(stages)}


def detectron2_to_tvdet(sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Rename a Detectron2 Faster R-CNN state dict to this engine's; unknown keys are kept."""
    ranks = _fpn_ranks(sd, r"^backbone\.fpn_(?:lateral|output)(\d+)\.")
    out: Dict[str, torch.Tensor] = {}
    for key, t in sd.items():
        if key in ("pixel_mean", "pixel_std"):
            continue  # the transform holds them, from the config
        m = re.match(r"^backbone\.fpn_(lateral|output)(\d+)\.(.+)$", key)
        if m:
            block = "inner_blocks" if m.group(1) == "lateral" else "layer_blocks"
            out[f"backbone.fpn.{block}.{ranks[int(m.group(2))]}.0.{m.group(3)}"] = t
            continue
        m = re.match(r"^proposal_generator\.rpn_head\.(\w+)\.(.+)$", key)
        if m and m.group(1) in _RPN:
            out[f"rpn.head.{_RPN[m.group(1)]}.{m.group(2)}"] = t
            continue
        if key.startswith("backbone.bottom_up."):
            out["backbone.body." + key[len("backbone.bottom_up."):]] = t
        elif key.startswith("backbone."):
            out["backbone.body." + key[len("backbone."):]] = t
        elif key.startswith("roi_heads.res5."):
            out["roi_heads.box_head." + key[len("roi_heads."):]] = t
        elif re.match(r"^roi_heads\.box_head\.fc[12]\.", key):
            fc = "fc6" if key.startswith("roi_heads.box_head.fc1.") else "fc7"
            out[f"roi_heads.box_head.{fc}." + key.split(".", 3)[3]] = t
        elif key.startswith("roi_heads.box_predictor.cls_score."):
            out[key] = torch.cat([t[-1:], t[:-1]])  # background: last -> first
        elif key.startswith("roi_heads.box_predictor.bbox_pred."):
            out[key] = torch.cat([torch.zeros_like(t[:4]), t])  # background's 4 rows
        else:
            out[key] = t
    return out


def tvdet_to_detectron2(sd: Dict[str, torch.Tensor], *, fpn: bool) -> Dict[str, torch.Tensor]:
    """Rename this engine's state dict to Detectron2's (``fpn``: the backbone is under
    ``backbone.bottom_up``). The inverse of :func:`detectron2_to_tvdet`."""
    out: Dict[str, torch.Tensor] = {}
    for key, t in sd.items():
        m = re.match(r"^backbone\.fpn\.(inner|layer)_blocks\.(\d+)\.0\.(.+)$", key)
        if m:
            kind = "lateral" if m.group(1) == "inner" else "output"
            out[f"backbone.fpn_{kind}{int(m.group(2)) + 2}.{m.group(3)}"] = t
            continue
        m = re.match(r"^rpn\.head\.(conv\.0\.0|cls_logits|bbox_pred)\.(.+)$", key)
        if m:
            out[f"proposal_generator.rpn_head.{_RPN_BACK[m.group(1)]}.{m.group(2)}"] = t
        elif key.startswith("backbone.body."):
            inner = key[len("backbone.body."):]
            out[("backbone.bottom_up." if fpn else "backbone.") + inner] = t
        elif key.startswith("roi_heads.box_head.res5."):
            out["roi_heads." + key[len("roi_heads.box_head."):]] = t
        elif fpn and re.match(r"^roi_heads\.box_head\.fc[67]\.", key):
            fc = "fc1" if key.startswith("roi_heads.box_head.fc6.") else "fc2"
            out[f"roi_heads.box_head.{fc}." + key.split(".", 3)[3]] = t
        elif key.startswith("roi_heads.box_predictor.cls_score."):
            out[key] = torch.cat([t[1:], t[:1]])
        elif key.startswith("roi_heads.box_predictor.bbox_pred."):
            out[key] = t[4:]
        else:
            out[key] = t
    return out
