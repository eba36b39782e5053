"""Whole-process timing of ``tools/evaluate.py`` against a plain pycocotools script.

``benchmark_coco_eval()`` writes a synthetic COCO val2017-sized ground truth (5000 images, ~7.3
boxes each, the 80 COCO category ids, a polygon per box) and results file under a temporary
``$DETECTRON2_DATASETS`` (as ``coco_2017_val``), then runs each evaluator as its own process (the
interpreter start, imports, JSON parsing and evaluation all count, as a user waits for them) and
checks that both report the same numbers. ``tools/benchmark.py --task eval`` calls it.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from typing import Dict, Optional

import numpy as np

_REFERENCE_SCRIPT = r"""
import json, sys
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
gt = COCO(sys.argv[1])
dt = gt.loadRes(sys.argv[2])
E = COCOeval(gt, dt, "bbox")
E.evaluate()
E.accumulate()
E.summarize()
keys = ["AP", "AP50", "AP75", "APs", "APm", "APl"]
print(json.dumps({k: float(E.stats[i] * 100) if E.stats[i] >= 0 else None
                 for i, k in enumerate(keys)}))
"""

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_synthetic_coco(root: str, num_images: int = 5000, anns_per_image: float = 7.3,
                        dets_per_image: int = 50, seed: int = 0) -> Dict[str, str]:
    """Write ``root/coco/annotations/instances_val2017.json`` (and an empty ``val2017/``) plus
    ``root/results.json``; returns their paths."""
    from resdet.data.catalog import COCO_CATEGORIES

    rng = np.random.default_rng(seed)
    cat_ids = np.array([c for c, _ in COCO_CATEGORIES])
    images, anns, results = [], [], []
    for img_id in range(1, num_images + 1):
        w, h = int(rng.choice([640, 480, 500, 427])), int(rng.choice([480, 640, 375, 427]))
        images.append({"id": img_id, "file_name": f"{img_id:012d}.jpg", "width": w, "height": h,
                       "license": 1, "coco_url": "", "date_captured": ""})
        n_gt = int(rng.poisson(anns_per_image))
        gts = []
        for _ in range(n_gt):
            # log-uniform area: small, medium and large objects as in COCO
            side = math.exp(rng.uniform(math.log(6), math.log(min(w, h) * 0.9)))
            bw, bh = side * rng.uniform(0.6, 1.4), side * rng.uniform(0.6, 1.4)
            bw, bh = min(bw, w - 1), min(bh, h - 1)
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            cat = int(rng.choice(cat_ids))
            t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
            poly = np.stack([x + bw / 2 * (1 + np.cos(t)), y + bh / 2 * (1 + np.sin(t))], 1)
            anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": cat,
                         "bbox": [round(x, 2), round(y, 2), round(bw, 2), round(bh, 2)],
                         "area": round(bw * bh * 0.785, 2), "iscrowd": int(rng.random() < 0.01),
                         "segmentation": [np.round(poly.ravel(), 2).tolist()]})
            gts.append((x, y, bw, bh, cat))
        for k in range(dets_per_image):
            if k < len(gts) and rng.random() < 0.8:  # a jittered true box
                x, y, bw, bh, cat = gts[k]
                j = rng.normal(0, 0.08, 4) * [bw, bh, bw, bh]
                box = [x + j[0], y + j[1], max(bw + j[2], 1.0), max(bh + j[3], 1.0)]
                score = float(rng.uniform(0.3, 1.0))
            else:
                bw, bh = rng.uniform(8, w / 2), rng.uniform(8, h / 2)
                box = [rng.uniform(0, w - bw), rng.uniform(0, h - bh), bw, bh]
                cat = int(rng.choice(cat_ids))
                score = float(rng.uniform(0.05, 0.6))
            results.append({"image_id": img_id, "category_id": cat,
                            "bbox": [round(float(v), 2) for v in box], "score": round(score, 5)})
    categories = [{"id": c, "name": n, "supercategory": ""} for c, n in COCO_CATEGORIES]
    ann_dir = os.path.join(root, "coco", "annotations")
    os.makedirs(ann_dir, exist_ok=True)
    os.makedirs(os.path.join(root, "coco", "val2017"), exist_ok=True)
    gt_file = os.path.join(ann_dir, "instances_val2017.json")
    with open(gt_file, "w") as f:
        json.dump({"info": {}, "licenses": [], "images": images, "annotations": anns,
                   "categories": categories}, f)
    res_file = os.path.join(root, "results.json")
    with open(res_file, "w") as f:
        json.dump(results, f)
    return {"gt": gt_file, "results": res_file}


def _timed(cmd, env) -> tuple:
    t = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - t
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    return elapsed, json.loads(out.stdout.strip().splitlines()[-1])


def benchmark_coco_eval(num_images: int = 5000, dets_per_image: int = 50, repeats: int = 1,
                        seed: int = 0, workdir: Optional[str] = None,
                        backend: str = "auto") -> Dict[str, object]:
    """Time ``tools/evaluate.py`` and a plain pycocotools script, each as a whole process.

    Args:
        num_images: images in the synthetic ground truth (COCO val2017 has 5000).
        dets_per_image: detections per image in the results file.
        repeats: runs of each (alternating); the fastest run of each is reported.
        seed: for the synthetic data.
        workdir: where to write the files (default: a temporary folder, removed afterwards).
        backend: ``tools/evaluate.py --backend``.

    Returns:
        ``{"ours": s, "reference": s, "ratio": ours / reference, "speedup": reference / ours,
        "identical": bool (bit for bit), "max_abs_diff" (AP points), "num_images",
        "num_detections", "metrics"}``.
    """
    with tempfile.TemporaryDirectory(prefix="resdet_bench_") as tmp:
        root = workdir or tmp
        files = make_synthetic_coco(root, num_images=num_images, dets_per_image=dets_per_image,
                                    seed=seed)
        env = dict(os.environ, DETECTRON2_DATASETS=root)
        ours_cmd = [sys.executable, os.path.join(_REPO, "tools", "evaluate.py"), "--dataset",
                    "coco_2017_val", "--pred", files["results"], "--json", "--backend", backend]
        ref_cmd = [sys.executable, "-c", _REFERENCE_SCRIPT, files["gt"], files["results"]]
        ours_t, ref_t = [], []
        for _ in range(repeats):
            t, ours = _timed(ours_cmd, env)
            ours_t.append(t)
            t, ref = _timed(ref_cmd, env)
            ref_t.append(t)
    # undefined metrics are null (None) in both outputs
    diffs = [0.0 if ref[k] is None and ours["bbox"][k] is None
             else math.inf if None in (ref[k], ours["bbox"][k])
             else abs(ref[k] - ours["bbox"][k]) for k in ref]
    ours_s, ref_s = min(ours_t), min(ref_t)
    # faster_coco_eval's C++ accumulate may round a precision value 1 ulp differently from
    # pycocotools, so "identical" (bit for bit) can be False while max_abs_diff is ~1e-14.
    return {"ours": ours_s, "reference": ref_s, "ratio": ours_s / ref_s,
            "speedup": ref_s / ours_s, "identical": max(diffs) == 0.0,
            "max_abs_diff": max(diffs), "num_images": num_images,
            "num_detections": num_images * dets_per_image, "metrics": ours["bbox"]}


if __name__ == "__main__":
    print(json.dumps(benchmark_coco_eval(), default=float, allow_nan=False))
