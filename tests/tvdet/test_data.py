"""The training mapper resizes and flips image and boxes together, as Detectron2's does."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from resdet.errors import UserError
from resdet.tvdet.data import TrainMapper


def _record(tmp_path):
    img = np.full((60, 100, 3), 90, np.uint8)
    img[10:30, 5:45] = (0, 0, 255)  # red box x 5..45, y 10..30 (BGR)
    path = str(tmp_path / "a.png")
    cv2.imwrite(path, img)
    return {"file_name": path, "height": 60, "width": 100, "image_id": 1,
            "annotations": [{"bbox": [5, 10, 40, 20], "bbox_mode": 1, "category_id": 2,
                             "iscrowd": 0},
                            {"bbox": [0, 0, 10, 10], "bbox_mode": 0, "category_id": 0,
                             "iscrowd": 1}]}


def test_resize_and_flip_move_boxes_with_pixels(tmp_path):
    rec = _record(tmp_path)
    mapper = TrainMapper((30, 120), 150, "choice", "horizontal", "RGB", seed=3)
    seen = set()
    for pos in range(40):
        out = mapper(rec, pos)
        img = out["image"].numpy().transpose(1, 2, 0)
        h, w = img.shape[:2]
        assert min(h, w) in (30, 90) and max(h, w) <= 150  # 120 would make w 200 > 150
        (x0, y0, x1, y1), = out["target"]["boxes"].tolist()  # the crowd box is left out
        assert out["target"]["labels"].tolist() == [2]
        inside = img[int(y0) + 1:int(y1) - 1, int(x0) + 1:int(x1) - 1]
        assert (inside[..., 0] > 200).all() and (inside[..., 2] < 60).all()  # red, as RGB
        seen.add((h, x0 < w / 2))
    assert len(seen) == 4  # both sizes, flipped and not


def test_position_seeds_the_augmentation(tmp_path):
    rec = _record(tmp_path)
    a = TrainMapper((30, 40, 50), 500, "choice", "horizontal", "BGR", seed=0)
    b = TrainMapper((30, 40, 50), 500, "choice", "horizontal", "BGR", seed=0)
    for pos in (0, 7, 123):
        assert a(rec, pos)["target"]["boxes"].tolist() == b(rec, pos)["target"]["boxes"].tolist()


def test_unreadable_image_skipped_or_raised(tmp_path):
    rec = dict(_record(tmp_path), file_name=str(tmp_path / "missing.jpg"))
    assert TrainMapper((30,), 100, "choice", "none", "BGR")(rec) is None
    with pytest.raises(UserError, match="missing.jpg"):
        TrainMapper((30,), 100, "choice", "none", "BGR", skip_bad=False)(rec)
    with pytest.raises(UserError, match="RANDOM_FLIP"):
        TrainMapper((30,), 100, "choice", "diagonal", "BGR")
