"""CIFAR-10 "python version" batches, read as published, through a restricted unpickler.

Layout (as extracted from ``cifar-10-python.tar.gz``), in either of two places::

    root/cifar10/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}   (resdet's)
    root/cifar-10-batches-py/...      (where torchvision's CIFAR10(root, download=True) puts it)

Each batch is a Python 2 pickle of ``{b"batch_label", b"labels", b"data", b"filenames"}`` with
``data`` a 10000x3072 uint8 array (1024 red, 1024 green, 1024 blue values per image, row-major).
Pickles can run code; these files only need a dict, lists, bytes and one numpy array, so the
unpickler below admits exactly those and nothing else.
"""

from __future__ import annotations

import importlib
import os
import pickle
from typing import Any, List, Tuple

import numpy as np

from resdet.errors import UserError

CIFAR10_SUBDIR = os.path.join("cifar10", "cifar-10-batches-py")
# torchvision.datasets.CIFAR10's base_folder, directly under its root
TORCHVISION_SUBDIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")

# numpy < 2 pickles name numpy.core, numpy >= 2 numpy._core; protocol-2 pickles written by
# Python 3 store bytes via _codecs.encode.
_ALLOWED = {
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
}


class _Refused(Exception):
    pass


class _CifarUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise _Refused(f"{module}.{name}")
        for mod in (module, module.replace("numpy.core", "numpy._core"),
                    module.replace("numpy._core", "numpy.core")):
            try:
                return getattr(importlib.import_module(mod), name)
            except (ImportError, AttributeError):
                continue
        raise _Refused(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused("a persistent object")


def _not_a_batch(path: str, why: str) -> UserError:
    return UserError(f"{path} is not a CIFAR-10 python batch ({why}); replace it with the file "
                     "of the same name from cifar-10-python.tar.gz.")


def read_cifar_batch(path: str) -> Tuple[np.ndarray, List[int]]:
    """Read one batch file.

    Args:
        path: e.g. ``.../cifar-10-batches-py/data_batch_1``.

    Returns:
        ``(images, labels)``: images ``N x 32 x 32 x 3`` uint8 RGB, labels ints in 0..9.

    Raises:
        UserError: missing file, or anything that is not a CIFAR-10 batch (message names it).
    """
    if not os.path.isfile(path):
        raise UserError(f"CIFAR-10 batch {path} does not exist; extract cifar-10-python.tar.gz "
                        f"again so that {os.path.dirname(path)} holds data_batch_1..5 and "
                        "test_batch (see datasets/README.md).")
    try:
        with open(path, "rb") as f:
            obj = _CifarUnpickler(f, encoding="bytes").load()
    except _Refused as e:
        raise _not_a_batch(path, f"it asks to load {e}, which is refused") from None
    except Exception as e:  # noqa: BLE001 - any failure inside pickle means a broken file
        raise _not_a_batch(path, f"{type(e).__name__}: {str(e)[:80]}") from None
    if not isinstance(obj, dict):
        raise _not_a_batch(path, f"it holds a {type(obj).__name__}, not a dict")
    obj = {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}
    data, labels = obj.get("data"), obj.get("labels")
    if not isinstance(data, np.ndarray) or labels is None:
        raise _not_a_batch(path, "no 'data' array or 'labels' list")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise _not_a_batch(path, f"'data' is {data.dtype} {tuple(data.shape)}, not uint8 Nx3072")
    labels = [int(v) for v in labels]
    if len(labels) != data.shape[0] or any(not 0 <= v < 10 for v in labels):
        raise _not_a_batch(path, "'labels' do not match 'data' or lie outside 0..9")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def cifar10_folder(root: str) -> str:
    """The ``cifar-10-batches-py`` folder under ``root``: ``cifar10/cifar-10-batches-py`` (resdet's
    layout, preferred when both exist), else ``cifar-10-batches-py`` (torchvision's); the first
    when neither exists (for messages)."""
    for sub in (CIFAR10_SUBDIR, TORCHVISION_SUBDIR):
        if os.path.isdir(os.path.join(root, sub)):
            return os.path.join(root, sub)
    return os.path.join(root, CIFAR10_SUBDIR)


def load_cifar10(root: str, train: bool) -> Tuple[np.ndarray, np.ndarray]:
    """All images and labels of the training (50k) or test (10k) set.

    Args:
        root: the datasets folder (``$DETECTRON2_DATASETS``).
        train: data_batch_1..5 when True, test_batch when False.

    Returns:
        ``(images N x 32 x 32 x 3 uint8, labels N int64)``.
    """
    folder = cifar10_folder(root)
    if not os.path.isdir(folder):
        raise UserError(f"Dataset cifar10 is not on disk: neither {folder} nor "
                        f"{os.path.join(root, TORCHVISION_SUBDIR)} exists; extract "
                        "cifar-10-python.tar.gz into one of them (see datasets/README.md) or set "
                        "$DETECTRON2_DATASETS to the folder that holds it.")
    parts = [read_cifar_batch(os.path.join(folder, n))
             for n in (TRAIN_BATCHES if train else TEST_BATCHES)]
    images = np.concatenate([p[0] for p in parts])
    labels = np.asarray([v for p in parts for v in p[1]], dtype=np.int64)
    return images, labels


def write_cifar_batch(path: str, images: np.ndarray, labels: List[int], name: str = "") -> None:
    """Write ``images`` (N x 32 x 32 x 3 uint8) as a CIFAR-10 batch (for tests and tools)."""
    data = np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), -1))
    obj = {b"batch_label": name.encode(), b"labels": [int(v) for v in labels], b"data": data,
           b"filenames": [f"{i:05d}.png".encode() for i in range(len(images))]}
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)
