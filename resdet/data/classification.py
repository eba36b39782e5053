"""Classification datasets: ImageNet class folders, CIFAR-10 batches, and ``synthetic_imagenet``.

=======================  ===========================================================================
name                     files under ``$DETECTRON2_DATASETS`` (default ``./datasets``)
=======================  ===========================================================================
imagenet_train           imagenet/train/<wnid>/*.JPEG
imagenet_val             imagenet/val/<wnid>/*.JPEG (sorted into class folders), or the official
                         flat imagenet/val/ILSVRC2012_val_*.JPEG with imagenet/LOC_val_solution.csv
                         or the devkit imagenet/ILSVRC2012_devkit_t12{.tar.gz,/}
cifar10_train            cifar10/cifar-10-batches-py/data_batch_1..5 (or cifar-10-batches-py/
                         directly under the root, where torchvision extracts it)
cifar10_test             cifar10/cifar-10-batches-py/test_batch (or cifar-10-batches-py/)
synthetic_imagenet       synthetic_imagenet/train/<class>/*.JPEG (generated on first use)
synthetic_imagenet_val   synthetic_imagenet/val/<class>/*.JPEG
=======================  ===========================================================================

Class folders are listed by torchvision ``ImageFolder``'s rules (:func:`list_class_folders`):
class index = position of the class folder (WordNet id) in sorted order (as ImageFolder and
fb.resnet.torch), images at any depth below it. Hidden folders are not classes, macOS ``._*``
files are not images, and a class folder without images is an error. A test set is matched to the
model's classes by name (:func:`align_labels`): the training set's, or those the weights stand for
(:func:`imagenet1k_wnids` for torchvision/timm ImageNet-1k weights), so a val folder holding some
of the classes is still labelled right.
Records: ``{"file_name", "label", "image_id"}`` for folders,
``{"image" (32x32x3 uint8 RGB), "label", "image_id"}`` for CIFAR. Metadata carries
``evaluator_type`` "classification" and ``classes``.
"""

from __future__ import annotations

import csv as csv_module
import functools
import importlib.resources
import logging
import os
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from resdet.data.catalog import dataset_root, register
from resdet.data.cls_cifar import CIFAR10_CLASSES, load_cifar10
from resdet.errors import UserError

logger = logging.getLogger(__name__)

# Which files are images: torchvision's ImageFolder list (torchvision.datasets.folder
# .IMG_EXTENSIONS, equal by test; not imported, as torchvision takes seconds to import), matched
# case-insensitively (``.JPEG``).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
# macOS writes a "._<name>" AppleDouble file (resource fork, not an image) beside each file it
# copies to a non-Mac disk; ImageFolder would list "._x.JPEG" as an image and fail to decode it.
APPLEDOUBLE_PREFIX = "._"
_FOLDER_SETS = {
    "imagenet_train": ("imagenet", "train"),
    "imagenet_val": ("imagenet", "val"),
    "synthetic_imagenet": ("synthetic_imagenet", "train"),
    "synthetic_imagenet_val": ("synthetic_imagenet", "val"),
}
_CIFAR_SETS = {"cifar10_train": True, "cifar10_test": False}
CLASSIFICATION_DATASETS = tuple(_FOLDER_SETS) + tuple(_CIFAR_SETS)


class ClassFolderListing(NamedTuple):
    """What an ImageFolder-style tree holds, by :func:`list_class_folders`.

    Attributes:
        classes: class folder names, sorted (the label of a class is its position).
        samples: ``(path, label)`` in ImageFolder's order.
        hidden_skipped: hidden folders without images that are not classes (paths).
        appledouble: macOS ``._*`` files that were not taken as images (paths).
    """

    classes: List[str]
    samples: List[Tuple[str, int]]
    hidden_skipped: List[str]
    appledouble: List[str]


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _class_folder_names(folder: str) -> Tuple[List[str], List[str]]:
    """(classes, hidden folders): the sub-folders of ``folder`` as ImageFolder's
    ``find_classes`` takes them (symlinks to folders count), hidden ones set apart."""
    try:
        names = sorted(e.name for e in os.scandir(folder) if e.is_dir())
    except OSError as e:  # ImageFolder lets PermissionError through
        raise UserError(f"Cannot list the dataset folder {folder} ({e.strerror or e}); check "
                        "its permissions.") from None
    return [n for n in names if not _is_hidden(n)], [n for n in names if _is_hidden(n)]


def _image_files(folder: str, cls: str, appledouble: List[str]) -> List[str]:
    """Image paths under ``folder/cls``, exactly as torchvision's ``make_dataset`` walks it
    (every depth, symlinks followed, sorted by folder then name, extensions of
    :data:`IMAGE_EXTENSIONS` in any case), less AppleDouble files, which go to ``appledouble``."""
    from torchvision.datasets.folder import make_dataset

    def is_image(path: str) -> bool:
        if not path.lower().endswith(IMAGE_EXTENSIONS):
            return False
        if os.path.basename(path).startswith(APPLEDOUBLE_PREFIX):
            appledouble.append(path)
            return False
        return True

    # ImageFolder's own walk, so that depth, order and symlinks cannot drift from it.
    return [p for p, _ in make_dataset(folder, {cls: 0}, is_valid_file=is_image,
                                       allow_empty=True)]


def _folders_without_images(paths: Sequence[str]) -> str:
    shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
    unreadable = [p for p in paths if not os.access(p, os.R_OK | os.X_OK)]
    why = " (some cannot be read: check their permissions)" if unreadable else ""
    return (f"{len(paths)} class folder(s) hold no images{why}: {shown}; torchvision's "
            "ImageFolder refuses empty classes too, so add images "
            f"({', '.join(IMAGE_EXTENSIONS)}) or remove the folder(s)")


def list_class_folders(folder: str, name: str = "") -> ClassFolderListing:
    """List an ImageFolder-style tree by the rules of torchvision's ``ImageFolder``.

    The classes are the sub-folders of ``folder`` (``find_classes``); the images of a class are
    the files at any depth below its folder, symlinks followed, whose names end in one of
    :data:`IMAGE_EXTENSIONS` in any case (``make_dataset``), in the same order, so labels and
    sample order equal ``ImageFolder(folder)``'s. resdet departs in three ways, each refusing or
    skipping with a message rather than labelling differently:

    - hidden folders (``.ipynb_checkpoints`` that Jupyter leaves, ``.Trash``) are not classes:
      without images they are skipped; with images they are an error (ImageFolder would make
      them a class);
    - macOS AppleDouble files (``._*``) are not images;
    - a class folder without images is an error (as ImageFolder's default ``allow_empty=False``).

    Args:
        folder: the split folder (e.g. ``datasets/imagenet/train``).
        name: dataset name for messages.

    Returns:
        A :class:`ClassFolderListing`.

    Raises:
        UserError: the folder is missing, holds no class folder, a class folder holds no images,
            or a hidden folder holds images (each message names the folder).
    """
    what = f"Dataset {name}" if name else "The class-folder dataset"
    if not os.path.isdir(folder):
        raise UserError(f"{what} is not on disk: {folder} does not exist; put it there in the "
                        "class-folder layout (<split>/<wnid>/*.JPEG, see datasets/README.md) or "
                        "set $DETECTRON2_DATASETS to the folder that holds it.")
    classes, hidden = _class_folder_names(folder)
    appledouble: List[str] = []
    hidden_skipped: List[str] = []
    for h in hidden:
        n = len(_image_files(folder, h, appledouble))
        if n:
            raise UserError(f"{what}: the hidden folder {os.path.join(folder, h)} holds {n} "
                            "images; resdet takes no hidden folder as a class (torchvision's "
                            "ImageFolder would), so rename it without the leading '.' to make it "
                            "a class, or move it out of the dataset.")
        hidden_skipped.append(os.path.join(folder, h))
    if not classes:
        raise UserError(f"{what}: {folder} holds no class folders; expected "
                        "<split>/<class>/<image> files (datasets/README.md).")
    samples: List[Tuple[str, int]] = []
    empty: List[str] = []
    for label, cls in enumerate(classes):
        files = _image_files(folder, cls, appledouble)
        if not files:
            empty.append(os.path.join(folder, cls))
        samples.extend((f, label) for f in files)
    if empty:
        raise UserError(f"{what}: {_folders_without_images(empty)}.")
    return ClassFolderListing(classes, samples, hidden_skipped, appledouble)


def appledouble_problems(listing: ClassFolderListing) -> List[str]:
    """One sentence per AppleDouble file of a listing, naming it (datasets/check.py's problems)."""
    return [f"{p} is a macOS AppleDouble file, not an image; it is skipped (delete such files: "
            f"find <dataset folder> -name '{APPLEDOUBLE_PREFIX}*' -delete)"
            for p in listing.appledouble]


def scan_class_folders(folder: str, name: str = "") -> Tuple[List[dict], List[str]]:
    """Records of an ImageFolder-style tree: one sub-folder per class, images inside.

    Listed by :func:`list_class_folders` (torchvision ImageFolder's rules); skipped hidden folders
    and AppleDouble files are logged in one warning each.

    Args:
        folder: the split folder (e.g. ``datasets/imagenet/train``).
        name: dataset name for messages.

    Returns:
        ``(records, classes)`` with labels indexing the sorted class folder names.

    Raises:
        UserError: see :func:`list_class_folders`.
    """
    listing = list_class_folders(folder, name)
    if listing.hidden_skipped:
        logger.warning("%s: hidden folder(s) %s hold no images and are not classes.",
                       name or folder, ", ".join(listing.hidden_skipped[:3]))
    if listing.appledouble:
        logger.warning("%s: skipped %d macOS AppleDouble file(s) ('._*', e.g. %s), which are not "
                       "images; datasets/check.py lists them.", name or folder,
                       len(listing.appledouble), listing.appledouble[0])
    records = [{"file_name": path, "label": label, "image_id": i}
               for i, (path, label) in enumerate(listing.samples)]
    stray = len(_flat_images(folder))
    if stray:
        logger.warning("%s holds %d images outside its class folders (a half-sorted val set?); "
                       "they are not used.", folder, stray)
    return records, listing.classes


def _folder_path(name: str) -> str:
    sub, split = _FOLDER_SETS[name]
    return os.path.join(dataset_root(), sub, split)


def _has_class_folders(folder: str) -> bool:
    return bool(_class_folder_names(folder)[0])


def _flat_images(folder: str) -> List[str]:
    return sorted(f.name for f in os.scandir(folder)
                  if f.is_file() and f.name.lower().endswith(IMAGE_EXTENSIONS)
                  and not f.name.startswith(APPLEDOUBLE_PREFIX))


def _is_flat_val(name: str, folder: str) -> bool:
    return (name == "imagenet_val" and os.path.isdir(folder) and not _has_class_folders(folder)
            and bool(_flat_images(folder)))


def _load_folder(name: str) -> List[dict]:
    if name.startswith("synthetic_imagenet"):
        from resdet.data.cls_synthetic import generate_synthetic_imagenet

        generate_synthetic_imagenet(dataset_root())
    folder = _folder_path(name)
    if _is_flat_val(name, folder):
        return _load_flat_imagenet_val(folder)
    return scan_class_folders(folder, name)[0]


def folder_dataset_problems(name: str) -> List[str]:
    """The AppleDouble files of a class-folder dataset, one sentence each (see
    :func:`appledouble_problems`); empty for CIFAR-10 and ImageNet's flat val. For
    ``datasets/check.py``, which exits non-zero on them."""
    if name not in _FOLDER_SETS:
        return []
    folder = _folder_path(name)
    if _is_flat_val(name, folder):
        return []
    return appledouble_problems(list_class_folders(folder, name))


def _folder_metadata(name: str) -> Dict[str, Any]:
    path = _folder_path(name)
    if _is_flat_val(name, path):
        classes = sorted(set(imagenet_val_labels(os.path.dirname(path)).values()))
    else:
        # the classes list_class_folders finds (it refuses a tree where they would differ)
        classes = _class_folder_names(path)[0] if os.path.isdir(path) else []
    return {"name": name, "evaluator_type": "classification", "root": path, "classes": classes,
            "image_root": path}


# ------------------------------------------------------------------ ImageNet's flat val layout
VAL_SOLUTION_CSV = "LOC_val_solution.csv"
DEVKIT = "ILSVRC2012_devkit_t12"
_DEVKIT_GT = "data/ILSVRC2012_validation_ground_truth.txt"
_DEVKIT_META = "data/meta.mat"


def _file_key(path: str) -> Tuple[str, int, int]:
    st = os.stat(path)
    return path, st.st_mtime_ns, st.st_size


def imagenet_val_labels(imagenet_root: str) -> Dict[str, str]:
    """Ground truth of ImageNet's official (flat) val set: image name stem -> WordNet id.

    Reads, in this order, ``<imagenet_root>/LOC_val_solution.csv`` (Kaggle's ImageNet
    localization challenge: ``ImageId,PredictionString``, the first token is the WordNet id), the
    devkit folder ``ILSVRC2012_devkit_t12/`` or its archive ``ILSVRC2012_devkit_t12.tar.gz``
    (``data/ILSVRC2012_validation_ground_truth.txt``: the ILSVRC2012_ID of val image 1, 2, ...;
    ``data/meta.mat``: ILSVRC2012_ID -> WordNet id, as torchvision's ``ImageNet`` reads it).

    Raises:
        UserError: no label file, or one that cannot be read (naming the file).
    """
    csv = os.path.join(imagenet_root, VAL_SOLUTION_CSV)
    if os.path.isfile(csv):
        return _read_val_solution(*_file_key(csv))
    folder = os.path.join(imagenet_root, DEVKIT)
    if os.path.isdir(folder):
        gt, meta = os.path.join(folder, _DEVKIT_GT), os.path.join(folder, _DEVKIT_META)
        for path in (gt, meta):
            if not os.path.isfile(path):
                raise UserError(f"The ImageNet devkit folder {folder} has no {path}; unpack "
                                f"{DEVKIT}.tar.gz from image-net.org there again.")
        return _read_devkit(*_file_key(gt), *_file_key(meta))
    archive = folder + ".tar.gz"
    if os.path.isfile(archive):
        return _read_devkit_archive(*_file_key(archive))
    raise UserError(f"{os.path.join(imagenet_root, 'val')} holds ImageNet's flat val images but "
                    f"no labels: put {VAL_SOLUTION_CSV} (Kaggle) or {DEVKIT}.tar.gz "
                    f"(image-net.org) in {imagenet_root}, or sort val into class folders "
                    "(datasets/README.md).")


@functools.lru_cache(maxsize=4)
def _read_val_solution(path: str, _mtime: int, _size: int) -> Dict[str, str]:
    labels: Dict[str, str] = {}
    try:
        with open(path, newline="") as f:
            rows = list(csv_module.reader(f))
    except (OSError, UnicodeDecodeError, csv_module.Error) as e:
        raise UserError(f"Cannot read {path}: {e}; download it again.") from e
    if not rows or [c.strip() for c in rows[0][:2]] != ["ImageId", "PredictionString"]:
        raise UserError(f"{path} is not Kaggle's {VAL_SOLUTION_CSV}: its first line should be "
                        "'ImageId,PredictionString'.")
    for lineno, row in enumerate(rows[1:], start=2):
        tokens = row[1].split() if len(row) >= 2 else []
        if not tokens or not row[0]:
            raise UserError(f"{path} line {lineno} has no image id or WordNet id: {row!r}.")
        labels[row[0].strip()] = tokens[0]
    return labels


def _devkit_labels(gt_text: str, meta_file: Any, where: str) -> Dict[str, str]:
    try:
        from scipy import io as sio
    except ImportError as e:  # pragma: no cover - scipy is a dependency
        raise UserError("Reading the ImageNet devkit's meta.mat needs scipy: pip install scipy.") \
            from e
    try:
        synsets = sio.loadmat(meta_file, squeeze_me=True)["synsets"]
        id_to_wnid = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets
                      if int(s["num_children"]) == 0}
    except Exception as e:  # a truncated or foreign .mat file
        raise UserError(f"Cannot read {where}/{_DEVKIT_META} ({e}); download {DEVKIT}.tar.gz "
                        "again.") from e
    labels: Dict[str, str] = {}
    for i, line in enumerate(gt_text.split(), start=1):
        try:
            labels[f"ILSVRC2012_val_{i:08d}"] = id_to_wnid[int(line)]
        except (ValueError, KeyError) as e:
            raise UserError(f"{where}/{_DEVKIT_GT} line {i}: {line!r} is not an ILSVRC2012_ID of "
                            "meta.mat's 1000 classes; download the devkit again.") from e
    return labels


@functools.lru_cache(maxsize=4)
def _read_devkit(gt: str, _m1: int, _s1: int, meta: str, _m2: int, _s2: int) -> Dict[str, str]:
    with open(gt) as f:
        text = f.read()
    return _devkit_labels(text, meta, os.path.dirname(os.path.dirname(gt)))


@functools.lru_cache(maxsize=4)
def _read_devkit_archive(path: str, _mtime: int, _size: int) -> Dict[str, str]:
    import io
    import tarfile

    try:
        with tarfile.open(path) as tar:
            files = {}
            for suffix in (_DEVKIT_GT, _DEVKIT_META):
                member = next((m for m in tar.getmembers() if m.name.endswith(suffix)), None)
                if member is None:
                    raise UserError(f"{path} holds no {suffix}; is it ILSVRC2012's devkit "
                                    f"({DEVKIT}.tar.gz)?")
                files[suffix] = tar.extractfile(member).read()
    except (OSError, EOFError, tarfile.TarError) as e:
        raise UserError(f"Cannot read {path} ({e}); download it again.") from e
    return _devkit_labels(files[_DEVKIT_GT].decode(), io.BytesIO(files[_DEVKIT_META]), path)


def _load_flat_imagenet_val(folder: str) -> List[dict]:
    """Records of the flat val folder, labelled by sorted WordNet id like the class folders."""
    labels = imagenet_val_labels(os.path.dirname(folder))
    classes = sorted(set(labels.values()))
    index = {c: i for i, c in enumerate(classes)}
    records: List[dict] = []
    for fn in _flat_images(folder):
        wnid = labels.get(os.path.splitext(fn)[0])
        if wnid is None:
            raise UserError(f"{os.path.join(folder, fn)} has no label in the val ground truth "
                            f"next to {folder}; remove it or use the matching label file.")
        records.append({"file_name": os.path.join(folder, fn), "label": index[wnid],
                        "image_id": len(records)})
    if len(records) < len(labels):
        logger.warning("%s holds %d of the %d labelled val images; the rest are missing.", folder,
                       len(records), len(labels))
    return records


IMAGENET1K_WNIDS_FILE = "imagenet1k_wnids.txt"


@functools.lru_cache(maxsize=1)
def imagenet1k_wnids() -> Tuple[str, ...]:
    """ImageNet-1k's 1000 WordNet ids, sorted: what output i of torchvision's and timm's
    ImageNet-1k classifiers stands for (the class-folder order of ImageNet's train set).

    Shipped as package data (``resdet/data/imagenet1k_wnids.txt``, copied from timm's
    ``timm/data/_info/imagenet_synsets.txt``; its header names the origin).
    """
    text = importlib.resources.files("resdet.data").joinpath(IMAGENET1K_WNIDS_FILE).read_text()
    ids = tuple(line.strip() for line in text.splitlines()
                if line.strip() and not line.startswith("#"))
    assert len(ids) == 1000 and list(ids) == sorted(set(ids)), "damaged " + IMAGENET1K_WNIDS_FILE
    return ids


def align_labels(records: Sequence[dict], classes: Sequence[str], reference: Sequence[str],
                 name: str, reference_name: str) -> List[dict]:
    """Relabel a test set so its labels index the training set's classes, matched by name.

    A val folder without some class folders (or extra empty ones) would otherwise shift every
    label after the gap, silently.

    Args:
        records: the test set's records, labels indexing ``classes``.
        classes: the test set's class names.
        reference: the model's classes in its output order (the training set's, or those
            the weights stand for, e.g. :func:`imagenet1k_wnids`).
        name, reference_name: the test set's name and what ``reference`` is, for the message.

    Raises:
        UserError: the test set has images of classes that ``reference`` does not have.
    """
    if list(classes) == list(reference):
        return list(records)
    index = {c: i for i, c in enumerate(reference)}
    used = sorted({classes[r["label"]] for r in records})
    unknown = [c for c in used if c not in index]
    if unknown:
        raise UserError(f"Dataset {name} has images of {len(unknown)} classes that "
                        f"{reference_name} does not have ({', '.join(unknown[:5])}"
                        f"{', ...' if len(unknown) > 5 else ''}), so the model cannot name them; "
                        "evaluate on classes among the model's (matched by class folder name, "
                        "e.g. WordNet id).")
    return [dict(r, label=index[classes[r["label"]]]) for r in records]


def _load_cifar(name: str) -> List[dict]:
    images, labels = load_cifar10(dataset_root(), train=_CIFAR_SETS[name])
    return [{"image": images[i], "label": int(labels[i]), "image_id": i}
            for i in range(len(labels))]


def _cifar_metadata(name: str) -> Dict[str, Any]:
    from resdet.data.cls_cifar import cifar10_folder

    return {"name": name, "evaluator_type": "classification", "classes": list(CIFAR10_CLASSES),
            "root": cifar10_folder(dataset_root())}


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
