"""``--task data-scale``: memory and start-up time at ImageNet and COCO-train size.

Generates, in a temporary folder, the record lists and annotation file of full-size datasets
(``--scale`` shrinks them: 1.0 = ImageNet train's 1,281,167 class-folder records and COCO
train2017's 118,287 images with 862,789 polygon annotations, a 470 MB instances file; no image
is written) and measures, each in a fresh subprocess so nothing else is in its memory:

1. **Per-worker memory growth** (``worker_*``): the records go into resdet's dataset the way
   training does (pretraining's ``TrainDataset`` for ImageNet, the torchvision engine's compact
   records for COCO), a :class:`~torch.utils.data.DataLoader` with ``--num-workers`` forked
   workers reads ``reads`` random records (1.25 epochs, not decoding images), and each worker's
   private memory (``Private_Clean + Private_Dirty`` of ``/proc/PID/smaps_rollup``) is read
   after its first batch and again at the end; the growth is the copy of the records' pages the
   worker made by reading them. Side by side: the same records as a plain Python list (what
   the loaders held before issue 13), and Detectron2's serialised list
   (``detectron2.data.common.DatasetFromList``) when Detectron2 imports.
2. **Main-process memory of the records** (``records_mib``): resident-set growth of a process
   after building the record list, for the plain list, resdet's compact form (after the list is
   freed and ``malloc_trim``), and Detectron2's serialised list.
3. **Annotation load** (``coco_load``): ``resdet.data.coco.load_coco_json`` with an empty cache
   (first run) and again with the cache it wrote (cached run), and Detectron2's
   ``load_coco_json``: wall time and peak resident set (``VmHWM``) of each, each in its own
   process.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from resdet.errors import UserError

IMAGENET_TRAIN_IMAGES = 1_281_167
IMAGENET_CLASSES = 1000
COCO_TRAIN_IMAGES = 118_287
COCO_TRAIN_ANNOTATIONS = 862_789
READS_PER_RECORD = 1.25  # 1.6M reads of the 1.28M ImageNet records


# ---- generated data -----------------------------------------------------------------------------

def imagenet_records(n: int, root: str = "datasets/imagenet/train") -> List[dict]:
    """``n`` records shaped as ``resdet.data.classification`` lists ImageNet's class folders."""
    per_class = max(1, -(-n // IMAGENET_CLASSES))
    out = []
    for i in range(n):
        label = i // per_class
        wnid = f"n{1440764 + 137 * label:08d}"
        out.append({"file_name": f"{root}/{wnid}/{wnid}_{10026 + 7 * i}.JPEG", "label": label,
                    "image_id": i})
    return out


def write_coco_train(path: str, images: int, annotations: int, seed: int = 0) -> Dict[str, int]:
    """Write a COCO-train-like instances file: COCO's 80 categories, image entries with all of
    train2017's fields, annotations with polygons (1% crowd, with uncompressed RLE), boxes inside
    their images; streamed, so memory stays small.

    Returns:
        ``{"images", "annotations", "bytes"}``.
    """
    from resdet.data.catalog import COCO_CATEGORIES

    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()

    rng = np.random.default_rng(seed)
    image_ids = np.sort(rng.choice(600_000, size=images, replace=False)) + 1
    heights = rng.integers(240, 641, size=images)
    widths = rng.integers(240, 641, size=images)
    owner = np.sort(rng.integers(0, images, size=annotations))
    cat_ids = np.array([c for c, _ in COCO_CATEGORIES])
    with open(path, "wb") as f:
        f.write(b'{"info": {"description": "synthetic COCO-train-sized file", "year": 2017}, '
                b'"licenses": [{"url": "http://creativecommons.org/licenses/by-nc-sa/2.0/", '
                b'"id": 1, "name": "Attribution-NonCommercial-ShareAlike License"}], '
                b'"images": [')
        for start in range(0, images, 20000):
            chunk = [{"license": 1, "file_name": f"{int(i):012d}.jpg",
                      "coco_url": f"http://images.cocodataset.org/train2017/{int(i):012d}.jpg",
                      "height": int(h), "width": int(w), "date_captured": "2013-11-14 11:18:45",
                      "flickr_url": "http://farm4.staticflickr.com/3153/2970773875_164f0c0b83_z"
                                    ".jpg", "id": int(i)}
                     for i, h, w in zip(image_ids[start:start + 20000],
                                        heights[start:start + 20000],
                                        widths[start:start + 20000])]
            f.write((b"," if start else b"") + dumps(chunk)[1:-1])
        f.write(b'], "annotations": [')
        for start in range(0, annotations, 20000):
            idx = owner[start:start + 20000]
            n = len(idx)
            h, w = heights[idx].astype(float), widths[idx].astype(float)
            bw = np.round(rng.uniform(0.02, 0.6, n) * w, 2)
            bh = np.round(rng.uniform(0.02, 0.6, n) * h, 2)
            x0 = np.round(rng.uniform(0, 1, n) * (w - bw), 2)
            y0 = np.round(rng.uniform(0, 1, n) * (h - bh), 2)
            crowd = rng.random(n) < 0.01
            lengths = rng.integers(4, 45, size=n) * 2
            chunk = []
            for k in range(n):
                if crowd[k]:
                    seg: Any = {"counts": rng.integers(0, 400, size=int(lengths[k])).tolist(),
                                "size": [int(h[k]), int(w[k])]}
                else:
                    m = int(lengths[k]) // 2
                    pts = np.stack([x0[k] + rng.uniform(0, bw[k], m),
                                    y0[k] + rng.uniform(0, bh[k], m)], axis=1)
                    seg = [np.round(pts, 2).ravel().tolist()]
                chunk.append({"segmentation": seg, "area": round(float(bw[k] * bh[k]) * 0.6, 4),
                              "iscrowd": int(crowd[k]), "image_id": int(image_ids[idx[k]]),
                              "bbox": [float(x0[k]), float(y0[k]), float(bw[k]), float(bh[k])],
                              "category_id": int(cat_ids[rng.integers(len(cat_ids))]),
                              "id": start + k + 1})
            f.write((b"," if start else b"") + dumps(chunk)[1:-1])
        f.write(b'], "categories": ' + dumps(
            [{"supercategory": "thing", "id": c, "name": nm} for c, nm in COCO_CATEGORIES])
            + b"}")
    return {"images": images, "annotations": annotations, "bytes": os.path.getsize(path)}


# ---- measurements, each in a fresh subprocess ---------------------------------------------

def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def private_mib(pid: int) -> float:
    """Private memory of process ``pid`` (``Private_Clean + Private_Dirty`` of smaps_rollup)."""
    total = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total / 1024


def _trim() -> None:
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _coco_records(json_file: str) -> List[dict]:
    from resdet.data.catalog import COCO_CATEGORIES
    from resdet.data.coco import load_coco_json

    ids = {c: k for k, (c, _) in enumerate(COCO_CATEGORIES)}
    return load_coco_json(json_file, os.path.join(os.path.dirname(json_file), "train2017"),
                          id_map=ids)[0]


def _storage(store: str):
    """The function that stores records as each side keeps them for its loader workers
    (imported here, before any memory baseline is taken)."""
    if store == "list":
        return lambda records: records
    if store == "resdet":
        from resdet.data.records import compact_records

        return compact_records
    from detectron2.data.common import DatasetFromList

    return lambda records: DatasetFromList(records, copy=False, serialize=True)


class _Reader:
    """Touches a record as a training mapper does (its path, label or boxes), without images."""

    def __init__(self, store):
        self.store = store

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, i: int) -> int:
        r = self.store[i]
        n = len(r["file_name"]) + r.get("label", 0)
        for a in r.get("annotations", ()):
            n += len(a["bbox"]) + a["category_id"]
        return n


def _child_workers(p: Dict[str, Any]) -> Dict[str, Any]:
    import torch
    from torch.utils.data import DataLoader, RandomSampler

    storage = _storage(p["store"])
    records = (imagenet_records(p["n"]) if p["dataset"] == "imagenet"
               else _coco_records(p["json_file"]))
    store = storage(records)
    if p["store"] != "list":
        del records
    _trim()
    ds = _Reader(store)
    batch = 512
    batches = max(1, p["reads"] // batch)
    sampler = RandomSampler(range(len(ds)), replacement=True, num_samples=batches * batch,
                            generator=torch.Generator().manual_seed(0))
    loader = DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=p["workers"],
                        multiprocessing_context="fork", prefetch_factor=2)
    it = iter(loader)
    t = time.perf_counter()
    next(it)
    pids = [w.pid for w in it._workers]  # the worker processes, alive until `it` is dropped
    before = [private_mib(pid) for pid in pids]
    for _ in range(batches - 1):
        next(it)
    after = [private_mib(pid) for pid in pids]  # every read done; workers idle, still alive
    seconds = time.perf_counter() - t
    del it
    return {"growth_mib": [round(a - b, 2) for a, b in zip(after, before)],
            "reads": batches * batch, "records": len(ds), "seconds": round(seconds, 2)}


def _child_records(p: Dict[str, Any]) -> Dict[str, Any]:
    storage = _storage(p["store"])
    _trim()
    base = _status_kib("VmRSS")
    records = imagenet_records(p["n"])
    store = storage(records)
    if p["store"] != "list":
        del records
    _trim()
    out = {"mib": round((_status_kib("VmRSS") - base) / 1024, 1)}
    if hasattr(store, "nbytes"):
        out["nbytes_mib"] = round(store.nbytes() / 2 ** 20, 1)
    elif p["store"] == "detectron2":
        lst = store._lst
        out["nbytes_mib"] = round((lst._lst.numel() + lst._addr.numel() * 8) / 2 ** 20, 1)
    return out


def _child_load(p: Dict[str, Any]) -> Dict[str, Any]:
    if p["impl"] == "detectron2":
        from detectron2.data.datasets.coco import load_coco_json as d2_load

        def load():
            return d2_load(p["json_file"], os.path.dirname(p["json_file"]))
    else:
        import resdet.data.coco  # noqa: F401  (imported before the baseline, as Detectron2's)

        def load():
            return _coco_records(p["json_file"])
    _trim()
    try:  # reset the peak resident set to the current one
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    base = _status_kib("VmRSS")
    t = time.perf_counter()
    dicts = load()
    seconds = time.perf_counter() - t
    peak = _status_kib("VmHWM")
    return {"seconds": round(seconds, 4), "peak_mib": round(peak / 1024, 1),
            "peak_growth_mib": round((peak - base) / 1024, 1), "images": len(dicts),
            "annotations": sum(len(d["annotations"]) for d in dicts)}


_CHILDREN = {"workers": _child_workers, "records": _child_records, "load": _child_load}


def _run_child(kind: str, params: Dict[str, Any], cache: str) -> Dict[str, Any]:
    env = dict(os.environ, RESDET_CACHE_DIR=cache, OMP_NUM_THREADS="1")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
    out = subprocess.run([sys.executable, "-m", "resdet.benchmark.data_scale", kind,
                          json.dumps(params)], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"data-scale {kind} {params} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def detectron2_available() -> bool:
    """True when Detectron2's data package imports (in a subprocess: it is heavy)."""
    out = subprocess.run([sys.executable, "-c", "import detectron2.data.common"],
                         capture_output=True)
    return out.returncode == 0


# ---- the task ----------------------------------------------------------------------------------

GOALS = {  # issue 13, at --scale 1
    "worker_growth_imagenet_mib": 5.0,
    "worker_growth_coco_mib": 5.0,
    "records_imagenet_mib": 250.0,
    "coco_first_load_vs_detectron2": 0.5,
    "coco_first_peak_vs_detectron2": 1.0,
    "coco_cached_load_s": 5.0,
}


PARTS = ("load", "records", "workers")


def data_scale_benchmark(scale: float = 1.0, workers: int = 2, *,
                         with_detectron2: Optional[bool] = None,
                         parts: Sequence[str] = PARTS,
                         folder: Optional[str] = None) -> Dict[str, Any]:
    """Run every measurement of the module docstring; returns the JSON-able result.

    Args:
        scale: dataset size as a fraction of ImageNet train / COCO train2017.
        workers: loader workers in the memory-growth runs.
        with_detectron2: measure Detectron2's side too (default: when it imports).
        parts: which measurements: "load" (COCO annotation load), "records" (main-process
            memory of the ImageNet records), "workers" (per-worker growth; loads the COCO
            records through resdet's cache).
        folder: where the temporary folder goes (default: the system's temporary folder).

    Raises:
        UserError: a scale outside (0, 1], an unknown part, or fewer than 1 worker.
    """
    if not 0 < scale <= 1:
        raise UserError(f"--scale must be in (0, 1] (a fraction of ImageNet/COCO-train size), "
                        f"got {scale}.")
    unknown = sorted(set(parts) - set(PARTS))
    if unknown or not parts:
        raise UserError(f"--parts {', '.join(unknown) or '(none)'}: choose from "
                        f"{', '.join(PARTS)}.")
    if workers < 1:
        raise UserError(f"--num-workers must be at least 1 for --task data-scale (got {workers}).")
    d2 = detectron2_available() if with_detectron2 is None else with_detectron2
    stores = ["list", "resdet"] + (["detectron2"] if d2 else [])
    n_imagenet = max(IMAGENET_CLASSES, round(IMAGENET_TRAIN_IMAGES * scale))
    n_images = max(10, round(COCO_TRAIN_IMAGES * scale))
    n_anns = max(10, round(COCO_TRAIN_ANNOTATIONS * scale))
    tmp = tempfile.mkdtemp(prefix="resdet-data-scale-", dir=folder)
    try:
        cache = os.path.join(tmp, "cache")
        json_file = os.path.join(tmp, "coco", "annotations", "instances_train2017.json")
        os.makedirs(os.path.dirname(json_file))
        t = time.perf_counter()
        written = write_coco_train(json_file, n_images, n_anns)
        gen_s = time.perf_counter() - t
        load: Dict[str, Any] = {}
        if "load" in parts or "workers" in parts:  # the workers read the records it caches
            for side in ("resdet_first", "resdet_cached"):
                load[side] = _run_child("load", {"impl": "resdet", "json_file": json_file},
                                        cache)
        if d2 and "load" in parts:
            load["detectron2"] = _run_child("load", {"impl": "detectron2",
                                                     "json_file": json_file}, cache)
        records = {s: _run_child("records", {"n": n_imagenet, "store": s}, cache)
                   for s in stores} if "records" in parts else {}
        growth: Dict[str, Dict[str, Any]] = {}
        for dataset, n in (("imagenet", n_imagenet), ("coco", n_images)):
            if "workers" not in parts:
                break
            growth[dataset] = {
                s: _run_child("workers", {"dataset": dataset, "store": s, "n": n,
                                          "json_file": json_file, "workers": workers,
                                          "reads": int(READS_PER_RECORD * n)}, cache)
                for s in stores}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result: Dict[str, Any] = {
        "scale": scale, "workers": workers, "generate_s": round(gen_s, 1),
        "imagenet_records": n_imagenet, "coco_file": written,
        "parts": list(parts), "detectron2": d2,
        "coco_load": load, "records_mib": records, "worker_growth": growth,
    }
    result["goals"] = _goals(result) if scale == 1 else None
    return result


def _goals(r: Dict[str, Any]) -> Dict[str, Any]:
    load, g, rec = r["coco_load"], r["worker_growth"], r["records_mib"]
    values = {}
    if g:
        values["worker_growth_imagenet_mib"] = max(g["imagenet"]["resdet"]["growth_mib"])
        values["worker_growth_coco_mib"] = max(g["coco"]["resdet"]["growth_mib"])
    if rec:
        values["records_imagenet_mib"] = rec["resdet"]["mib"]
    if load:
        values["coco_cached_load_s"] = load["resdet_cached"]["seconds"]
    if "detectron2" in load:
        values["coco_first_load_vs_detectron2"] = round(
            load["resdet_first"]["seconds"] / load["detectron2"]["seconds"], 3)
        values["coco_first_peak_vs_detectron2"] = round(
            load["resdet_first"]["peak_mib"] / load["detectron2"]["peak_mib"], 3)
    return {k: {"value": v, "bound": GOALS[k], "met": v <= GOALS[k]} for k, v in values.items()}


def format_data_scale(r: Dict[str, Any]) -> str:
    """The human-readable table of a ``data-scale`` result."""
    lines = [f"task data-scale | scale {r['scale']} | {r['imagenet_records']} ImageNet records, "
             f"COCO file {r['coco_file']['images']} images / {r['coco_file']['annotations']} "
             f"annotations ({r['coco_file']['bytes'] / 1e6:.0f} MB) | {r['workers']} workers"]
    if r["coco_load"]:
        lines.append("COCO annotation load           seconds   peak MiB  peak growth MiB")
    for k, v in r["coco_load"].items():
        lines.append(f"  {k:28} {v['seconds']:8.2f} {v['peak_mib']:10.1f} "
                     f"{v['peak_growth_mib']:16.1f}")
    if r["records_mib"]:
        lines.append("ImageNet records in the main process (MiB RSS, bytes held)")
    for k, v in r["records_mib"].items():
        lines.append(f"  {k:28} {v['mib']:8.1f} {v.get('nbytes_mib', float('nan')):10.1f}")
    if r["worker_growth"]:
        lines.append("per-worker private memory growth (MiB) after 1.25 epochs of random reads")
    for dataset, sides in r["worker_growth"].items():
        for k, v in sides.items():
            lines.append(f"  {dataset:8} {k:19} {', '.join(f'{x:.1f}' for x in v['growth_mib'])}"
                         f"  ({v['reads']} reads, {v['seconds']:.1f} s)")
    for k, v in (r.get("goals") or {}).items():
        lines.append(f"goal {k}: {v['value']} <= {v['bound']}: {'met' if v['met'] else 'NOT met'}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(json.dumps(_CHILDREN[sys.argv[1]](json.loads(sys.argv[2]))))
