"""``run_benchmark(settings)``: one task measured for resdet and, optionally, its reference.

The result is a JSON-able dict with at least ``ours``, ``reference`` and ``ratio`` (ours /
reference seconds per iteration, the median of the per-round ratios; < 1 means resdet is faster),
plus ``task``, ``device`` and ``settings``.
"""

from __future__ import annotations

import datetime
import platform
from typing import Dict, List

import torch

from resdet.benchmark.settings import BenchSettings, check_settings
from resdet.benchmark.timing import compare, run_alternating
from resdet.errors import UserError


def device_description(device: str) -> str:
    """The GPU's name, or the CPU model and the number of threads torch uses."""
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name}, {torch.get_num_threads()} torch threads"


def _eval_benchmark(s: BenchSettings) -> Dict[str, object]:
    if s.reference not in (None, "pycocotools"):
        raise UserError(f"--task eval compares against pycocotools, not {s.reference}.")
    try:
        from resdet.evaluation.bench import benchmark_coco_eval
    except ImportError as e:
        raise UserError(f"The eval benchmark needs resdet.evaluation.bench, which is not "
                        f"available ({e}).") from None
    r = benchmark_coco_eval(num_images=s.eval_images, repeats=s.iters)

    def side(name: str, sec: float) -> dict:
        return {"name": name, "sec_per_iter": sec, "images_per_sec": s.eval_images / sec,
                "images_per_iter": s.eval_images, "iters": s.iters, "peak_memory_mb": None,
                "memory_method": "not measured (separate processes)"}

    return {"ours": side("tools/evaluate.py (whole process)", r["ours"]),
            "reference": side("pycocotools script (whole process)", r["reference"]),
            "ratio": r["ratio"], "speedup": r["speedup"], "identical": r["identical"],
            "max_abs_diff": r.get("max_abs_diff"),
            "ratio_kind": "fastest of the runs of each, whole process",
            "num_detections": r["num_detections"], "metrics": r.get("metrics")}


def _data_scale_benchmark(s: BenchSettings) -> Dict[str, object]:
    if s.reference not in (None, "detectron2"):
        raise UserError(f"--task data-scale compares against Detectron2's structures (when it "
                        f"imports), not {s.reference}.")
    from resdet.benchmark.data_scale import data_scale_benchmark

    r = data_scale_benchmark(s.scale, s.num_workers, parts=s.parts,
                             with_detectron2=True if s.reference == "detectron2" else None)

    def side(name: str, key: str) -> dict:
        load = r["coco_load"].get("resdet_first" if key == "resdet" else key, {})
        growth = {d: max(v[key]["growth_mib"]) for d, v in r["worker_growth"].items()}
        return {"name": name, "coco_load_s": load.get("seconds"),
                "coco_load_peak_mib": load.get("peak_mib"),
                "records_mib": r["records_mib"].get(key, {}).get("mib"),
                "worker_growth_max_mib": growth}

    ours = side("resdet (compact records, lean parse, cache)", "resdet")
    ours["coco_cached_load_s"] = r["coco_load"].get("resdet_cached", {}).get("seconds")
    ref = side("Detectron2 (serialised list, load_coco_json)", "detectron2") \
        if r["detectron2"] else None
    ratio = None
    if ref and ours["coco_load_s"] and ref["coco_load_s"]:
        ratio = ours["coco_load_s"] / ref["coco_load_s"]
    r.update(ours=ours, reference=ref, ratio=ratio,
             ratio_kind="COCO annotation load seconds, first run, resdet / Detectron2")
    return r


def _timed_benchmark(s: BenchSettings) -> Dict[str, object]:
    if s.arch:
        from resdet.benchmark.backbone import classifier_runners

        runners = classifier_runners(s, s.reference)
    else:
        from resdet.benchmark.detection import detection_runners

        runners = detection_runners(s)
    ms = run_alternating(runners, warmup=s.warmup, iters=s.iters)
    out: Dict[str, object] = {"ours": ms[0].summary(), "reference": None, "ratio": None}
    if len(ms) > 1:
        out["reference"] = ms[1].summary()
        out.update(compare(ms[0], ms[1]))
        out["ratio_kind"] = "median of per-round ratios ours/reference (s/iter)"
    return out


def run_benchmark(s: BenchSettings) -> Dict[str, object]:
    """Measure ``s.task``; see the module docstring for the result's keys."""
    s = check_settings(s)
    if s.task == "eval":
        result = _eval_benchmark(s)
    elif s.task == "data-scale":
        result = _data_scale_benchmark(s)
    elif s.task == "data":
        from resdet.benchmark.data import data_benchmark

        result = data_benchmark(s)
    else:
        result = _timed_benchmark(s)
    head = {"task": s.task, "device": s.device, "device_name": device_description(s.device),
            "torch": torch.__version__, "date": datetime.date.today().isoformat(),
            "settings": s.as_dict()}
    head.update(result)
    return head


def _fmt(v, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def format_report(r: Dict[str, object]) -> str:
    """A short human-readable table of a :func:`run_benchmark` result."""
    if r["task"] == "data-scale":
        from resdet.benchmark.data_scale import format_data_scale

        return format_data_scale(r)
    st = r["settings"]
    flags = [k for k in ("amp", "channels_last", "compile", "stride_in_3x3") if st[k]]
    if r["task"] == "eval":
        what = (f"COCO results file, {st['eval_images']} images, {r.get('num_detections')} "
                f"detections | runs {st['iters']}")
    else:
        what = (f"{st['arch'] or st['config']} | batch {st['batch']} | iters {st['iters']} "
                f"(+{st['warmup']} warmup)")
    lines: List[str] = [
        f"task {r['task']} | device {r['device']} ({r['device_name']}) | {what}"
        + (f" | {', '.join(flags)}" if flags else ""),
        f"{'':64} {'s/iter':>10} {'images/s':>10} {'peak MiB':>10}",
    ]
    for side in ("ours", "reference"):
        m = r.get(side)
        if m:
            lines.append(f"{m['name'][:64]:64} {_fmt(m['sec_per_iter'], '10.4f')} "
                         f"{_fmt(m['images_per_sec'], '10.2f')} "
                         f"{_fmt(m['peak_memory_mb'], '10.1f')}")
    if r.get("ratio") is not None:
        lines.append(f"ratio {r['ratio']:.3f} ({r.get('ratio_kind', '')})")
    if "together" in r:
        t = r["together"]
        lines.append(f"training fed by the loader: {t['sec_per_iter']:.4f} s/iter, "
                     f"{100 * t['data_wait_fraction']:.1f}% of it waiting for data")
    if "identical" in r:
        diff = r.get("max_abs_diff")
        lines.append(f"identical numbers: {r['identical']}"
                     + ("" if diff is None else f" (largest difference {diff:.3g})")
                     + f"; speedup {r['speedup']:.2f}x")
    mem = (r.get("ours") or {}).get("memory_method")
    if mem:
        lines.append(f"memory: {mem}")
    return "\n".join(lines)
