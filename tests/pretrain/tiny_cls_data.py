"""Tiny classification datasets in the official layouts, built by tests (no downloads)."""

from __future__ import annotations

import os
from typing import List, Sequence

import numpy as np


def _pattern(k: int, i: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Class k: a bright bar at a class-specific row band, plus noise (learnable, cheap)."""
    img = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
    band = size // 4
    y0 = (k * band) % (size - band)
    img[y0:y0 + band, :, k % 3] = 230
    return img


def make_imagenet_folders(root: str, classes: int = 3, per_class: int = 6, val_per_class: int = 2,
                          size: int = 40, wnid: bool = True, names: Sequence[str] = ()) -> str:
    """``root/imagenet/{train,val}/<wnid>/*.JPEG`` as ImageNet's class-folder layout (folder
    names: ``names``, else made-up WordNet-style ids, or ``class<k>`` without ``wnid``)."""
    import cv2

    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("val", val_per_class)):
        for k in range(classes):
            name = names[k] if names else f"n{1440764 + k:08d}" if wnid else f"class{k}"
            folder = os.path.join(root, "imagenet", split, name)
            os.makedirs(folder, exist_ok=True)
            for i in range(n):
                h, w = size, size + 8 * (i % 3)  # non-square images too
                img = _pattern(k, i, max(h, w), rng)[:h, :w]
                cv2.imwrite(os.path.join(folder, f"{name}_{i:04d}.JPEG"), img[:, :, ::-1])
    return os.path.join(root, "imagenet")


def make_cifar_batches(root: str, per_batch: int = 8, test: int = 10,
                       torchvision_layout: bool = False) -> str:
    """``root/cifar10/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``, or with
    ``torchvision_layout`` ``root/cifar-10-batches-py/...`` (where torchvision extracts it)."""
    import pickle

    from resdet.data.cls_cifar import CIFAR10_CLASSES, write_cifar_batch

    folder = os.path.join(root, *([] if torchvision_layout else ["cifar10"]),
                          "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(1)
    for b in range(1, 6):
        labels = [(b * per_batch + i) % 10 for i in range(per_batch)]
        imgs = np.stack([_pattern(k, i, 32, rng) for i, k in enumerate(labels)])
        write_cifar_batch(os.path.join(folder, f"data_batch_{b}"), imgs, labels,
                          f"training batch {b} of 5")
    labels = [i % 10 for i in range(test)]
    imgs = np.stack([_pattern(k, i, 32, rng) for i, k in enumerate(labels)])
    write_cifar_batch(os.path.join(folder, "test_batch"), imgs, labels, "testing batch 1 of 1")
    with open(os.path.join(folder, "batches.meta"), "wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in CIFAR10_CLASSES],
                     b"num_cases_per_batch": per_batch, b"num_vis": 3072}, f, protocol=2)
    return folder


def make_flat_imagenet_val(root: str, wnids: List[str], labels: str = "csv",
                           size: int = 24) -> List[str]:
    """ImageNet's official flat val: ``root/imagenet/val/ILSVRC2012_val_<i>.JPEG`` (image i of
    class ``wnids[i - 1]``) and its ground truth, in one of the published forms.

    Args:
        labels: ``"csv"`` (Kaggle's LOC_val_solution.csv), ``"devkit"`` (the unpacked
            ILSVRC2012_devkit_t12 folder) or ``"devkit_tar"`` (ILSVRC2012_devkit_t12.tar.gz).

    Returns:
        the image name stems, in order.
    """
    import cv2

    imagenet = os.path.join(root, "imagenet")
    val = os.path.join(imagenet, "val")
    os.makedirs(val, exist_ok=True)
    rng = np.random.default_rng(2)
    stems = [f"ILSVRC2012_val_{i:08d}" for i in range(1, len(wnids) + 1)]
    for stem in stems:
        cv2.imwrite(os.path.join(val, stem + ".JPEG"), _pattern(0, 0, size, rng))
    if labels == "csv":
        with open(os.path.join(imagenet, "LOC_val_solution.csv"), "w") as f:
            f.write("ImageId,PredictionString\n")
            for stem, w in zip(stems, wnids):
                f.write(f"{stem},{w} 1 2 20 21 {w} 3 4 10 12 \n")
        return stems
    # The devkit numbers the classes by ILSVRC2012_ID in WordNet order, not by sorted WordNet id:
    # give them IDs in reverse sorted order, with one inner (non-leaf) synset that must be ignored.
    from scipy import io as sio

    leaves = sorted(set(wnids), reverse=True)
    dtype = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("gloss", "O"),
             ("num_children", "O"), ("children", "O"), ("wordnet_height", "O"),
             ("num_train_images", "O")]
    rows = [(i + 1, w, w, "", 0, np.zeros(0), 0, 1300) for i, w in enumerate(leaves)]
    rows.append((len(leaves) + 1, "n00001740", "entity", "", 2, np.array([1, 2]), 19, 0))
    synsets = np.array(rows, dtype=dtype)
    ids = {w: i + 1 for i, w in enumerate(leaves)}
    devkit = os.path.join(imagenet, "ILSVRC2012_devkit_t12")
    os.makedirs(os.path.join(devkit, "data"), exist_ok=True)
    sio.savemat(os.path.join(devkit, "data", "meta.mat"), {"synsets": synsets})
    with open(os.path.join(devkit, "data", "ILSVRC2012_validation_ground_truth.txt"), "w") as f:
        f.write("".join(f"{ids[w]}\n" for w in wnids))
    if labels == "devkit_tar":
        import shutil
        import tarfile

        with tarfile.open(devkit + ".tar.gz", "w:gz") as tar:
            tar.add(devkit, arcname="ILSVRC2012_devkit_t12")
        shutil.rmtree(devkit)
    return stems


def make_b22_folders(root: str) -> None:
    """The handed case b22: ImageNet-style train/val with an empty .ipynb_checkpoints folder."""
    from PIL import Image

    for split, n in (("train", 2), ("val", 1)):
        for ci, c in enumerate(["n01", "n02", "n03"]):
            for i in range(n):
                p = os.path.join(root, "imagenet", split, c, f"{c}_{i}.JPEG")
                os.makedirs(os.path.dirname(p), exist_ok=True)
                Image.new("RGB", (12, 10), (60 * ci, 0, 0)).save(p)
        os.makedirs(os.path.join(root, "imagenet", split, ".ipynb_checkpoints"))
