"""The backbone comparison of the paper's Tables 7 and 8, from finished runs of either engine.

``compare_backbones(run_dirs, out_dir)`` writes ``out_dir/report.md`` (one table per evaluation
dataset: mAP@.5 and mAP@[.5,.95] per run, the relative improvement over the first run, and the
paper's number beside ours where the dataset, backbone and layout match) and three PNG charts.
"""

from __future__ import annotations

import datetime
import os
from typing import Dict, List, Optional, Sequence

from resdet.errors import UserError
from resdet.reports.charts import METRICS, write_charts
from resdet.reports.paper import PAPER_SOURCE, paper_dataset, paper_value
from resdet.reports.runs import Run, pretty_arch, read_run


def _f(v: Optional[float], spec: str = ".1f") -> str:
    return "–" if v is None else format(v, spec)


def _rel(v: Optional[float], base: Optional[float]) -> str:
    if v is None or base is None or base == 0:
        return "–"
    return f"{100 * (v - base) / base:+.1f}%"


def datasets_of(runs: Sequence[Run]) -> List[str]:
    """Detection evaluation datasets (those with "bbox" results) in first-seen order."""
    seen: List[str] = []
    for r in runs:
        for d, res in r.eval_results.items():
            if "bbox" in res and d not in seen:
                seen.append(d)
    return seen


def dataset_table(runs: Sequence[Run], dataset: str) -> List[str]:
    """Markdown lines of one dataset's table (Tables 7/8 shape)."""
    base = runs[0]
    lines = [f"### {dataset}", ""]
    key = paper_dataset(dataset)
    if key:
        lines += [f"Paper: {PAPER_SOURCE[key]}.", ""]
    lines += ["| run | backbone | layout | engine | train data | mAP@.5 | mAP@[.5,.95] "
              "| rel. @.5 | rel. @[.5,.95] | paper mAP@.5 | paper mAP@[.5,.95] |",
              "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        ap50, ap = r.ap(dataset, "AP50"), r.ap(dataset, "AP")
        cells = [os.path.basename(r.path.rstrip("/")), pretty_arch(r.arch), r.setting, r.engine,
                 "+".join(r.train_datasets) or "–", _f(ap50), _f(ap),
                 "(base)" if r is base else _rel(ap50, base.ap(dataset, "AP50")),
                 "(base)" if r is base else _rel(ap, base.ap(dataset, "AP")),
                 _f(paper_value(dataset, r.arch, r.setting, "AP50")),
                 _f(paper_value(dataset, r.arch, r.setting, "AP"))]
        lines.append("| " + " | ".join(cells) + " |")
    paper_rel = _paper_relative(runs, dataset)
    if paper_rel:
        lines += ["", paper_rel]
    return lines + [""]


def _paper_relative(runs: Sequence[Run], dataset: str) -> str:
    """The paper's own relative improvement for the same pair of backbones, when it has both."""
    if len(runs) < 2:
        return ""
    a, b = runs[0], runs[1]
    parts = []
    for k, shown in METRICS:
        pa = paper_value(dataset, a.arch, a.setting, k)
        pb = paper_value(dataset, b.arch, b.setting, k)
        if pa is not None and pb is not None and a.arch != b.arch:
            parts.append(f"{shown} {pa:.1f} -> {pb:.1f} ({_rel(pb, pa)})")
    if not parts:
        return ""
    return (f"The paper, {pretty_arch(a.arch)} -> {pretty_arch(b.arch)} on this set: "
            + "; ".join(parts) + ".")


def runs_table(runs: Sequence[Run]) -> List[str]:
    """Markdown table lines: per run its backbone, layout, engine, iterations, final total loss
    and median seconds per iteration.
    """
    lines = ["| run | backbone | layout | engine | iterations | final total loss "
             "| s/iter (median) |", "|---|---|---|---|---:|---:|---:|"]
    for r in runs:
        _, loss = r.loss_curve()
        lines.append(f"| {r.path} | {pretty_arch(r.arch)} | {r.setting} | {r.engine} | "
                     f"{r.last_iteration() or '–'} | {_f(loss[-1] if loss else None, '.4f')} | "
                     f"{_f(r.seconds_per_iter(), '.3f')} |")
    return lines


def compare_backbones(run_dirs: Sequence[str], out_dir: str) -> Dict[str, object]:
    """Write ``out_dir/report.md`` and the charts for ``run_dirs`` (the first is the baseline).

    Returns:
        ``{"report": path, "charts": [paths], "runs": [Run], "datasets": [names]}``.

    Raises:
        UserError: no runs, or a run directory with a missing or broken file (named).
    """
    if not run_dirs:
        raise UserError("Give at least one RUN_DIR (a training run's OUTPUT_DIR).")
    runs = [read_run(d) for d in run_dirs]
    datasets = datasets_of(runs)
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out {out_dir} cannot be created ({e.strerror}); pass a writable "
                        "folder.") from None
    charts = write_charts(runs, datasets, out_dir)
    lines = [
        "# Backbone comparison (the paper's Tables 7 and 8)", "",
        f"Generated {datetime.date.today().isoformat()} by `tools/compare_backbones.py` from "
        f"{len(runs)} run(s); relative improvements are over the first run "
        f"({runs[0].label}). AP in percent.", "",
        "## Detection results", "",
    ]
    if not datasets:
        lines += ["No run has evaluation results.", ""]
    for d in datasets:
        lines += dataset_table(runs, d)
    lines += ["## Runs", ""] + runs_table(runs) + ["", "## Charts", ""]
    lines += [f"![{os.path.splitext(os.path.basename(c))[0]}]({os.path.basename(c)})"
              for c in charts]
    report = os.path.join(out_dir, "report.md")
    with open(report, "w") as f:
        f.write("\n".join(lines) + "\n")
    return {"report": report, "charts": charts, "runs": runs, "datasets": datasets}
