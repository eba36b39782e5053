"""What one benchmark run measures, and the device-dependent settings (AMP, channels_last, compile).

The GPU settings are applied only where they mean something: ``--amp`` (bfloat16 autocast) and
``--compile`` (``torch.compile``) are CUDA-only here and are ignored with a warning on the CPU
(CPU autocast and the inductor's C++ toolchain would measure something else than the GPU
recipe); ``--channels-last`` is valid on both and is applied on both.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import asdict, dataclass
from typing import Optional

import torch
from torch import nn

from resdet.errors import UserError

logger = logging.getLogger(__name__)

TASKS = ("train", "inference", "data", "eval", "data-scale")
REFERENCES = ("torchvision", "detectron2", "pycocotools")


@dataclass
class BenchSettings:
    """One ``tools/benchmark.py`` invocation; see that tool's ``--help`` for each field."""

    task: str
    arch: Optional[str] = None
    config: Optional[str] = None
    opts: tuple = ()
    engine: str = "auto"
    device: str = "cpu"
    batch: int = 2
    input_size: Optional[int] = None
    iters: int = 10
    warmup: int = 2
    amp: bool = False
    channels_last: bool = False
    compile: bool = False
    stride_in_3x3: bool = False
    reference: Optional[str] = None
    num_workers: int = 2
    eval_images: int = 5000
    scale: float = 1.0
    parts: tuple = ("load", "records", "workers")

    def as_dict(self) -> dict:
        """The settings as a plain dict (recorded in the benchmark's JSON)."""
        return asdict(self)


def check_settings(s: BenchSettings) -> BenchSettings:
    """Raise :class:`UserError` for combinations that cannot run; warn about ignored options."""
    if s.task not in TASKS:
        raise UserError(f"--task {s.task!r} is not one of {', '.join(TASKS)}.")
    if s.task not in ("eval", "data-scale") and not (s.arch or s.config):
        raise UserError(f"--task {s.task} needs --arch NAME (a backbone) or --config FILE "
                        "(a detection config).")
    if s.arch and s.config:
        raise UserError("Give either --arch or --config, not both.")
    if s.reference is not None and s.reference not in REFERENCES:
        raise UserError(f"--reference {s.reference!r} is not one of {', '.join(REFERENCES)}.")
    for name in ("batch", "iters"):
        if getattr(s, name) < 1:
            raise UserError(f"--{name} must be at least 1 (got {getattr(s, name)}).")
    if s.warmup < 0:
        raise UserError(f"--warmup must be 0 or more (got {s.warmup}).")
    if s.input_size is not None and s.input_size < 16:
        raise UserError(f"--input-size must be at least 16 pixels (got {s.input_size}).")
    if s.device not in ("cpu", "cuda"):
        raise UserError(f"--device {s.device!r} must be cpu or cuda.")
    if s.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was given but torch sees no CUDA device; use --device cpu.")
    if s.device == "cpu":
        if s.amp:
            logger.warning("--amp (bfloat16 autocast) is a GPU setting; ignored on the CPU.")
            s.amp = False
        if s.compile:
            logger.warning("--compile (torch.compile) is measured on the GPU only; ignored on "
                           "the CPU.")
            s.compile = False
    return s


def torch_device(s: BenchSettings) -> torch.device:
    """``cuda`` when ``--device cuda``, otherwise the CPU."""
    return torch.device("cuda" if s.device == "cuda" else "cpu")


def prepare_model(model: nn.Module, s: BenchSettings) -> nn.Module:
    """Move to the device, apply channels_last and (CUDA) torch.compile."""
    model = model.to(torch_device(s))
    if s.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if s.compile:
        model = torch.compile(model)
    return model


def prepare_input(x: torch.Tensor, s: BenchSettings) -> torch.Tensor:
    """Move ``x`` to the device; a 4-D ``[N, C, H, W]`` batch becomes channels_last with
    ``--channels-last``.
    """
    x = x.to(torch_device(s))
    if s.channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def autocast(s: BenchSettings):
    """bfloat16 autocast on CUDA when ``--amp``; otherwise a no-op context."""
    if s.amp and s.device == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
