"""``selfcheck --bench``: the GPU rows of docs/benchmarks.md in one go, through
``tools/benchmark.py`` (resdet and its reference alternated in one process, ratio ours/reference).

Rows: the ResNet-50 training step with bf16 autocast and channels_last against torchvision's
resnet50 under the same settings (both stride placements), with the fraction of the GPU's bf16
peak; Faster R-CNN R50-FPN training against torchvision's ``fasterrcnn_resnet50_fpn``; R50-FPN
and the paper's R101-C4 on the Detectron2 engine against Detectron2's own models.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from typing import Callable, List, Optional

from resdet.selfcheck.environment import peak_bf16_tflops

# Multiply-adds per 224x224 image of ResNet-50's forward pass (tools/analyze_model.py): 4.09 G
# with the stride in the 3x3 conv (torchvision), 3.86 G with the paper's placement (Table 1).
RESNET50_GMACS = {True: 4.089, False: 3.858}


@dataclass
class BenchRow:
    """One benchmark row.

    Attributes:
        name: what was measured.
        command: the ``tools/benchmark.py`` command line (run it again to re-measure).
        status: "passed" (measured), "failed" (with ``detail``) or "skipped" (with why).
        images_per_sec: resdet's training images/s.
        reference_images_per_sec: the reference's images/s under the same settings.
        ratio: resdet's s/iter over the reference's (median of alternated rounds; <1: faster).
        goal: the ratio the issue asks for (at most).
        fraction_of_peak: achieved bf16 FLOP/s over the GPU's peak, where both are known.
        detail: a failure's sentence or a skip's reason.
    """

    name: str
    command: str
    status: str = "skipped"
    images_per_sec: Optional[float] = None
    reference_images_per_sec: Optional[float] = None
    ratio: Optional[float] = None
    goal: Optional[float] = None
    fraction_of_peak: Optional[float] = None
    detail: str = ""

    def as_dict(self) -> dict:
        """The row as a JSON-ready dict."""
        return asdict(self)


def bench_rows(repo: str, has_detectron2: bool) -> List[tuple]:
    """(name, argv after tools/benchmark.py, goal, needs Detectron2, stride_in_3x3 or None)."""
    rn50 = ["--task", "train", "--arch", "resnet50", "--device", "cuda", "--batch", "256",
            "--amp", "--channels-last", "--iters", "30", "--warmup", "10",
            "--reference", "torchvision", "--json"]
    det = ["--task", "train", "--device", "cuda", "--iters", "20", "--warmup", "5", "--json"]
    cfg = lambda name: os.path.join(repo, "configs", name)  # noqa: E731
    return [
        ("ResNet-50 train step, bf16 + channels_last, stride in 3x3 (same net as torchvision)",
         rn50 + ["--stride-in-3x3"], 1.0, False, True),
        ("ResNet-50 train step, bf16 + channels_last, the paper's stride placement",
         rn50, 1.0, False, False),
        ("Faster R-CNN R50-FPN train, torchvision engine vs fasterrcnn_resnet50_fpn",
         det + ["--config", cfg("faster_rcnn_R50_FPN_coco.yaml"), "--engine", "torchvision",
                "--reference", "torchvision", "--batch", "4", "--input-size", "800"],
         1.05, False, None),
        ("Faster R-CNN R50-FPN train, Detectron2 engine vs Detectron2's own",
         det + ["--config", cfg("faster_rcnn_R50_FPN_coco.yaml"), "--engine", "detectron2",
                "--reference", "detectron2", "--batch", "4", "--input-size", "800",
                "MODEL.WEIGHTS", ""], 1.05, True, None),
        ("Faster R-CNN R101-C4 (the paper's) train, Detectron2 engine vs Detectron2's own",
         det + ["--config", cfg("faster_rcnn_R101_coco.yaml"), "--engine", "detectron2",
                "--reference", "detectron2", "--batch", "2", "--input-size", "600",
                "MODEL.WEIGHTS", ""], 1.05, True, None),
    ]


def run_bench(repo: str, device: str, has_detectron2: bool, gpu_name: str = "",
              timeout: float = 900.0,
              on_result: Optional[Callable[[BenchRow], None]] = None) -> List[BenchRow]:
    """Measure every row (each in its own process); rows that cannot run here are skipped.

    Args:
        repo: the source checkout (``tools/benchmark.py``, ``configs/``).
        device: "cuda" to measure; anything else skips every row (they are GPU rows).
        has_detectron2: whether the Detectron2 rows can run.
        gpu_name: the GPU's name, for the fraction of peak.
        timeout: seconds one row may take.
        on_result: called with each row as it is known.

    Returns:
        the rows, measured, failed or skipped.
    """
    tool = os.path.join(repo, "tools", "benchmark.py")
    rows = []
    for name, argv, goal, needs_d2, stride_in_3x3 in bench_rows(repo, has_detectron2):
        row = BenchRow(name, "python tools/benchmark.py " + " ".join(
            a if a else '""' for a in argv).replace(repo + os.sep, ""), goal=goal)
        if device != "cuda":
            row.detail = "a GPU row: no GPU visible"
        elif needs_d2 and not has_detectron2:
            row.detail = "Detectron2 is not installed"
        else:
            _measure(row, [sys.executable, tool] + argv, timeout, gpu_name, stride_in_3x3)
        rows.append(row)
        if on_result:
            on_result(row)
    return rows


def _measure(row: BenchRow, cmd: List[str], timeout: float, gpu_name: str,
             stride_in_3x3: Optional[bool]) -> None:
    from resdet.selfcheck.smoke import error_sentence

    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        row.status, row.detail = "failed", f"ran past {timeout:.0f} s"
        return
    result = None
    for line in reversed(r.stdout.splitlines()):
        if line.startswith("{"):
            try:
                result = json.loads(line)
                break
            except ValueError:
                continue
    if r.returncode != 0 or result is None:
        row.status, row.detail = "failed", error_sentence(r.stdout)
        return
    ours, ref = result.get("ours") or {}, result.get("reference") or {}
    row.status = "passed"
    row.images_per_sec = ours.get("images_per_sec")
    row.reference_images_per_sec = ref.get("images_per_sec")
    row.ratio = result.get("ratio")
    peak = peak_bf16_tflops(gpu_name)
    if stride_in_3x3 is not None and peak and row.images_per_sec:
        # Training = forward + backward (about 2x the forward) = 3 forward passes of 2 FLOPs
        # per multiply-add.
        flops_per_image = 3 * 2 * RESNET50_GMACS[stride_in_3x3] * 1e9
        row.fraction_of_peak = row.images_per_sec * flops_per_image / (peak * 1e12)
    if row.ratio is not None and row.goal is not None and row.ratio > row.goal:
        row.detail = f"ratio {row.ratio:.3f} is above the goal {row.goal}"
