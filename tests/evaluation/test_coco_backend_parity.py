"""Both COCO backends (faster-coco-eval, pycocotools) give the same numbers on every ground-truth
and results file resdet accepts, and refuse the same files with the same sentence (issue 12)."""

import copy
import json
import math

import pytest

from resdet.errors import UserError
from resdet.evaluation.coco_evaluation import evaluate_coco

pytest.importorskip("faster_coco_eval")
pytest.importorskip("pycocotools")

BACKENDS = ("faster_coco_eval", "pycocotools")


def _images(ids, size=(80, 60)):
    return [{"id": i, "file_name": f"{i}.jpg", "width": size[0], "height": size[1]}
            for i in ids]


CATS = [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}, {"id": 5, "name": "bus"}]


def _gt(ids, anns, cats=CATS):
    return {"images": _images(ids), "annotations": anns, "categories": cats}


def _ann(i, image_id, cat, box, **extra):
    return {"id": i, "image_id": image_id, "category_id": cat, "bbox": box, **extra}


def _det(image_id, cat, box, score):
    return {"image_id": image_id, "category_id": cat, "bbox": box, "score": score}


# Two images, a small (30x20) and a medium (40x40) box, no area/iscrowd (b01's file).
B01 = (_gt([1, 2], [_ann(1, 1, 1, [10, 10, 30, 20]), _ann(2, 2, 18, [5, 5, 40, 40])]),
       [_det(1, 1, [10, 10, 30, 20], 0.9), _det(2, 18, [5, 5, 40, 40], 0.8)])


def _with_ids(ids):
    """b05's file with the given image ids: two matched boxes and one false positive that
    outscores them (AP 66.667)."""
    gt = _gt(ids, [_ann(k + 1, i, 1, [10, 10, 30, 20], area=600, iscrowd=0)
                   for k, i in enumerate(ids)], CATS[:1])
    res = [_det(i, 1, [10, 10, 30, 20], 0.9) for i in ids]
    res.append(_det(ids[1], 1, [50, 30, 20, 20], 0.95))
    return gt, res


CROWD = (_gt([1], [_ann(1, 1, 1, [0, 0, 40, 40], area=1600, iscrowd=0),
                   _ann(2, 1, 1, [40, 0, 40, 60], area=2400, iscrowd=1)]),
         [_det(1, 1, [0, 0, 40, 40], 0.9), _det(1, 1, [45, 5, 20, 20], 0.8),
          _det(1, 1, [42, 30, 30, 25], 0.7), _det(1, 1, [0, 45, 10, 10], 0.6)])

NO_GT_IMAGE = (_gt([1, 2], [_ann(1, 1, 1, [10, 10, 30, 20])]),
               [_det(1, 1, [10, 10, 30, 20], 0.5), _det(2, 1, [10, 10, 30, 20], 0.9)])

NO_GT_CLASS = (_gt([1], [_ann(1, 1, 1, [10, 10, 30, 20])]),
               [_det(1, 1, [10, 10, 30, 20], 0.5), _det(1, 5, [10, 10, 30, 20], 0.9),
                _det(1, 77, [10, 10, 30, 20], 0.9)])  # 77: not a category of the file

# (name, gt, results, expected metrics (percent; None: NaN) or None to check parity only)
CORPUS = [
    ("missing_area_iscrowd", *B01, {"AP": 100.0, "APs": 100.0, "APm": 100.0, "APl": None}),
    ("string_ids", *_with_ids(["frame_a", "frame_b"]), {"AP": 200 / 3, "APm": None}),
    ("mixed_ids", *_with_ids([7, "frame_b"]), {"AP": 200 / 3}),
    ("string_ids_and_missing_area", {**B01[0], "images": _images(["a", "b"]), "annotations": [
        dict(a, image_id=["a", "b"][a["image_id"] - 1]) for a in B01[0]["annotations"]]},
     [dict(r, image_id=["a", "b"][r["image_id"] - 1]) for r in B01[1]],
     {"AP": 100.0, "APs": 100.0, "APm": 100.0}),
    ("huge_ids", *_with_ids([2**40, 10**20]), {"AP": 200 / 3}),
    ("negative_ids", *_with_ids([-3, 0]), {"AP": 200 / 3}),
    ("crowd_regions", *CROWD, None),
    ("empty_results", B01[0], [], {"AP": 0.0, "AP50": 0.0, "APs": 0.0, "APm": 0.0,
                                   "APl": None, "AP-person": 0.0, "AP-bus": None}),
    ("detection_on_image_without_gt", *NO_GT_IMAGE, None),
    ("detection_on_class_without_gt", *NO_GT_CLASS, {"AP": 100.0, "AP-bus": None}),
    ("gt_category_not_in_categories", _gt([1], [_ann(1, 1, 1, [10, 10, 30, 20]),
                                                _ann(2, 1, 99, [50, 20, 20, 20])]),
     [_det(1, 1, [10, 10, 30, 20], 0.9), _det(1, 99, [50, 20, 20, 20], 0.9)], {"AP": 100.0}),
    ("crowd_without_area", _gt([1], [_ann(1, 1, 1, [0, 0, 40, 40]),
                                     _ann(2, 1, 1, [40, 0, 40, 60], iscrowd=1)]),
     CROWD[1], None),
    ("integer_score_and_float_box", B01[0],
     [_det(1, 1, [10, 10, 30, 20], 1), _det(2, 18, [5.0, 5.0, 40.0, 40.0], 0.8)], {"AP": 100.0}),
    ("missing_annotation_ids", _gt([1], [{"image_id": 1, "category_id": 1,
                                          "bbox": [10, 10, 30, 20]}] * 2),
     [_det(1, 1, [10, 10, 30, 20], 0.9)], {"AP50": 100 * 51 / 101}),  # recall 0.5 of 101 points
]


def _same(a, b):
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=0, abs_tol=1e-9)


@pytest.mark.parametrize("name,gt,results,expected", CORPUS, ids=[c[0] for c in CORPUS])
def test_backends_agree(name, gt, results, expected):
    got = {}
    for backend in BACKENDS:
        # as files users have: JSON round trip; the inputs are not modified
        g, r = json.loads(json.dumps(gt)), json.loads(json.dumps(results))
        g0, r0 = copy.deepcopy(g), copy.deepcopy(r)
        got[backend] = evaluate_coco(g, r, backend=backend)
        assert (g, r) == (g0, r0)
    fast, ref = got["faster_coco_eval"], got["pycocotools"]
    assert fast.keys() == ref.keys()
    assert all(_same(fast[k], ref[k]) for k in ref), (fast, ref)
    for k, v in (expected or {}).items():
        assert math.isnan(ref[k]) if v is None else ref[k] == pytest.approx(v, abs=1e-9), (k, ref)


REFUSED = [
    ("nan_score", B01[0], [_det(1, 1, [10, 10, 30, 20], float("nan"))],
     "results.json: entry 0 has a non-finite score or box (score nan, bbox [10.0, 10.0, 30.0, "
     "20.0]); fix the model or the file, resdet does not guess one."),
    ("inf_box", B01[0], [_det(1, 1, [10, 10, 30, 20], 0.5), _det(2, 1, [1, 1, float("inf"), 2],
                                                                   0.5)],
     "results.json: entry 1 has a non-finite score or box (score 0.5, bbox [1.0, 1.0, inf, "
     "2.0]); fix the model or the file, resdet does not guess one."),
    ("negative_box", B01[0], [_det(1, 1, [10, 10, -3, 20], 0.5)],
     "results.json: entry 0 has a box with negative width or height [10.0, 10.0, -3.0, 20.0]; "
     "boxes are [x, y, w, h]."),
    ("unknown_image", B01[0], [_det(9, 1, [10, 10, 3, 20], 0.5)],
     "results.json: 1 image_id(s) are not in the ground truth (e.g. 9); check that the file is "
     "for this dataset."),
    ("string_score", B01[0], [_det(1, 1, [10, 10, 3, 20], "0.5")],
     "results.json: entry 0 is not a detection {image_id, category_id, bbox: [x, y, w, h], "
     "score} with numbers: {'image_id': 1, 'category_id': 1, 'bbox': [10, 10, 3, 20], "
     "'score': '0.5'}"),
    ("gt_without_bbox", _gt([1], [{"id": 4, "image_id": 1, "category_id": 1}]), [],
     "the ground truth: annotation 4 has no valid 'bbox' [x, y, w, h] (finite, w and h >= 0): "
     "None."),
    ("gt_nan_box", _gt([1], [_ann(4, 1, 1, [1, 2, float("nan"), 3])]), [],
     "the ground truth: annotation 4 has no valid 'bbox' [x, y, w, h] (finite, w and h >= 0): "
     "[1, 2, nan, 3]."),
    ("gt_duplicate_ann_id", _gt([1], [_ann(4, 1, 1, [1, 2, 3, 3]), _ann(4, 1, 1, [1, 2, 3, 3])]),
     [], "the ground truth: annotation 4 needs a unique integer 'id'."),
    ("gt_duplicate_image_id", _gt(["a", "a"], []), [],
     "the ground truth: image id 'a' is listed twice; image ids must be unique."),
    ("gt_float_image_id", _gt([1.5], []), [],
     "the ground truth: images[0] needs an integer or string 'id' (found {'id': 1.5, "
     "'file_name': '1.5.jpg', 'width': 80, 'height': 60})."),
]


@pytest.mark.parametrize("name,gt,results,message", REFUSED, ids=[c[0] for c in REFUSED])
def test_both_backends_refuse_in_one_sentence(name, gt, results, message):
    for backend in BACKENDS:
        with pytest.raises(UserError) as e:
            evaluate_coco(copy.deepcopy(gt), copy.deepcopy(results), backend=backend,
                          source="results.json")
        assert str(e.value) == message
