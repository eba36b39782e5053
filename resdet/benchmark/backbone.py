"""Classifier steps for ``--arch``: resdet's network against torchvision's ``resnetNN``/``vgg16``.

- train: forward, cross-entropy, backward and one SGD step (momentum 0.9, weight decay 1e-4),
  the paper's ImageNet recipe (Sec. 3.4), on a fixed random batch;
- inference: forward in ``eval()`` mode under ``torch.no_grad()``.

Both networks get the same input tensor and labels, the same number of classes and the same
device settings, so the ratio compares the networks alone. torchvision's ResNets put the stride
in the 3x3 conv ("v1.5"); ``--stride-in-3x3`` builds resdet's ResNet the same way, without it
resdet uses the paper's placement (stride in the first 1x1; fewer FLOPs in stages 3-5).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from resdet.benchmark.settings import (
    BenchSettings,
    autocast,
    prepare_input,
    prepare_model,
    torch_device,
)
from resdet.benchmark.timing import Runner
from resdet.errors import UserError
from resdet.modeling import build_classifier, get_arch

TORCHVISION_ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "vgg16")


def default_input_size(arch: str) -> int:
    """The net's training crop side in pixels: 224 ImageNet (Sec. 3.4), 32 CIFAR (Sec. 4.2)."""
    return get_arch(arch).input_size


def default_num_classes(arch: str) -> int:
    """Classes of the net's dataset: 1000 ImageNet, 10 CIFAR."""
    return get_arch(arch).num_classes


def build_ours(s: BenchSettings) -> nn.Module:
    """resdet's classifier for ``s.arch`` (stride placement from ``s.stride_in_3x3``).

    Raises:
        UserError: ``--stride-in-3x3`` for a net that has no stride placement option.
    """
    spec = get_arch(s.arch)
    options = {}
    if spec.supports("stride_in_1x1"):
        options["stride_in_1x1"] = not s.stride_in_3x3
    elif s.stride_in_3x3:
        raise UserError(f"--stride-in-3x3 does not apply to {s.arch!r} (it takes "
                        f"{', '.join(spec.options)}); drop it.")
    torch.manual_seed(0)
    return build_classifier(s.arch, num_classes=default_num_classes(s.arch), **options)


def build_torchvision_reference(s: BenchSettings) -> nn.Module:
    """torchvision's network of the same name (random weights; no download)."""
    import torchvision

    if s.arch not in TORCHVISION_ARCHS:
        raise UserError(f"--reference torchvision has a network for {', '.join(TORCHVISION_ARCHS)}"
                        f"; {s.arch!r} has none, so drop --reference or pick one of those.")
    torch.manual_seed(0)
    return getattr(torchvision.models, s.arch)(weights=None,
                                               num_classes=default_num_classes(s.arch))


def _batch(s: BenchSettings):
    size = s.input_size or default_input_size(s.arch)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(s.batch, 3, size, size, generator=g)
    y = torch.randint(0, default_num_classes(s.arch), (s.batch,), generator=g)
    return prepare_input(x, s), y.to(torch_device(s))


def make_train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                    s: BenchSettings) -> Callable[[], float]:
    """One SGD step of ``model`` on ``(x, y)``; returns nothing the timer waits for."""
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast(s):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    return step


def make_inference_step(model: nn.Module, x: torch.Tensor, s: BenchSettings) -> Callable:
    """A forward of ``model`` on ``x`` in ``eval()`` mode without gradients."""
    model.eval()

    def step():
        with torch.no_grad(), autocast(s):
            model(x)

    return step


def classifier_runners(s: BenchSettings, reference: Optional[str]) -> list:
    """``[ours]`` or ``[ours, reference]`` :class:`Runner` s for ``s.task`` in train/inference."""
    if reference not in (None, "torchvision"):
        raise UserError(f"--arch benchmarks compare against torchvision; --reference {reference} "
                        "applies to --config (detectron2) or --task eval (pycocotools).")
    x, y = _batch(s)
    suffix = " (stride in 3x3)" if s.stride_in_3x3 else ""
    models = [(f"resdet {s.arch}{suffix}", build_ours(s))]
    if reference == "torchvision":
        models.append((f"torchvision {s.arch}", build_torchvision_reference(s)))
    runners = []
    for name, model in models:
        model = prepare_model(model, s)
        step = (make_train_step(model, x, y, s) if s.task == "train"
                else make_inference_step(model, x, s))
        runners.append(Runner(name, step, s.batch, torch_device(s)))
    return runners
