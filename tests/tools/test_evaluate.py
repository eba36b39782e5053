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


def _coco_val(root, images, anns, cats, results):
    """coco_2017_val under ``root`` with the given records (grey 80x60 JPEGs) and a results file;
    returns the results file's path."""
    from PIL import Image

    os.makedirs(root / "coco" / "annotations", exist_ok=True)
    os.makedirs(root / "coco" / "val2017", exist_ok=True)
    for im in images:
        Image.new("RGB", (im["width"], im["height"]), (127, 127, 127)).save(
            root / "coco" / "val2017" / im["file_name"])
    (root / "coco" / "annotations" / "instances_val2017.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats}))
    (root / "results.json").write_text(json.dumps(results))
    return str(root / "results.json")


def _last_json(out):
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])["bbox"]


def test_case_b01_gt_without_area_and_iscrowd(tmp_path):
    """b01: boxes without area/iscrowd are scored as area w*h, iscrowd 0 on both backends: the
    40x40 box is medium (APm 100, not NaN), no KeyError; one warning counts them."""
    images = [{"id": i, "file_name": f"{i:012d}.jpg", "height": 60, "width": 80} for i in (1, 2)]
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 20]},
            {"id": 2, "image_id": 2, "category_id": 18, "bbox": [5, 5, 40, 40]}]
    res = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 20], "score": 0.9},
           {"image_id": 2, "category_id": 18, "bbox": [5, 5, 40, 40], "score": 0.8}]
    pred = _coco_val(tmp_path, images, anns, [{"id": 1, "name": "person"},
                                              {"id": 18, "name": "dog"}], res)
    for backend in ("faster_coco_eval", "pycocotools"):
        out = _run(tmp_path, "--dataset", "coco_2017_val", "--pred", pred, "--json",
                   "--backend", backend)
        got = _last_json(out)
        assert got["APl"] is None  # no large box: undefined, null in JSON
        assert [got[k] for k in KEYS[:5]] == pytest.approx([100.0] * 5, abs=1e-9)
        assert out.stderr.count("annotations 2 without 'area' (set to the box area w*h); 2 "
                                "without 'iscrowd' (set to 0)") == 1
    out = subprocess.run([sys.executable, os.path.join(REPO, "datasets", "check.py"),
                          "coco_2017_val"], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, DETECTRON2_DATASETS=str(tmp_path)))
    assert out.returncode == 0 and out.stdout.strip().endswith("ok: 2 images, 2 boxes")
    assert "2 without 'area'" in out.stdout + out.stderr


def test_case_b05_string_image_ids(tmp_path):
    """b05: string image ids (file stems) score the same on both backends: AP 66.667."""
    ids = ["frame_a", "frame_b"]
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 80, "height": 60} for i in ids]
    anns = [{"id": k + 1, "image_id": i, "category_id": 1, "bbox": [10, 10, 30, 20],
             "area": 600, "iscrowd": 0} for k, i in enumerate(ids)]
    res = [{"image_id": i, "category_id": 1, "bbox": [10, 10, 30, 20], "score": 0.9}
           for i in ids]
    res.append({"image_id": "frame_b", "category_id": 1, "bbox": [50, 30, 20, 20],
                "score": 0.95})
    pred = _coco_val(tmp_path, images, anns, [{"id": 1, "name": "person"}], res)
    for backend in ("faster_coco_eval", "pycocotools"):
        got = _last_json(_run(tmp_path, "--dataset", "coco_2017_val", "--pred", pred, "--json",
                              "--backend", backend))
        assert got["AP"] == pytest.approx(200 / 3, abs=1e-9) and got["APm"] is None
    # the same file given bare (--gt), as a user with no dataset name would
    gt = str(tmp_path / "coco" / "annotations" / "instances_val2017.json")
    got = _last_json(_run(tmp_path, "--gt", gt, "--pred", pred, "--json"))
    assert got["AP"] == pytest.approx(200 / 3, abs=1e-9)


def test_nonfinite_results_are_refused_naming_file_and_entry(tmp_path):
    images = [{"id": 1, "file_name": "a.jpg", "width": 80, "height": 60}]
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 20]}]
    pred = tmp_path / "results.json"
    _coco_val(tmp_path, images, anns, [{"id": 1, "name": "person"}], [])
    # Python's json writes and reads NaN/Infinity, as many exporters do
    pred.write_text('[{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5},'
                    ' {"image_id": 1, "category_id": 1, "bbox": [1, 2, Infinity, 4],'
                    ' "score": NaN}]')
    for backend in ("faster_coco_eval", "pycocotools"):
        out = _run(tmp_path, "--dataset", "coco_2017_val", "--pred", str(pred), "--backend",
                   backend)
        assert out.returncode == 2 and "Traceback" not in out.stderr
        assert out.stderr.strip().splitlines()[-1] == (
            f"error: {pred}: entry 1 has a non-finite score or box (score nan, bbox [1.0, 2.0, "
            "inf, 4.0]); fix the model or the file, resdet does not guess one.")


def test_case_b20_own_dataset_by_config_and_bare_file(tmp_path):
    """b20: a user's COCO-format set (class ids 3 and 7) is scored by name from a config's
    DATASETS.CUSTOM block, and as a bare ground-truth file (--gt, or a .json path as --dataset)."""
    from tests.custom_dataset_files import write_coco

    ann = write_coco(tmp_path)
    pred = tmp_path / "results.json"
    pred.write_text(json.dumps([{"image_id": 1, "category_id": 3, "bbox": [10, 10, 40, 30],
                                 "score": 0.9}]))
    # cat: 1 of its 2 boxes found (101-point AP 51/101), dog: none found (AP 0)
    expected = 100 * 51 / 101 / 2
    cfg = tmp_path / "my.yaml"
    cfg.write_text("DATASETS:\n  CUSTOM:\n"
                   f"    my_val: {{FORMAT: coco, JSON_FILE: {ann}, IMAGE_ROOT: {tmp_path}/imgs}}\n"
                   "  TEST: ('my_val',)\n")
    for args in (["--config", str(cfg)], ["--config", str(cfg), "DATASETS.TEST", "('my_val',)"],
                 ["--gt", ann], ["--dataset", ann]):
        out = _run(tmp_path, "--pred", str(pred), "--json", *args)
        got = _last_json(out)
        assert got["AP"] == pytest.approx(expected, abs=1e-9) and got["AP-dog"] == 0.0, args
    out = _run(tmp_path, "--pred", str(pred), "--config", str(cfg), "DATASETS.TEST", "()")
    assert out.returncode == 2 and out.stderr.strip().splitlines()[-1] == (
        f"error: {cfg}: DATASETS.TEST names 0 datasets (none); choose one with --dataset NAME.")


def test_own_voc_dataset_by_config(tmp_path):
    """A VOC-format DATASETS.CUSTOM entry is scored with VOC AP (YEAR 2007: 11-point) and its
    own classes (category_id 1..K in CLASSES order)."""
    from tests.custom_dataset_files import write_voc

    voc = write_voc(tmp_path / "v")
    cfg = tmp_path / "my.yaml"
    cfg.write_text("DATASETS:\n  CUSTOM:\n"
                   f"    my_voc: {{FORMAT: voc, ROOT: {voc}, SPLIT: val, CLASSES: [cat, dog],"
                   " YEAR: 2007}\n")
    pred = tmp_path / "r.json"
    pred.write_text(json.dumps([{"image_id": "a", "category_id": 1, "bbox": [4, 5, 26, 35],
                                 "score": 0.9}]))
    got = _last_json(_run(tmp_path, "--pred", str(pred), "--dataset", "my_voc", "--json",
                          "--config", str(cfg)))
    assert got["AP50"] == pytest.approx(50.0)  # cat found (AP 100), dog missed (AP 0)
