"""The self-check as one call: the environment table, then the smoke items (or the bench rows),
printed as they finish, optionally written as JSON; the exit status says whether anything failed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import List, Optional, Sequence

from resdet.selfcheck.environment import Finding, collect_environment

_MARK = {"ok": "ok", "info": "--", "warn": "WARN", "fail": "FAIL",
         "passed": "ok", "skipped": "--", "failed": "FAIL"}


def repo_root() -> str:
    """The source checkout resdet runs from (``tools/`` and ``configs/`` live there)."""
    import resdet

    return os.path.dirname(os.path.dirname(os.path.abspath(resdet.__file__)))


def _print_finding(f: Finding) -> None:
    line = f"  {_MARK[f.status]:4} {f.name:26} {f.value}"
    print(line + (f"\n{'':33}-> {f.advice}" if f.advice and f.status != "ok" else ""),
          flush=True)


def run_selfcheck(mode: str = "smoke", json_path: Optional[str] = None,
                  only: Optional[Sequence[str]] = None, extra_opts: Sequence[str] = (),
                  work_dir: Optional[str] = None, device: Optional[str] = None,
                  timeout: float = 600.0) -> int:
    """Check this installation.

    Args:
        mode: "quick" (CPU-sized smoke, what CI runs), "smoke" (the full smoke on the device
            found) or "bench" (the GPU benchmark rows).
        json_path: also write every result to this file.
        only: run just these smoke items.
        extra_opts: ``KEY VALUE`` config overrides added to every training command.
        work_dir: keep the items' runs here (default: a temporary folder, removed when nothing
            failed).
        device: "cuda" or "cpu" (default: cuda when a GPU is visible).
        timeout: seconds one command may run.

    Returns:
        the exit status: 0 when nothing failed, 1 otherwise.
    """
    import torch

    from resdet.selfcheck.bench import run_bench
    from resdet.selfcheck.smoke import FAILED, Context, check_item_names, run_items

    check_item_names(only or ())

    print("Environment", flush=True)
    findings = collect_environment()
    for f in findings:
        _print_finding(f)
    has_d2 = any(f.name == "Detectron2" and f.status == "ok" for f in findings)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    num_gpus = torch.cuda.device_count() if device == "cuda" else 0
    gpu_name = torch.cuda.get_device_name(0) if num_gpus else ""
    report = {"mode": mode, "device": device, "environment": [f.as_dict() for f in findings]}

    def show(r) -> None:
        status = r.status
        extra = (f"{r.images_per_sec:.1f} img/s, ratio {r.ratio:.3f}"
                 if getattr(r, "ratio", None) is not None else "")
        print(f"  {_MARK[status]:4} {r.name:30} {getattr(r, 'seconds', '') or '':>6}"
              f"{'s' if getattr(r, 'seconds', None) else ''} {extra or r.detail}", flush=True)

    keep = work_dir is not None
    work = os.path.abspath(work_dir) if keep else tempfile.mkdtemp(prefix="resdet-selfcheck-")
    failed = sum(f.status == "fail" for f in findings)
    try:
        if mode == "bench":
            print(f"\nBenchmarks ({gpu_name or 'no GPU'})", flush=True)
            rows = run_bench(repo_root(), device, has_d2, gpu_name, timeout=timeout,
                             on_result=show)
            report["bench"] = [r.as_dict() for r in rows]
            failed += sum(r.status == FAILED for r in rows)
        else:
            print(f"\nSmoke ({'quick, ' if mode == 'quick' else ''}{device}"
                  f"{', ' + gpu_name if gpu_name else ''}; runs in {work})", flush=True)
            ctx = Context(repo=repo_root(), work_dir=work,
                          datasets_dir=os.path.join(work, "datasets"), device=device,
                          num_gpus=num_gpus, quick=mode == "quick", has_detectron2=has_d2,
                          extra_opts=tuple(extra_opts), timeout=timeout)
            results = run_items(ctx, only=only, on_result=show)
            report["smoke"] = [r.as_dict() for r in results]
            failed += sum(r.status == FAILED for r in results)
    finally:
        if not keep and not failed:
            shutil.rmtree(work, ignore_errors=True)
    report["failed"] = failed
    print(f"\n{'All checks passed' if not failed else f'{failed} check(s) failed'}"
          + (f"; the runs and logs are in {work}" if failed or keep else "") + ".", flush=True)
    if json_path:
        _write_json(json_path, report)
        print(f"Wrote {json_path}.", flush=True)
    return 1 if failed else 0


def _write_json(path: str, report: dict) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=1, allow_nan=False, default=str)
        f.write("\n")


def split_opts(opts: List[str]) -> List[str]:
    """``KEY VALUE`` pairs from the command line, checked to come in pairs.

    Raises:
        ValueError: an odd number of words.
    """
    if len(opts) % 2:
        raise ValueError(f"--opts takes KEY VALUE pairs; {opts[-1]!r} has no value")
    return list(opts)
