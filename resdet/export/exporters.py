"""TorchScript, ONNX and ``torch.export`` exporters, each checked against the eager model.

Each exporter writes one file, loads it back with its own runtime (``torch.jit.load``,
onnxruntime, ``torch.export.load``), runs it on the sample input and compares the outputs with
the eager model's (``torch.testing.assert_close``), as Detectron2's ``export_model.py`` checks its
exports by running them.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import os
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from resdet.errors import UserError
from resdet.export.load import Exportable

logger = logging.getLogger(__name__)

# ONNX Runtime's kernels differ from PyTorch's in the last bits (float32).
ONNX_TOLERANCE = {"rtol": 1e-4, "atol": 1e-3}


@dataclass
class ExportResult:
    """One format's outcome."""

    format: str
    path: Optional[str] = None  # the file written (None when skipped)
    max_abs_diff: Optional[float] = None  # largest |exported - eager| over all outputs
    skipped: Optional[str] = None  # why this format was not written (a sentence)


def _as_tuple(out) -> Tuple[Tensor, ...]:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


@contextlib.contextmanager
def _quiet():
    # TorchScript's deprecation notice and the tracer's notes about Python values: expected here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _torchscript(exp: Exportable, path: str) -> Tuple[Tensor, ...]:
    with _quiet(), torch.no_grad():
        traced = torch.jit.trace(exp.module, exp.sample, check_trace=False)
        traced.save(path)
        loaded = torch.jit.load(path)
        return _as_tuple(loaded(*exp.sample))


def _onnx(exp: Exportable, path: str) -> Tuple[Tensor, ...]:
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError:
        raise ModuleNotFoundError("onnx and onnxruntime are not installed (pip install "
                                  "'resdet[export]')") from None
    kwargs = {}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False  # the TorchScript-based exporter handles torchvision's ops
    with _quiet(), torch.no_grad():
        torch.onnx.export(exp.module, exp.sample, path, input_names=exp.input_names,
                          output_names=exp.output_names, opset_version=17, **kwargs)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    feeds = {name: t.numpy() for name, t in zip(exp.input_names, exp.sample)}
    return tuple(torch.from_numpy(a) for a in session.run(None, feeds))


@contextlib.contextmanager
def _torch_logs_quiet():
    # Where torch.export fails, torch prints the whole traced graph; the reason is reported instead.
    torch_logger = logging.getLogger("torch")
    level = torch_logger.level
    torch_logger.setLevel(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        torch_logger.setLevel(level)


def _torch_export(exp: Exportable, path: str) -> Tuple[Tensor, ...]:
    with torch.no_grad(), _torch_logs_quiet():
        program = torch.export.export(exp.module, exp.sample)
    torch.export.save(program, path)
    loaded = torch.export.load(path).module()
    with torch.no_grad():
        return _as_tuple(loaded(*exp.sample))


# format -> (file suffix, exporter, whether failing to export is an error)
EXPORTERS: Dict[str, Tuple[str, Callable[[Exportable, str], Tuple[Tensor, ...]], bool]] = {
    "torchscript": (".ts", _torchscript, True),
    "onnx": (".onnx", _onnx, True),
    # torch.export cannot follow every data-dependent branch of a detector: where it fails, the
    # format is skipped with the reason, as "torch.export where it works".
    "torch_export": (".pt2", _torch_export, False),
}


def _compare(fmt: str, got: Sequence[Tensor], want: Sequence[Tensor]) -> float:
    if len(got) != len(want):
        raise UserError(f"The {fmt} export returns {len(got)} outputs but the eager model "
                        f"{len(want)}.")
    tol = ONNX_TOLERANCE if fmt == "onnx" else {}
    diff = 0.0
    for g, w in zip(got, want):
        g = g.to(w.dtype) if g.dtype != w.dtype and not w.is_floating_point() else g
        try:
            torch.testing.assert_close(g, w, **tol)
        except AssertionError as e:
            first = str(e).strip().splitlines()[0]
            raise UserError(f"The {fmt} export's outputs differ from the eager model's on the "
                            f"sample image ({first}); do not use this export.") from None
        if w.numel():
            diff = max(diff, float((g.double() - w.double()).abs().max()))
    return diff


def export_and_check(exp: Exportable, output_dir: str, formats: Sequence[str],
                     name: str = "model") -> List[ExportResult]:
    """Write ``output_dir/<name><suffix>`` for each format and check it on the sample.

    Args:
        exp: from :func:`resdet.export.load_exportable`.
        output_dir: created if needed.
        formats: names from :data:`EXPORTERS`.
        name: the file stem.

    Returns:
        One :class:`ExportResult` per format, in order.

    Raises:
        UserError: an unknown format, a TorchScript or ONNX export that fails, or an export
            whose outputs differ from the eager model's.
    """
    unknown = [f for f in formats if f not in EXPORTERS]
    if unknown:
        raise UserError(f"Unknown export format {unknown[0]!r}; use one of "
                        f"{', '.join(EXPORTERS)}.")
    os.makedirs(output_dir, exist_ok=True)
    with torch.no_grad():
        eager = _as_tuple(exp.module(*exp.sample))
    results = []
    for fmt in formats:
        suffix, export, required = EXPORTERS[fmt]
        path = os.path.join(output_dir, name + suffix)
        try:
            got = export(exp, path)
        except ModuleNotFoundError as e:
            results.append(ExportResult(fmt, skipped=f"{fmt} skipped: {e}."))
            continue
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - the exporters' errors are many and deep
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            if required:
                raise UserError(f"The {exp.kind} could not be exported to {fmt} "
                                f"({type(e).__name__}: {first}).") from e
            if os.path.exists(path):
                os.unlink(path)
            results.append(ExportResult(fmt, skipped=f"{fmt} does not work for this "
                                        f"{exp.kind} ({type(e).__name__}: {first})."))
            continue
        diff = _compare(fmt, got, eager)
        results.append(ExportResult(fmt, path=path, max_abs_diff=diff))
        logger.info("Wrote %s; its outputs match the eager model's on %s (max |diff| %.3g).",
                    path, exp.sample_source, diff)
    return results
