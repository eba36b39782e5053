"""Process-group helpers: world size, rank, barriers and small collectives that also work alone.

Every helper degrades to the single-process answer when torch.distributed is not initialised, so
the same training code runs under ``python tools/x.py`` and under ``launch`` or ``torchrun``.
"""

from __future__ import annotations

import datetime
import os
from typing import Any, List

import torch
import torch.distributed as dist

# A wait longer than this means a peer is gone: stop with a message instead of hanging.
DEFAULT_TIMEOUT = datetime.timedelta(minutes=int(os.environ.get("RESDET_DIST_TIMEOUT_MIN", "30")))

_LOCAL_RANK = 0
_LOCAL_SIZE = 1


def is_initialized() -> bool:
    """True when a default process group exists."""
    return dist.is_available() and dist.is_initialized()


def get_world_size() -> int:
    """Number of processes taking part in training (1 when not distributed)."""
    return dist.get_world_size() if is_initialized() else 1


def get_rank() -> int:
    """Global rank of this process (0 when not distributed)."""
    return dist.get_rank() if is_initialized() else 0


def get_local_rank() -> int:
    """Rank of this process on its machine (the GPU index it uses)."""
    if "LOCAL_RANK" in os.environ and is_initialized():
        return int(os.environ["LOCAL_RANK"])
    return _LOCAL_RANK


def get_local_size() -> int:
    """Number of processes on this machine."""
    if "LOCAL_WORLD_SIZE" in os.environ and is_initialized():
        return int(os.environ["LOCAL_WORLD_SIZE"])
    return _LOCAL_SIZE


def set_local(rank: int, size: int) -> None:
    """Record this process's machine-local rank and size (called by :func:`launch`)."""
    global _LOCAL_RANK, _LOCAL_SIZE
    _LOCAL_RANK, _LOCAL_SIZE = rank, size


def is_main_process() -> bool:
    """True on global rank 0, which writes logs, metrics and checkpoints."""
    return get_rank() == 0


def synchronize() -> None:
    """Barrier across all processes; a no-op alone.

    On gloo (CPU) and NCCL the process group's timeout bounds the wait, so a dead peer ends in an
    exception rather than a hang.
    """
    if get_world_size() > 1:
        dist.barrier()


def all_reduce_sum(values: List[float], device: torch.device) -> List[float]:
    """Sum a short list of floats over all processes (returned unchanged when alone)."""
    if get_world_size() == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64 if device.type == "cpu" else torch.float32,
                     device=device)
    dist.all_reduce(t)
    return t.tolist()


def all_gather_object(obj: Any) -> List[Any]:
    """Gather a picklable object from every process, in rank order."""
    if get_world_size() == 1:
        return [obj]
    out: List[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Send a picklable object from ``src`` to every process and return it."""
    if get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
