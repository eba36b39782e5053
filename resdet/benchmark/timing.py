"""Side-by-side timing: ours and a reference step, alternated round by round in one process.

Every round runs each step once; the order flips every round (A B, B A, A B, ...) so that a slow
drift of the machine (another process starting, thermal limits, a cache warming) hits both
sides equally. The reported ratio is the **median of the per-round ratios** ours/reference: each
round's pair ran under nearly the same load, so this cancels drift better than the ratio of two
medians (which is reported too, as ``ratio_of_medians``).

Peak memory is measured in a separate pass after the timing (so that it does not slow the timed
steps):

- CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (bytes held by
  tensors at the peak of one step, including the model's parameters and optimizer state).
- CPU: the increase of the process's peak resident set during one step: ``VmHWM`` from
  ``/proc/self/status`` after resetting it through ``/proc/self/clear_refs`` ("5"), minus
  ``VmRSS`` before the step. glibc keeps memory freed by earlier steps resident, which would hide
  this step's allocations, so the pass first calls glibc's ``malloc_trim(0)``, which hands every
  free page back to the system (the step then has to fault its pages in again, and they count).
  Where ``/proc`` cannot be reset the fallback is the growth of
  ``resource.getrusage().ru_maxrss`` (a lower bound). Both sides share one heap and what the
  previous step left allocated (e.g. gradients freed by ``zero_grad``) is in the baseline, so on
  the CPU treat the number as indicative (within tens of MiB), not exact.
"""

from __future__ import annotations

import ctypes
import gc
import resource
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import torch


@dataclass
class Runner:
    """One side of a comparison.

    Args:
        name: shown in the report ("resdet resnet50", "torchvision resnet50").
        step: runs one iteration (a training step, a forward pass, a batch from a loader).
        images_per_iter: images one ``step`` processes (for images/second).
        device: where the step runs (CUDA steps are synchronised before the clock is read).
    """

    name: str
    step: Callable[[], object]
    images_per_iter: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


@dataclass
class Measurement:
    """Timings and peak memory of one :class:`Runner`."""

    name: str
    images_per_iter: int
    times: List[float] = field(default_factory=list)
    peak_memory_bytes: Optional[int] = None
    memory_method: str = ""

    def summary(self) -> Dict[str, object]:
        """``sec_per_iter`` (median), its mean/min/max, ``images_per_sec``, memory in MiB."""
        med = statistics.median(self.times)
        out: Dict[str, object] = {
            "name": self.name,
            "sec_per_iter": med,
            "sec_per_iter_mean": statistics.fmean(self.times),
            "sec_per_iter_min": min(self.times),
            "sec_per_iter_max": max(self.times),
            "iters": len(self.times),
            "images_per_iter": self.images_per_iter,
            "images_per_sec": self.images_per_iter / med,
            "peak_memory_mb": (None if self.peak_memory_bytes is None
                               else self.peak_memory_bytes / 2**20),
            "memory_method": self.memory_method,
        }
        return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_once(runner: Runner) -> float:
    """Seconds one ``runner.step()`` takes (synchronising CUDA before and after)."""
    _sync(runner.device)
    t = time.perf_counter()
    runner.step()
    _sync(runner.device)
    return time.perf_counter() - t


def run_alternating(runners: Sequence[Runner], *, warmup: int, iters: int,
                    measure_memory: bool = True) -> List[Measurement]:
    """Warm up every runner, then time ``iters`` rounds, flipping the order every round.

    Args:
        runners: one (ours alone) or more (ours first, then the references).
        warmup: untimed steps of each runner before timing (cudnn autotuning, compile, caches).
        iters: timed rounds; each runner runs once per round.
        measure_memory: run one more step of each for its peak memory (see the module docstring).

    Returns:
        One :class:`Measurement` per runner, in the order given.
    """
    out = [Measurement(r.name, r.images_per_iter) for r in runners]
    for _ in range(warmup):
        for r in runners:
            r.step()
    for i in range(iters):
        order = range(len(runners)) if i % 2 == 0 else reversed(range(len(runners)))
        for k in order:
            out[k].times.append(time_once(runners[k]))
    if measure_memory:
        for r, m in zip(runners, out):
            m.peak_memory_bytes, m.memory_method = peak_memory_of_step(r)
    return out


def per_round_ratios(ours: Measurement, reference: Measurement) -> List[float]:
    """ours/reference seconds for each round (both ran in the same round)."""
    return [a / b for a, b in zip(ours.times, reference.times)]


def compare(ours: Measurement, reference: Measurement) -> Dict[str, float]:
    """``ratio`` (median of per-round ratios) and ``ratio_of_medians``; < 1 means ours is faster."""
    ratios = per_round_ratios(ours, reference)
    return {
        "ratio": statistics.median(ratios),
        "ratio_of_medians": statistics.median(ours.times) / statistics.median(reference.times),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
    }


# ---------------------------------------------------------------------------- memory
def _trim_heap() -> bool:
    """Return glibc's free heap pages to the system; False where there is no glibc."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # returns 0 when there was nothing to free
    except (OSError, AttributeError):
        return False
    return True


def _proc_status_kb(key: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_memory_of_step(runner: Runner) -> tuple:
    """``(bytes, method)``: the peak memory of one more ``runner.step()``."""
    if runner.device.type == "cuda":
        torch.cuda.synchronize(runner.device)
        torch.cuda.reset_peak_memory_stats(runner.device)
        runner.step()
        torch.cuda.synchronize(runner.device)
        return (torch.cuda.max_memory_allocated(runner.device),
                "torch.cuda.max_memory_allocated")
    gc.collect()
    trimmed = _trim_heap()
    if _reset_peak_rss() and _proc_status_kb("VmRSS") is not None:
        before = _proc_status_kb("VmRSS")
        runner.step()
        peak = _proc_status_kb("VmHWM")
        method = "VmHWM-VmRSS delta" + (" after malloc_trim" if trimmed else "")
        return max(0, peak - before) * 1024, method
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    runner.step()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (after - before) * 1024, "ru_maxrss growth (lower bound)"
