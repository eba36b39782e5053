"""Drawings of predictions are legible: small images upscaled, labels sized to the image and never
overlapping (resdet.detection.drawing, used by both engines and tools/predict.py)."""

from __future__ import annotations

import numpy as np

from resdet.detection.drawing import _label_place, draw_detections, upscale_factor


def test_small_images_are_upscaled_by_an_integer_factor():
    assert upscale_factor(96, 128) == 7  # short side 96 -> 672 >= 600
    assert upscale_factor(600, 800) == 1 and upscale_factor(1000, 700) == 1
    image = np.zeros((60, 80, 3), np.uint8)
    image[10:20, 10:20] = 255
    drawn = draw_detections(image, np.array([[0.0, 0, 5, 5]]), np.array([0.1]), np.array([0]),
                            ["a"], score_thresh=0.5)  # nothing drawn: only the upscaling
    assert drawn.shape == (600, 800, 3)
    np.testing.assert_array_equal(drawn[::10, ::10], image)


def test_labels_of_coinciding_boxes_do_not_overlap():
    taken = []
    for _ in range(3):
        rect = _label_place((100, 100, 300, 300), (80, 20), (600, 600), taken)
        assert rect is not None
        assert all(not (rect[0] < r[2] and r[0] < rect[2] and rect[1] < r[3] and r[1] < rect[3])
                   for r in taken)
        taken.append(rect)
    assert [r[1] for r in taken] == [80, 100, 300]  # above, inside the top, below
    # a box too small for another free place: the label is left out, not drawn over another
    crowded = [(0, 0, 600, 600)]
    assert _label_place((10, 10, 20, 20), (80, 20), (600, 600), crowded) is None


def test_two_detections_on_one_object_get_two_readable_labels():
    image = np.full((100, 100, 3), 40, np.uint8)
    boxes = np.array([[20.0, 30, 80, 90], [20.0, 30, 80, 90]])
    drawn = draw_detections(image, boxes, np.array([0.9, 0.8]), np.array([0, 1]),
                            ["circle", "square"])
    assert drawn.shape == (600, 600, 3)
    # label backgrounds are the class colours: both appear, in separate rows above/inside the box
    from resdet.detection.drawing import _colour

    rows = [np.where((drawn == _colour(k)).all(axis=2).any(axis=1))[0] for k in (0, 1)]
    assert rows[0].size and rows[1].size
