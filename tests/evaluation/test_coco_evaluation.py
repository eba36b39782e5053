"""COCO box AP: both backends agree exactly; the evaluator follows Detectron2's protocol."""

import json
import math
import os

import numpy as np
import pytest
import torch

from resdet.data import get_dataset_dicts
from tests.tiny_datasets import make_tiny_coco, make_tiny_voc
from resdet.evaluation import COCOEvaluator, build_evaluator, evaluate_coco
from resdet.evaluation.bench import make_synthetic_coco
from resdet.evaluation.voc_evaluation import PascalVOCEvaluator


def test_backends_agree(tmp_path):
    files = make_synthetic_coco(str(tmp_path), num_images=40, dets_per_image=12)
    results = json.load(open(files["results"]))
    text_fast, text_ref = [], []
    fast = evaluate_coco(files["gt"], json.loads(json.dumps(results)), backend="faster_coco_eval",
                         summary=text_fast)
    ref = evaluate_coco(files["gt"], results, backend="pycocotools", summary=text_ref)
    assert fast.keys() == ref.keys() and len(fast) == 6 + 80
    # faster_coco_eval's C++ accumulate rounds some precisions differently in the last bit
    # (<= 2.2e-16), so values agree to ~1e-13 percent, not always bit for bit.
    for k in fast:
        assert math.isclose(fast[k], ref[k], rel_tol=0, abs_tol=1e-10) or (
            math.isnan(fast[k]) and math.isnan(ref[k])), k
    assert text_fast == text_ref  # the printed 12-line summary is identical
    assert 5 < fast["AP"] < 95


def _perfect_outputs(dicts, id_shift=0.0):
    outputs = []
    for d in dicts:
        boxes = [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2] + id_shift,
                  a["bbox"][1] + a["bbox"][3]] for a in d["annotations"]]
        outputs.append({"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                        "scores": torch.linspace(0.9, 0.5, len(boxes)),
                        "labels": torch.tensor([a["category_id"] for a in d["annotations"]],
                                               dtype=torch.long)})
    return outputs


def test_coco_evaluator_protocol(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    make_tiny_coco(str(tmp_path), "val2017", num_images=4)
    dicts = get_dataset_dicts("coco_2017_val")
    ev = build_evaluator("coco_2017_val", str(tmp_path / "out"))
    assert isinstance(ev, COCOEvaluator)
    ev.reset()
    outs = _perfect_outputs(dicts)
    ev.process(dicts[:2], outs[:2])
    ev.process(dicts[2:], outs[2:])
    res = ev.evaluate()["bbox"]
    assert res["AP"] == pytest.approx(100.0) and res["AP50"] == pytest.approx(100.0)
    written = json.load(open(tmp_path / "out" / "coco_instances_results.json"))
    assert len(written) == 4 and set(written[0]) == {"image_id", "category_id", "bbox", "score"}
    raw = json.load(open(tmp_path / "coco" / "annotations" / "instances_val2017.json"))
    assert sorted(r["category_id"] for r in written) == sorted(
        a["category_id"] for a in raw["annotations"])  # dataset ids, not contiguous
    np.testing.assert_allclose(written[0]["bbox"], raw["annotations"][0]["bbox"], atol=1e-4)
    # Boxes 2x too wide on every image: no match at IoU 0.5 -> AP 0.
    ev.reset()
    ev.process(dicts, _perfect_outputs(dicts, id_shift=30.0))
    assert ev.evaluate()["bbox"]["AP50"] == 0.0
    ev.reset()
    ev.process(dicts, [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0),
                        "labels": torch.zeros(0, dtype=torch.long)} for _ in dicts])
    assert ev.evaluate()["bbox"]["AP"] == 0.0


def test_coco_metric_on_voc_and_build(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    make_tiny_voc(str(tmp_path), 2007)
    assert isinstance(build_evaluator("voc_2007_test"), PascalVOCEvaluator)
    dicts = get_dataset_dicts("voc_2007_test")
    ev = COCOEvaluator("voc_2007_test")
    outs = []
    for d in dicts:
        b = torch.tensor([a["bbox"] for a in d["annotations"]], dtype=torch.float32)
        outs.append({"boxes": b, "scores": torch.ones(len(b)),
                     "labels": torch.tensor([a["category_id"] for a in d["annotations"]])})
    ev.process(dicts, outs)
    res = ev.evaluate()["bbox"]
    assert res["AP"] == pytest.approx(100.0) and "AP-dog" in res
    assert os.path.isdir(tmp_path / "VOC2007")


def test_benchmark_runs_on_a_tiny_input():
    from resdet.evaluation.bench import benchmark_coco_eval

    r = benchmark_coco_eval(num_images=15, dets_per_image=5)
    assert r["ours"] > 0 and r["reference"] > 0
    assert r["ratio"] == pytest.approx(r["ours"] / r["reference"])
    assert r["max_abs_diff"] < 1e-9 and r["num_detections"] == 75


def _write_coco_val(root, images, anns, cats):
    """DETECTRON2_DATASETS-layout coco_2017_val with the given records (black 80x60 JPEGs)."""
    from PIL import Image

    os.makedirs(root / "coco" / "annotations", exist_ok=True)
    os.makedirs(root / "coco" / "val2017", exist_ok=True)
    for im in images:
        Image.new("RGB", (im["width"], im["height"])).save(root / "coco" / "val2017" /
                                                           im["file_name"])
    with open(root / "coco" / "annotations" / "instances_val2017.json", "w") as f:
        json.dump({"images": images, "annotations": anns, "categories": cats}, f)


def test_no_detections_score_as_cocoeval(tmp_path, monkeypatch):
    """Case p03: no detections at all -> what pycocotools' COCOeval gives: AP 0 overall and for
    classes with ground truth, NaN for classes and area ranges without any."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    images = [{"id": i, "file_name": f"{i:012d}.jpg", "width": 80, "height": 60} for i in (1, 2)]
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 20], "area": 600,
             "iscrowd": 0}]
    cats = [{"id": 1, "name": "person"}, {"id": 2, "name": "bicycle"}]
    _write_coco_val(tmp_path, images, anns, cats)
    dicts = get_dataset_dicts("coco_2017_val")
    for backend in ("faster_coco_eval", "pycocotools"):
        ev = COCOEvaluator("coco_2017_val", backend=backend)
        ev.process(dicts, [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0),
                            "labels": torch.zeros(0, dtype=torch.long)} for _ in dicts])
        res = ev.evaluate()["bbox"]
        assert {k: res[k] for k in ("AP", "AP50", "AP75", "APs", "AP-person")} == {
            "AP": 0.0, "AP50": 0.0, "AP75": 0.0, "APs": 0.0, "AP-person": 0.0}
        assert math.isnan(res["APm"]) and math.isnan(res["APl"])
        assert math.isnan(res["AP-bicycle"])  # a class without ground truth: undefined
    # the reference: pycocotools' COCOeval itself, on an empty detection set
    gt = COCO()
    gt.dataset = json.load(open(tmp_path / "coco" / "annotations" / "instances_val2017.json"))
    gt.createIndex()
    dt = COCO()
    dt.dataset = {"images": gt.dataset["images"], "categories": cats, "annotations": []}
    dt.createIndex()
    ref = COCOeval(gt, dt, "bbox")
    ref.evaluate()
    ref.accumulate()
    ref.summarize()
    assert ref.stats[0] == 0.0 and ref.stats[4] == -1.0  # AP 0, APm undefined (-1 -> NaN)


def test_string_image_ids_in_the_evaluator_and_its_results_file(tmp_path, monkeypatch):
    """Case b05 at the end of training: records keep the file's string ids, the evaluator maps
    them for both backends and writes them unchanged into coco_instances_results.json."""
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    ids = ["frame_a", "frame_b"]
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 80, "height": 60} for i in ids]
    anns = [{"id": k + 1, "image_id": i, "category_id": 1, "bbox": [10, 10, 30, 20],
             "area": 600, "iscrowd": 0} for k, i in enumerate(ids)]
    _write_coco_val(tmp_path, images, anns, [{"id": 1, "name": "person"}])
    dicts = get_dataset_dicts("coco_2017_val")
    assert [d["image_id"] for d in dicts] == ids
    outs = [{"boxes": torch.tensor([[10.0, 10, 40, 30]]), "scores": torch.tensor([0.9]),
             "labels": torch.tensor([0])},
            {"boxes": torch.tensor([[10.0, 10, 40, 30], [50, 30, 70, 50]]),
             "scores": torch.tensor([0.9, 0.95]), "labels": torch.tensor([0, 0])}]
    for backend in ("faster_coco_eval", "pycocotools"):
        ev = COCOEvaluator("coco_2017_val", str(tmp_path / backend), backend=backend)
        ev.process(dicts, outs)
        assert ev.evaluate()["bbox"]["AP"] == pytest.approx(200 / 3)
        written = json.load(open(tmp_path / backend / "coco_instances_results.json"))
        assert [r["image_id"] for r in written] == ["frame_a", "frame_b", "frame_b"]


def test_nonfinite_model_output_is_refused_and_the_results_file_stays_json(tmp_path,
                                                                            monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    make_tiny_coco(str(tmp_path), "val2017", num_images=2)
    dicts = get_dataset_dicts("coco_2017_val")
    ev = COCOEvaluator("coco_2017_val", str(tmp_path / "out"))
    ev.process(dicts[:1], [{"boxes": torch.tensor([[1.0, 2, 3, 4]]),
                            "scores": torch.tensor([float("nan")]),
                            "labels": torch.tensor([0])}])
    from resdet.errors import UserError

    with pytest.raises(UserError, match=r"^the detections on coco_2017_val: entry 0 has a "
                       r"non-finite score or box \(score nan, bbox \[1.0, 2.0, 2.0, 2.0\]\)"):
        ev.evaluate()
    written = json.loads((tmp_path / "out" / "coco_instances_results.json").read_text())
    assert written[0]["score"] is None  # valid JSON (null), not a bare NaN
