"""Classification datasets: ImageNet class folders, CIFAR-10 batches, and ``synthetic_imagenet``.

=======================  ===============================================================
name                     files under ``$DETECTRON2_DATASETS`` (default ``./datasets``)
=======================  ===============================================================
imagenet_train           imagenet/train/<wnid>/*.JPEG
imagenet_val             imagenet/val/<wnid>/*.JPEG (the val set sorted into class folders)
cifar10_train            cifar10/cifar-10-batches-py/data_batch_1..5
cifar10_test             cifar10/cifar-10-batches-py/test_batch
synthetic_imagenet       synthetic_imagenet/train/<class>/*.JPEG (generated on first use)
synthetic_imagenet_val   synthetic_imagenet/val/<class>/*.JPEG
=======================  ===============================================================

Class index = position of the class folder in sorted order (as torchvision's ImageFolder and
fb.resnet.torch). Records: ``{"file_name", "label", "image_id"}`` for folders,
``{"image" (32x32x3 uint8 RGB), "label", "image_id"}`` for CIFAR. Metadata carries
``evaluator_type`` "classification" and ``classes``.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from resdet.data.catalog import dataset_root, register
from resdet.data.cls_cifar import CIFAR10_CLASSES, load_cifar10
from resdet.errors import UserError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")
_FOLDER_SETS = {
    "imagenet_train": ("imagenet", "train"),
    "imagenet_val": ("imagenet", "val"),
    "synthetic_imagenet": ("synthetic_imagenet", "train"),
    "synthetic_imagenet_val": ("synthetic_imagenet", "val"),
}
_CIFAR_SETS = {"cifar10_train": True, "cifar10_test": False}
CLASSIFICATION_DATASETS = tuple(_FOLDER_SETS) + tuple(_CIFAR_SETS)


def scan_class_folders(folder: str, name: str = "") -> Tuple[List[dict], List[str]]:
    """Records of an ImageFolder-style tree: one sub-folder per class, images inside.

    Args:
        folder: the split folder (e.g. ``datasets/imagenet/train``).
        name: dataset name for messages.

    Returns:
        ``(records, classes)`` with labels indexing the sorted class folder names.

    Raises:
        UserError: the folder is missing or holds no class folders with images.
    """
    if not os.path.isdir(folder):
        raise UserError(f"Dataset {name or folder} is not on disk: {folder} does not exist; put "
                        "it there in the class-folder layout (<split>/<wnid>/*.JPEG, see "
                        "datasets/README.md) or set $DETECTRON2_DATASETS to the folder that "
                        "holds it.")
    classes = sorted(d.name for d in os.scandir(folder) if d.is_dir())
    records: List[dict] = []
    for label, cls in enumerate(classes):
        cdir = os.path.join(folder, cls)
        files = sorted(f.name for f in os.scandir(cdir)
                       if f.is_file() and f.name.lower().endswith(IMAGE_EXTENSIONS))
        for fn in files:
            records.append({"file_name": os.path.join(cdir, fn), "label": label,
                            "image_id": len(records)})
    if not records:
        raise UserError(f"Dataset {name or folder}: {folder} holds no class folders with images "
                        f"({', '.join(e.lower() for e in IMAGE_EXTENSIONS[:3])}, ...); expected "
                        "<split>/<class>/<image> files.")
    return records, classes


def _folder_path(name: str) -> str:
    sub, split = _FOLDER_SETS[name]
    return os.path.join(dataset_root(), sub, split)


def _load_folder(name: str) -> List[dict]:
    if name.startswith("synthetic_imagenet"):
        from resdet.data.cls_synthetic import generate_synthetic_imagenet

        generate_synthetic_imagenet(dataset_root())
    return scan_class_folders(_folder_path(name), name)[0]


def _folder_metadata(name: str) -> Dict[str, Any]:
    path = _folder_path(name)
    classes = (sorted(d.name for d in os.scandir(path) if d.is_dir())
               if os.path.isdir(path) else [])
    return {"name": name, "evaluator_type": "classification", "root": path, "classes": classes,
            "image_root": path}


def _load_cifar(name: str) -> List[dict]:
    images, labels = load_cifar10(dataset_root(), train=_CIFAR_SETS[name])
    return [{"image": images[i], "label": int(labels[i]), "image_id": i}
            for i in range(len(labels))]


def _cifar_metadata(name: str) -> Dict[str, Any]:
    from resdet.data.cls_cifar import CIFAR10_SUBDIR

    return {"name": name, "evaluator_type": "classification", "classes": list(CIFAR10_CLASSES),
            "root": os.path.join(dataset_root(), CIFAR10_SUBDIR)}


def held_out_split(records: Sequence[dict], val_size: int, seed: int = 0
                   ) -> Tuple[List[dict], List[dict]]:
    """Split training records into (train, held-out val) with a fixed seeded permutation.

    The paper's CIFAR-10 analysis (Sec. 4.2) trains on 45k images and validates on the other 5k.

    Args:
        records: the full training set.
        val_size: number of held-out images (5000 for the paper).
        seed: permutation seed (fixed so every run holds out the same images).

    Returns:
        ``(train_records, val_records)``.
    """
    if not 0 < val_size < len(records):
        raise UserError(f"PRETRAIN.VAL_SPLIT {val_size} must be between 1 and the training set "
                        f"size minus one ({len(records) - 1}).")
    order = np.random.default_rng(seed).permutation(len(records))
    val_idx = set(order[:val_size].tolist())
    train = [r for i, r in enumerate(records) if i not in val_idx]
    val = [r for i, r in enumerate(records) if i in val_idx]
    return train, val


def is_classification_dataset(name: str) -> bool:
    """True for names registered by this module (or any with evaluator_type classification)."""
    if name in CLASSIFICATION_DATASETS:
        return True
    from resdet.data.catalog import get_metadata

    try:
        return get_metadata(name).get("evaluator_type") == "classification"
    except UserError:
        return False


def num_classes_of(name: str, records: Optional[Sequence[dict]] = None) -> int:
    """Number of classes of a classification dataset."""
    from resdet.data.catalog import get_metadata

    classes = get_metadata(name).get("classes") or []
    if classes:
        return len(classes)
    return 1 + max(r["label"] for r in records) if records else 0


def _register() -> None:
    for name in _FOLDER_SETS:
        register(name, lambda n=name: _load_folder(n), lambda n=name: _folder_metadata(n))
    for name in _CIFAR_SETS:
        register(name, lambda n=name: _load_cifar(n), lambda n=name: _cifar_metadata(n))


_register()
