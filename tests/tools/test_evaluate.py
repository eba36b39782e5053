"""tools/evaluate.py: equals pycocotools run directly, VOC metrics, clear errors."""

import contextlib
import io
import json
import math
import os
import subprocess
import sys

import pytest

from tests.tiny_datasets import make_tiny_voc
from resdet.evaluation.bench import make_synthetic_coco
from tests.voc_hand_case import write_hand_voc

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEYS = ["AP", "AP50", "AP75", "APs", "APm", "APl"]


def _run(root, *args):
    env = dict(os.environ, DETECTRON2_DATASETS=str(root))
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", "evaluate.py"), *args],
                          capture_output=True, text=True, env=env, timeout=120)


def _pycocotools(gt_file, res_file):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()) as out:
        gt = COCO(gt_file)
        ev = COCOeval(gt, gt.loadRes(res_file), "bbox")
        ev.evaluate()
        ev.accumulate()
    with contextlib.redirect_stdout(io.StringIO()) as out:
        ev.summarize()
    return {k: float(ev.stats[i] * 100) for i, k in enumerate(KEYS)}, out.getvalue()


def test_equals_pycocotools_on_the_same_file(tmp_path):
    files = make_synthetic_coco(str(tmp_path), num_images=60, dets_per_image=15)
    ref, ref_text = _pycocotools(files["gt"], files["results"])
    out = _run(tmp_path, "--dataset", "coco_2017_val", "--pred", files["results"], "--json",
               "--backend", "pycocotools")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])["bbox"]
    assert {k: got[k] for k in KEYS} == ref  # exact
    assert out.stdout.startswith(ref_text.rstrip())  # the same 12-line summary
    # Default backend (faster_coco_eval): the same to the last bits (its C++ accumulate may
    # round a precision value 1 ulp differently), and the same printed summary.
    out = _run(tmp_path, "--dataset", "coco_2017_val", "--pred", files["results"], "--json")
    assert out.returncode == 0, out.stderr
    fast = json.loads(out.stdout.strip().splitlines()[-1])["bbox"]
    assert all(math.isclose(fast[k], ref[k], rel_tol=0, abs_tol=1e-10) for k in KEYS)
    assert out.stdout.startswith(ref_text.rstrip())


def _hand_voc(root):
    write_hand_voc(root, 2007, "test")
    dets = [("000001", [0, 0, 10, 10], 0.9), ("000001", [20, 20, 10, 10], 0.8),
            ("000001", [0, 0, 10, 10], 0.7), ("000002", [39, 39, 11, 11], 0.6),
            ("000002", [0, 0, 10, 10], 0.5)]
    res = [{"image_id": i, "category_id": 12, "bbox": b, "score": s} for i, b, s in dets]
    path = os.path.join(str(root), "voc_results.json")
    with open(path, "w") as f:
        json.dump(res, f)
    return path


@pytest.mark.parametrize("metric,ap50", [("voc07", 100 * 8.5 / 11), ("voc12", 75.0),
                                         ("coco", None)])
def test_voc_metrics(tmp_path, metric, ap50):
    pred = _hand_voc(tmp_path)
    out = _run(tmp_path, "--dataset", "voc_2007_test", "--pred", pred, "--metric", metric,
               "--json")
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])["bbox"]
    if ap50 is not None:
        assert res["AP50"] == pytest.approx(ap50, abs=1e-9) and set(res) == {"AP", "AP50", "AP75"}
    else:  # COCO metric on VOC data: the difficult box is ordinary ground truth there
        assert 0 < res["AP50"] < 100 and "APs" in res and "AP-dog" in res


def test_errors_are_one_sentence(tmp_path):
    pred = _hand_voc(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text('[{"image_id": "000001",\n "category_id": 12, "bbox": [1, 2, 3')
    out = _run(tmp_path, "--dataset", "voc_2007_test", "--pred", str(bad))
    assert out.returncode == 2 and "bad.json is not valid JSON (line 2" in out.stderr
    assert "Traceback" not in out.stderr
    bad.write_text(json.dumps([{"image_id": "999999", "category_id": 12, "bbox": [1, 2, 3, 4],
                                "score": 0.5}]))
    out = _run(tmp_path, "--dataset", "voc_2007_test", "--pred", str(bad))
    assert out.returncode == 2 and "image_id(s) are not in the ground truth (e.g. 999999)" \
        in out.stderr
    bad.write_text(json.dumps([{"image_id": "000001", "category_id": 0, "bbox": [1, 2, 3, 4],
                                "score": 0.5}]))
    out = _run(tmp_path, "--dataset", "voc_2007_test", "--pred", str(bad))
    assert out.returncode == 2 and "category_id 0; VOC results use 1..20" in out.stderr
    out = _run(tmp_path, "--dataset", "coco_2017_val", "--pred", pred)
    assert out.returncode == 2 and "coco_2017_val is not on disk" in out.stderr


def test_voc2012_test_writes_submission_files(tmp_path):
    make_tiny_voc(str(tmp_path), 2012, {"test": 2}, with_test_labels=False)
    pred = tmp_path / "r.json"
    pred.write_text(json.dumps([{"image_id": "000001", "category_id": 12,
                                 "bbox": [1, 2, 10, 10], "score": 0.77}]))
    out = _run(tmp_path, "--dataset", "voc_2012_test", "--pred", str(pred))
    assert out.returncode == 2 and "--output DIR" in out.stderr
    out = _run(tmp_path, "--dataset", "voc_2012_test", "--pred", str(pred), "--output",
               str(tmp_path / "sub"), "--json")
    assert out.returncode == 0 and out.stdout.strip().splitlines()[-1] == '{"bbox": {}}'
    dog = tmp_path / "sub" / "results" / "VOC2012" / "Main" / "comp4_det_test_dog.txt"
    assert dog.read_text() == "000001 0.770 2.0 3.0 11.0 12.0\n"
