"""The hand-computed VOC case shared by the evaluator and tools/evaluate.py tests: two images of
one class, a difficult box on the first (AP: 8.5/11 with the 2007 metric, 0.75 with 2012's)."""

import os

from tests.tiny_datasets import make_tiny_voc, voc_xml


def write_hand_voc(root, year: int, split: str) -> str:
    """A VOC<year> tree whose ``split`` holds images 000001 (a dog and a difficult dog) and
    000002 (a dog); returns its folder."""
    base = make_tiny_voc(str(root), year, {split: 2})
    ann = os.path.join(base, "Annotations")
    with open(os.path.join(ann, "000001.xml"), "w") as f:
        f.write(voc_xml("000001.jpg", 60, 70, [
            {"name": "dog", "bbox": (1, 1, 10, 10)},
            {"name": "dog", "bbox": (21, 21, 30, 30), "difficult": 1}]))
    with open(os.path.join(ann, "000002.xml"), "w") as f:
        f.write(voc_xml("000002.jpg", 60, 70, [{"name": "dog", "bbox": (1, 1, 10, 10)}]))
    return base
