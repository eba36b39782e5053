"""A user's own small COCO- and VOC-format datasets, written by the tests that need one."""

import json
import os

from PIL import Image


def write_coco(root, name="ann.json"):
    """Three 96x72 images under root/imgs, class ids 3 (cat) and 7 (dog) as b20 has them."""
    os.makedirs(root / "imgs", exist_ok=True)
    images, anns = [], []
    for i in (1, 2, 3):
        Image.new("RGB", (96, 72), (40 * i, 0, 0)).save(root / "imgs" / f"img{i}.jpg")
        images.append({"id": i, "file_name": f"img{i}.jpg", "width": 96, "height": 72})
        anns.append({"id": i, "image_id": i, "category_id": 3 if i % 2 else 7,
                     "bbox": [10, 10, 40, 30], "area": 1200, "iscrowd": 0})
    path = root / name
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": [
        {"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}]}))
    return str(path)


def write_voc(root, classes=("cat", "dog")):
    """A VOC-layout folder (Annotations, ImageSets/Main/val.txt, JPEGImages) with two images."""
    for sub in ("Annotations", "ImageSets/Main", "JPEGImages"):
        os.makedirs(root / sub, exist_ok=True)
    for k, stem in enumerate(("a", "b")):
        Image.new("RGB", (64, 48)).save(root / "JPEGImages" / f"{stem}.jpg")
        (root / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}.jpg</filename><size><width>64</width>"
            f"<height>48</height><depth>3</depth></size><object><name>{classes[k]}</name>"
            "<difficult>0</difficult><bndbox><xmin>5</xmin><ymin>6</ymin><xmax>30</xmax>"
            "<ymax>40</ymax></bndbox></object></annotation>")
    (root / "ImageSets" / "Main" / "val.txt").write_text("a\nb\n")
    return str(root)
