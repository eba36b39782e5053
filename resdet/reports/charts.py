"""PNG charts of a backbone comparison (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import os
from typing import List, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from resdet.reports.paper import paper_value  # noqa: E402
from resdet.reports.runs import Run  # noqa: E402

METRICS = (("AP50", "mAP@.5"), ("AP", "mAP@[.5,.95]"))


def _save(fig, path: str) -> str:
    """Lay out, write ``path`` as PNG and free the figure."""
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def ap_bars(runs: Sequence[Run], datasets: Sequence[str], path: str) -> str:
    """Grouped bars: one group per (dataset, metric), one bar per run; the paper as black ticks."""
    groups = [(d, k, shown) for d in datasets for k, shown in METRICS
              if any(r.ap(d, k) is not None for r in runs)]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.8 * len(groups) + 2), 4.2))
    width = 0.8 / max(1, len(runs))
    paper_labelled = False
    for i, run in enumerate(runs):
        xs = [g + (i - (len(runs) - 1) / 2) * width for g in range(len(groups))]
        vals = [run.ap(d, k) or 0.0 for d, k, _ in groups]
        bars = ax.bar(xs, vals, width, label=run.label)
        ax.bar_label(bars, fmt="%.1f", fontsize=7, label_type="center")
        paper = [paper_value(d, run.arch, run.setting, k) for d, k, _ in groups]
        pts = [(x, p) for x, p in zip(xs, paper) if p is not None]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker="_", s=300, color="k",
                       label=None if paper_labelled else "paper (same backbone)", zorder=3)
            paper_labelled = True
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([f"{d}\n{shown}" for d, _, shown in groups], fontsize=8)
    ax.set_ylabel("AP (%)")
    ax.set_title("Detection AP per backbone")
    ax.legend(fontsize=7)
    return _save(fig, path)


def loss_curves(runs: Sequence[Run], path: str) -> str:
    """total_loss against iteration, one line per run."""
    fig, ax = plt.subplots(figsize=(6, 4))
    values = []
    for run in runs:
        its, loss = run.loss_curve()
        if its:
            ax.plot(its, loss, marker="o" if len(its) < 20 else None, label=run.label)
            values += [v for v in loss if v > 0]
    if values and max(values) > 100 * min(values):
        ax.set_yscale("log")  # one diverging or short run would flatten the others to a line
    ax.set_xlabel("iteration")
    ax.set_ylabel("total loss")
    ax.set_title("Training loss")
    ax.legend(fontsize=7)
    return _save(fig, path)


def seconds_per_iter(runs: Sequence[Run], path: str) -> str:
    """Median logged seconds per iteration, one bar per run."""
    fig, ax = plt.subplots(figsize=(max(4.0, 1.5 * len(runs) + 1), 4))
    labels: List[str] = [r.label.replace(" (", "\n(") for r in runs]
    vals = [r.seconds_per_iter() or 0.0 for r in runs]
    bars = ax.bar(range(len(runs)), vals, color=[f"C{i}" for i in range(len(runs))])
    ax.bar_label(bars, fmt="%.3g", fontsize=8)
    ax.set_xticks(range(len(runs)))
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_ylabel("seconds / iteration (median)")
    ax.set_title("Training speed")
    return _save(fig, path)


def write_charts(runs: Sequence[Run], datasets: Sequence[str], out_dir: str) -> List[str]:
    """All three charts into ``out_dir``; returns their paths."""
    return [ap_bars(runs, datasets, os.path.join(out_dir, "ap_bars.png")),
            loss_curves(runs, os.path.join(out_dir, "loss_curves.png")),
            seconds_per_iter(runs, os.path.join(out_dir, "seconds_per_iter.png"))]
