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


def test_mapper_skips_a_size_mismatch_and_strict_mode_names_the_setting(tmp_path, caplog):
    import logging

    rec = _record(tmp_path)
    rec["height"] = 61  # the file is 60 px high
    mapper = TrainMapper((30,), 100, "choice", "none", "BGR")
    with caplog.at_level(logging.WARNING, logger="resdet.detection"):
        assert mapper(rec, 0) is None and mapper(rec, 1) is None
    assert mapper.skipped == 2
    (msg,) = [r.getMessage() for r in caplog.records]  # once per file
    assert msg == ("Skipping a training image (1 image(s) skipped so far in this loader; "
                   f"DATALOADER.SKIP_BAD_SAMPLES): Image {rec['file_name']} is 100x60 but its "
                   "annotation says 100x61; fix the annotation's width/height or the file, or "
                   "remove it from the dataset (datasets/check.py lists all).")
    with pytest.raises(UserError) as e:
        TrainMapper((30,), 100, "choice", "none", "BGR", skip_bad=False)(rec)
    assert str(e.value).endswith("(datasets/check.py lists all); or set "
                                 "DATALOADER.SKIP_BAD_SAMPLES True to skip such training images "
                                 "with a warning.")


def test_exif_rotated_jpeg_with_labels_in_the_stored_frame(tmp_path):
    from PIL import Image

    stored = np.zeros((40, 60, 3), np.uint8)
    stored[5:15, 10:30] = 255  # a white box x 10..30, y 5..15 in the stored frame
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = 6  # displayed rotated by 90 degrees: 60 x 40
    path = str(tmp_path / "r.jpg")
    im.save(path, quality=100, exif=exif)
    box = {"bbox": [10, 5, 20, 10], "bbox_mode": 1, "category_id": 0, "iscrowd": 0}
    mapper = TrainMapper((40,), 1000, "choice", "none", "BGR")
    out = mapper({"file_name": path, "height": 40, "width": 60, "annotations": [box]}, 0)
    img = out["image"].numpy().transpose(1, 2, 0)
    assert img.shape == (40, 60, 3)  # the stored pixels, which the labels were drawn on
    assert img[7:13, 12:28].min() > 200 and out["target"]["boxes"].tolist() == [[10, 5, 30, 15]]
    # labels in the displayed frame: the EXIF rotation is applied
    turned = {"bbox": [25, 10, 10, 20], "bbox_mode": 1, "category_id": 0, "iscrowd": 0}
    out = mapper({"file_name": path, "height": 60, "width": 40, "annotations": [turned]}, 0)
    img = out["image"].numpy().transpose(1, 2, 0)
    assert img.shape == (60, 40, 3) and img[12:28, 27:33].min() > 200


def test_box_crossing_the_border_is_clipped_and_zero_area_dropped(tmp_path):
    rec = _record(tmp_path)
    rec["annotations"] = [{"bbox": [80, 50, 40, 30], "bbox_mode": 1, "category_id": 1,
                           "iscrowd": 0},
                          {"bbox": [100, 0, 120, 10], "bbox_mode": 0, "category_id": 2,
                           "iscrowd": 0}]
    out = TrainMapper((60,), 1000, "choice", "none", "BGR")(rec, 0)
    assert out["target"]["boxes"].tolist() == [[80.0, 50.0, 100.0, 60.0]]
    assert out["target"]["labels"].tolist() == [1]
