"""datasets/check.py's image pass in parallel processes: same problems, same order."""

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from resdet.data import parallel_checks
from resdet.data.parallel_checks import image_problems

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def records(tmp_path):
    recs = []
    for i in range(9):
        path = str(tmp_path / f"{i}.jpg")
        cv2.imwrite(path, np.full((20, 30, 3), i, np.uint8))
        recs.append({"file_name": path, "height": 20, "width": 30})
    os.remove(recs[2]["file_name"])
    recs[5]["width"] = 31
    with open(recs[7]["file_name"], "r+b") as f:
        f.truncate(60)
    return recs


@pytest.mark.parametrize("decode", [True, False])
def test_processes_find_the_same_problems_in_order(records, monkeypatch, decode):
    serial = list(image_problems(records, decode=decode, workers=1, progress=False))
    monkeypatch.setattr(parallel_checks, "CHUNK", 2)  # 5 tasks over 3 processes
    parallel = list(image_problems(records, decode=decode, workers=3, progress=False))
    assert parallel == serial and len(serial) == 9
    bad = [i for i, m in enumerate(serial) if m]
    assert bad == [2, 5, 7]  # missing, other size, cut after 60 bytes
    assert records[2]["file_name"] in serial[2]
    assert serial[5] == f"Image {records[5]['file_name']} is 30x20 but its annotation says 31x20"


def test_check_tool_annotations_only_opens_no_image(tmp_path):
    from tests.tiny_datasets import make_tiny_coco

    make_tiny_coco(str(tmp_path), "val2017", num_images=3)
    os.remove(tmp_path / "coco" / "val2017" / sorted(os.listdir(tmp_path / "coco" / "val2017"))[0])
    env = dict(os.environ, DETECTRON2_DATASETS=str(tmp_path), PYTHONPATH=REPO)

    def check(*flags):
        return subprocess.run([sys.executable, os.path.join(REPO, "datasets", "check.py"),
                               "coco_2017_val", "--workers", "2", *flags],
                              capture_output=True, text=True, env=env)

    fast = check("--annotations-only")
    assert fast.returncode == 0 and fast.stdout.startswith("ok: 3 images")
    full = check()
    assert full.returncode == 1
    assert "coco_2017_val: 1 problem(s) in 3 images" in full.stdout
