"""Both engines feed the network the same pixels and boxes for the same file (issue 11).

``tools/visualize_data.py --source dataloader`` with flipping off, on a corpus of tricky inputs
(tests/parity/parity_corpus.py): the torchvision half checks the right values and runs without
Detectron2; the Detectron2 half checks that its engine writes pixel-identical PNGs, an equal
records.json and the same skip warnings.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from tests.parity.parity_corpus import (
    png,
    records,
    skip_warnings,
    visualize,
    write_coco_corpus,
    write_voc_corpus,
)

# Each engine's run is a subprocess of the tool (a few seconds each on an idle CPU).
pytestmark = pytest.mark.slow

FED = ["rgb8", "rgb16", "grey8", "grey16", "cmyk", "rgba", "exif_labels_rotated",
       "exif_labels_stored", "border", "zero", "empty", "crowd"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("parity_data"))
    write_coco_corpus(root)
    write_voc_corpus(root)
    return root


@pytest.fixture(scope="module")
def torchvision_runs(corpus, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("vis_torchvision"))
    runs = {}
    for key, dataset, source, size in (("coco", "coco_2017_train", "dataloader", 48),
                                       ("voc", "voc_2007_trainval", "dataloader", 60),
                                       ("coco_annotation", "coco_2017_train", "annotation", 48)):
        runs[key] = (os.path.join(out, key),
                     visualize(corpus, os.path.join(out, key), "torchvision", dataset, source,
                               size))
    return runs


def _by_stem(rec: dict) -> dict:
    return {os.path.splitext(e["png"])[0]: e for e in rec["images"]}


def test_torchvision_loader_feeds_the_right_boxes(corpus, torchvision_runs):
    out, _ = torchvision_runs["coco"]
    rec = records(out)
    assert rec["source"] == "dataloader"
    assert [os.path.splitext(e["png"])[0] for e in rec["images"]] == FED
    assert [os.path.basename(s["file_name"]) for s in rec["skipped"]] == [
        "truncated.jpg", "mismatch.png"]
    assert all(e["image_size"] == [48, 64] for e in rec["images"])
    e = _by_stem(rec)
    assert e["rgb8"]["boxes"] == [[4.0, 4.0, 30.0, 20.0]] and e["rgb8"]["classes"] == ["person"]
    # touching the border: kept whole; crossing it: clipped (issue 12, b13)
    assert e["border"]["boxes"] == [[0.0, 0.0, 64.0, 48.0], [50.0, 30.0, 64.0, 48.0]]
    assert e["border"]["classes"] == ["person", "dog"]
    assert e["zero"]["boxes"] == [[5.0, 5.0, 15.0, 15.0]]  # the zero-width box is dropped
    assert e["empty"]["boxes"] == [] and e["empty"]["classes"] == []
    assert e["crowd"]["boxes"] == [[30.0, 10.0, 50.0, 30.0]] and e["crowd"]["classes"] == ["dog"]
    assert e["exif_labels_rotated"]["boxes"] == [[30.0, 6.0, 60.0, 26.0]]
    assert e["exif_labels_stored"]["boxes"] == [[2.0, 20.0, 14.0, 40.0]]


def test_torchvision_loader_decodes_every_kind_of_file(corpus, torchvision_runs):
    out, _ = torchvision_runs["coco"]
    # 16-bit files are their 8-bit twins (issue 11, b11); alpha is dropped; grey has 3 channels
    np.testing.assert_array_equal(png(out, "rgb16.png"), png(out, "rgb8.png"))
    np.testing.assert_array_equal(png(out, "rgba.png"), png(out, "rgb8.png"))
    np.testing.assert_array_equal(png(out, "grey16.png"), png(out, "grey8.png"))
    grey = png(out, "grey8.png")
    region = grey[40:, :]  # below the box and its label
    assert (region[..., 0] == region[..., 1]).all() and (region[..., 1] == region[..., 2]).all()
    img_dir = os.path.join(corpus, "coco", "train2017")
    stored = cv2.imread(os.path.join(img_dir, "exif_labels_rotated.jpg"),
                        cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    turned = cv2.rotate(stored, cv2.ROTATE_90_CLOCKWISE)  # EXIF orientation 6
    np.testing.assert_array_equal(png(out, "exif_labels_rotated.png")[30:, :28], turned[30:, :28])
    stored = cv2.imread(os.path.join(img_dir, "exif_labels_stored.jpg"),
                        cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    np.testing.assert_array_equal(png(out, "exif_labels_stored.png")[:, 32:], stored[:, 32:])
    cmyk = png(out, "cmyk.png")
    assert cmyk.shape == (48, 64, 3) and 20 < cmyk[40:].mean() < 235


def test_torchvision_loader_skips_with_one_warning_each(corpus, torchvision_runs):
    _, proc = torchvision_runs["coco"]
    img_dir = os.path.join(corpus, "coco", "train2017")
    warnings = skip_warnings(proc)
    assert len(warnings) == 2
    assert warnings[0].startswith(
        "WARNING resdet.detection: Skipping a training image (1 image(s) skipped so far in this "
        f"loader; DATALOADER.SKIP_BAD_SAMPLES): Image {img_dir}/truncated.jpg is a truncated "
        "JPEG; ")
    assert warnings[1].startswith(
        "WARNING resdet.detection: Skipping a training image (2 image(s) skipped so far in this "
        f"loader; DATALOADER.SKIP_BAD_SAMPLES): Image {img_dir}/mismatch.png is 64x40 but its "
        "annotation says 64x48; ")


def test_torchvision_voc_xml_with_floats_and_missing_tags(torchvision_runs):
    out, _ = torchvision_runs["voc"]
    e = _by_stem(records(out))
    assert e["000001"]["image_size"] == [60, 80]  # 48x64 resized to short side 60
    # VOC's 1-based xmin/ymin shifted by -1, then scaled by 60/48
    assert e["000001"]["boxes"] == [pytest.approx([11.875, 5.3125, 50.9375, 38.125], abs=1e-4)]
    assert e["000001"]["classes"] == ["dog"]
    assert e["000002"]["boxes"] == [pytest.approx([0.0, 0.0, 80.0, 60.0], abs=1e-4),
                                    pytest.approx([36.5, 24.875, 80.0, 59.5], abs=1e-4)]
    assert e["000002"]["classes"] == ["cat", "person"]


def test_annotation_source_draws_records_as_loaded(torchvision_runs):
    out, _ = torchvision_runs["coco_annotation"]
    rec = records(out)
    e = _by_stem(rec)
    assert [os.path.splitext(x["png"])[0] for x in rec["images"]] == FED
    assert e["crowd"]["boxes"] == [[0.0, 0.0, 20.0, 20.0], [30.0, 10.0, 50.0, 30.0]]
    assert e["crowd"]["iscrowd"] == [1, 0]
    assert [s["why"].split(" is ")[1] for s in rec["skipped"]] == [
        "a truncated JPEG; re-download or re-extract it, or remove it from the dataset "
        "(datasets/check.py lists all).",
        "64x40 but its annotation says 64x48; fix the annotation's width/height or the file, "
        "or remove it from the dataset (datasets/check.py lists all)."]


@pytest.mark.parametrize("key", ["coco", "voc", "coco_annotation"])
def test_detectron2_engine_writes_the_same_files(corpus, torchvision_runs, tmp_path, key):
    pytest.importorskip("detectron2")
    tv_out, tv_proc = torchvision_runs[key]
    dataset = "voc_2007_trainval" if key == "voc" else "coco_2017_train"
    source = "annotation" if key.endswith("annotation") else "dataloader"
    d2_out = str(tmp_path / "d2")
    d2_proc = visualize(corpus, d2_out, "detectron2", dataset, source, 60 if key == "voc" else 48)
    assert records(d2_out) == records(tv_out)
    pngs = sorted(f for f in os.listdir(tv_out) if f.endswith(".png"))
    assert pngs == sorted(f for f in os.listdir(d2_out) if f.endswith(".png"))
    assert len(pngs) == (2 if key == "voc" else len(FED))
    for name in pngs:
        np.testing.assert_array_equal(png(d2_out, name), png(tv_out, name), err_msg=name)
    assert skip_warnings(d2_proc) == skip_warnings(tv_proc)
