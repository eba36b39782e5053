"""Training and validation error curves from metrics.json, drawn as the paper's Figs. 4 and 6."""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Tuple

from resdet.engine.events import read_metrics
from resdet.errors import UserError

Curve = Tuple[List[int], List[float]]


def load_curves(run_dir: str, dataset: Optional[str] = None) -> Dict[str, Curve]:
    """Read ``run_dir/metrics.json``.

    Args:
        run_dir: a training output folder.
        dataset: evaluation set to plot (default: the first ``*/top1_err`` key found).

    Returns:
        ``{"train": (iterations, error %), "val": (iterations, error %)}`` (val may be empty).
    """
    path = os.path.join(run_dir, "metrics.json")
    if not os.path.isfile(path):
        raise UserError(f"{path} does not exist; pass training output folders (OUTPUT_DIR).")
    recs = read_metrics(path, strict=True)
    train = ([r["iteration"] + 1 for r in recs if "train_error" in r],
             [100.0 * r["train_error"] for r in recs if "train_error" in r])
    key = f"{dataset}/top1_err" if dataset else None
    if key is None:
        for r in recs:
            key = next((k for k in r if k.endswith("/top1_err")), None)
            if key:
                break
    val = ([r["iteration"] + 1 for r in recs if key and key in r],
           [float(r[key]) for r in recs if key and key in r])
    if not train[0] and not val[0]:
        raise UserError(f"{path} has no train_error or */top1_err entries; is it a "
                        "classification run?")
    return {"train": train, "val": val}


def plot_runs(run_dirs: Sequence[str], out: str, *, labels: Optional[Sequence[str]] = None,
              dataset: Optional[str] = None, title: str = "") -> str:
    """Training error (thin) and validation error (bold) against iterations, one colour per run.

    Args:
        run_dirs: output folders with metrics.json.
        out: image file to write (png, pdf, svg).
        labels: legend names (default: folder names).
        dataset: evaluation set (default: the first found per run).
        title: plot title.

    Returns:
        ``out``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(labels or [os.path.basename(os.path.normpath(d)) for d in run_dirs])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (d, label) in enumerate(zip(run_dirs, labels)):
        c = load_curves(d, dataset)
        col = colors[i % len(colors)]
        if c["train"][0]:
            ax.plot(*c["train"], color=col, linewidth=0.8, alpha=0.8, label=f"{label} train")
        if c["val"][0]:
            ax.plot(*c["val"], color=col, linewidth=2.5, label=f"{label} val")
    ax.set_xlabel("iterations")
    ax.set_ylabel("error (%)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
