"""Generated datasets say, once, that they are being made and where."""

from __future__ import annotations

import logging
import os

import pytest

from resdet.data import cls_synthetic
from resdet.data.shapes import ensure_shapes


@pytest.fixture
def said():
    lines = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logger = logging.getLogger("resdet.data")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_shapes_generation_line(tmp_path, said):
    target = ensure_shapes(str(tmp_path), num_train=2, num_val=1)
    assert said == [f"Generating the synthetic shapes dataset (2 train, 1 val images) into "
                    f"{target} (once; set $DETECTRON2_DATASETS to put it elsewhere)."]
    ensure_shapes(str(tmp_path), num_train=2, num_val=1)
    assert len(said) == 1  # already there: nothing to say


def test_synthetic_imagenet_generation_line(tmp_path, said, monkeypatch):
    monkeypatch.setattr(cls_synthetic, "SPLIT_SIZES", {"train": 2, "val": 1})
    final = cls_synthetic.generate_synthetic_imagenet(str(tmp_path))
    assert final == os.path.join(str(tmp_path), "synthetic_imagenet")
    assert said == [f"Generating the synthetic_imagenet dataset (10 classes, 2 train/1 val images "
                    f"per class) into {final} (once; set $DETECTRON2_DATASETS to put it "
                    "elsewhere)."]
    cls_synthetic.generate_synthetic_imagenet(str(tmp_path))
    assert len(said) == 1
