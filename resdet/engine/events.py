"""Run-directory outputs shared by every resdet engine: log.txt, metrics.json, eval_results.json,
and TensorBoard event files (when ``tensorboard`` is installed)."""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from typing import Any, Dict, List, Optional

from resdet.engine import comm
from resdet.checkpoint.atomic import atomic_write_bytes
from resdet.errors import UserError
from resdet.evaluation.coco_evaluation import null_nonfinite

METRICS_FILE = "metrics.json"
EVAL_RESULTS_FILE = "eval_results.json"
_logger = logging.getLogger(__name__)


def setup_logging(output_dir: Optional[str], name: str = "resdet",
                  level: int = logging.INFO) -> logging.Logger:
    """Log to stdout (rank 0) and to ``output_dir/log.txt`` (``log.txt.rankN`` on other ranks).

    Args:
        output_dir: the run directory, or None for console logging only.
        name: the logger configured (its children inherit it).
        level: logging level.

    Returns:
        The configured logger.
    """
    logger = logging.getLogger(name)
    logger.setLevel(level)
    logger.propagate = False
    for h in list(logger.handlers):
        if getattr(h, "_resdet", False):
            logger.removeHandler(h)
            h.close()
    fmt = logging.Formatter("[%(asctime)s %(name)s] %(levelname)s: %(message)s", "%m/%d %H:%M:%S")
    rank = comm.get_rank()
    if rank == 0:
        sh = logging.StreamHandler(sys.stdout)
        sh.setFormatter(fmt)
        sh._resdet = True  # type: ignore[attr-defined]
        logger.addHandler(sh)
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
        fname = "log.txt" if rank == 0 else f"log.txt.rank{rank}"
        fh = logging.FileHandler(os.path.join(output_dir, fname))
        fh.setFormatter(fmt)
        fh._resdet = True  # type: ignore[attr-defined]
        logger.addHandler(fh)
    return logger


def close_log_file(output_dir: str, name: str = "resdet") -> None:
    """Stop logging into ``output_dir``: remove and close the ``log.txt`` handlers that
    :func:`setup_logging` added there (the console handler stays).

    Args:
        output_dir: the run directory.
        name: the logger configured by :func:`setup_logging`.
    """
    logger = logging.getLogger(name)
    folder = os.path.abspath(output_dir)
    for h in list(logger.handlers):
        if (getattr(h, "_resdet", False) and isinstance(h, logging.FileHandler)
                and os.path.dirname(h.baseFilename) == folder):
            logger.removeHandler(h)
            h.close()


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # JSON has no NaN/inf; keep the line parseable
    return v


class MetricsWriter:
    """Appends one JSON object per line to ``output_dir/metrics.json`` (rank 0 only).

    Args:
        output_dir: the run directory.
    """

    def __init__(self, output_dir: str):
        self.path = os.path.join(output_dir, METRICS_FILE)
        self.enabled = comm.is_main_process()
        if self.enabled:
            os.makedirs(output_dir, exist_ok=True)

    def truncate_after(self, iteration: int) -> None:
        """Drop lines with ``iteration`` greater than ``iteration`` (work redone after resume)."""
        if not self.enabled or not os.path.isfile(self.path):
            return
        # read_metrics skips a line cut by SIGKILL
        keep = [json.dumps(rec) for rec in read_metrics(self.path)
                if rec.get("iteration", -1) <= iteration]
        atomic_write_bytes(self.path, ("\n".join(keep) + ("\n" if keep else "")).encode())

    def write(self, record: Dict[str, Any]) -> None:
        """Append ``record`` as one line."""
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")
            f.flush()


def flatten_results(results: Dict[str, Any], prefix: str = "") -> Dict[str, float]:
    """``{"shapes_val": {"bbox": {"AP": 90.1}}}`` -> ``{"shapes_val/bbox/AP": 90.1}`` (numbers
    only), the tag names Detectron2's ``flatten_results_dict`` gives."""
    flat: Dict[str, float] = {}
    for k, v in results.items():
        if isinstance(v, dict):
            flat.update(flatten_results(v, f"{prefix}{k}/"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            flat[f"{prefix}{k}"] = float(v)
    return flat


def rounded(results: Any, digits: int = 2) -> Any:
    """``results`` with every float rounded to ``digits`` decimals, for log lines (percentages
    such as 4.749999999999998 print as 4.75); the files keep full precision."""
    if isinstance(results, dict):
        return {k: rounded(v, digits) for k, v in results.items()}
    if isinstance(results, float) and math.isfinite(results):
        return round(results, digits)
    return results


class TensorboardWriter:
    """Scalars to TensorBoard event files in ``output_dir`` (rank 0), as Detectron2's
    ``TensorboardXWriter`` does, through ``torch.utils.tensorboard.SummaryWriter``.

    Without the ``tensorboard`` package (``pip install resdet[tensorboard]``) it writes nothing
    and says so once. The file is opened on the first write; a resumed run passes
    ``purge_step`` so that TensorBoard drops the steps it redoes.

    Args:
        output_dir: the run directory.
        purge_step: the first iteration of this run (0 for a new run).
    """

    def __init__(self, output_dir: str, purge_step: int = 0):
        self.output_dir = output_dir
        self.purge_step = purge_step
        self.enabled = comm.is_main_process()
        self._writer: Any = None

    def _open(self) -> Any:
        if self._writer is None and self.enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                _logger.info("tensorboard is not installed, so no event files are written "
                             "(pip install tensorboard to get them).")
                self.enabled = False
                return None
            self._writer = SummaryWriter(self.output_dir, purge_step=self.purge_step or None)
        return self._writer

    def write(self, iteration: int, scalars: Dict[str, Any]) -> None:
        """Add every finite number of ``scalars`` (nested dicts flattened with ``/``) at step
        ``iteration``."""
        if not self.enabled:
            return
        writer = self._open()
        if writer is None:
            return
        for tag, value in flatten_results(scalars).items():
            if math.isfinite(value):
                writer.add_scalar(tag, value, iteration)
        writer.flush()

    def close(self) -> None:
        """Close the TensorBoard writer, if one was opened."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def write_eval_results(output_dir: str, results: Dict[str, Any]) -> str:
    """Write ``{dataset: {metric: value}}`` to ``output_dir/eval_results.json`` (rank 0), for
    every engine and pretraining alike; non-finite values become null."""
    path = os.path.join(output_dir, EVAL_RESULTS_FILE)
    if comm.is_main_process():
        os.makedirs(output_dir, exist_ok=True)
        text = json.dumps(null_nonfinite(results), indent=2, allow_nan=False)
        atomic_write_bytes(path, (text + "\n").encode())
    return path


def read_metrics(path: str, *, strict: bool = False) -> List[dict]:
    """Every JSON object of a metrics.json, one per line.

    A cut-off last line (a killed run, or a run still writing) is skipped. A broken line in the
    middle is skipped with a warning, or with ``strict`` raises a one-sentence :class:`UserError`
    naming the line (reports and plots should not draw from a damaged file silently).

    Raises:
        UserError: the file cannot be read, or (``strict``) a line other than the last one is not
            a JSON object.
    """
    try:
        with open(path) as f:
            lines = [ln for ln in f.read().splitlines() if ln.strip()]
    except OSError as e:
        raise UserError(f"{path} cannot be read ({e.strerror}); the run directory needs the "
                        "metrics.json its training wrote.") from None
    out: List[dict] = []
    for i, line in enumerate(lines):
        try:
            rec = json.loads(line)
            what = "is not a JSON object"
        except json.JSONDecodeError:
            rec, what = None, "is not valid JSON"
        if isinstance(rec, dict):
            out.append(rec)
            continue
        if i == len(lines) - 1 and (i > 0 or not strict):
            _logger.warning("%s: the last line is cut off (a killed run?); ignoring it.", path)
            continue
        if strict:
            raise UserError(f"{path} line {i + 1} {what}; metrics.json holds one JSON object per "
                            "line (fix or remove that line).")
        _logger.warning("%s line %d %s; skipping it.", path, i + 1, what)
    return out
