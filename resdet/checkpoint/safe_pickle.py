"""Read ``.pkl`` weight files without letting them run code.

A pickle is a small program: its ``GLOBAL``/``REDUCE`` opcodes can import and call anything, so
``pickle.load`` on a downloaded file is code execution. Weight pickles (Detectron2's model zoo, the
MSRA/Caffe2 ``R-50.pkl`` files) only need plain containers and numpy arrays, so this unpickler
admits exactly those globals and refuses everything else *before* it is called: nothing runs.

Training checkpoints of other trainers also hold their options as plain-data objects
(``argparse.Namespace`` in torchvision's reference scripts, timm and DINO; paths): those classes
are admitted too, here and in ``torch.load(weights_only=True)``'s allow-list
(:func:`allowed_globals`). Each is rebuilt from its fields without running any of its methods:
none defines ``__setstate__`` or ``__reduce__``-time code beyond its constructor's copy of
strings.
"""

from __future__ import annotations

import importlib
import pickle
from pathlib import Path
from typing import Any

from resdet.errors import UserError

# (module, name) pairs a weight pickle may import. Python 2 pickles (the MSRA files) name
# "__builtin__"; numpy < 2 pickles name "numpy.core", numpy >= 2 "numpy._core".
_BUILTINS = ("dict", "list", "tuple", "set", "frozenset", "str", "bytes", "bytearray", "int",
             "float", "complex", "bool", "unicode", "long")
_ALLOWED: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {
    **{(mod, name): (("builtins", "str" if name == "unicode" else "int" if name == "long"
                      else name),)
       for mod in ("builtins", "__builtin__") for name in _BUILTINS},
    ("collections", "OrderedDict"): (("collections", "OrderedDict"),),
    # protocol-2 pickles written by Python 3 store bytes as _codecs.encode(text, "latin1")
    ("_codecs", "encode"): (("_codecs", "encode"),),
    ("numpy", "ndarray"): (("numpy", "ndarray"),),
    ("numpy", "dtype"): (("numpy", "dtype"),),
    # the options trainers store next to the weights: plain attribute bags and paths
    ("argparse", "Namespace"): (("argparse", "Namespace"),),
    ("types", "SimpleNamespace"): (("types", "SimpleNamespace"),),
    ("pathlib", "PosixPath"): (("pathlib", "PosixPath"),),
    ("pathlib", "PurePosixPath"): (("pathlib", "PurePosixPath"),),
    ("pathlib", "PureWindowsPath"): (("pathlib", "PureWindowsPath"),),
}
for _sub in ("core", "_core"):
    for _name in ("_reconstruct", "scalar"):
        _ALLOWED[(f"numpy.{_sub}.multiarray", _name)] = (
            ("numpy._core.multiarray", _name), ("numpy.core.multiarray", _name))
    # protocol 5 pickles rebuild contiguous arrays from an out-of-band buffer
    _ALLOWED[(f"numpy.{_sub}.numeric", "_frombuffer")] = (
        ("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer"))


def _resolve(candidates: tuple[tuple[str, str], ...]) -> Any:
    # numpy 2 keeps numpy.core only as a deprecated alias, so try numpy._core first
    for module, name in candidates:
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"none of {candidates} can be imported")


def allowed_globals() -> list:
    """The objects a weight pickle may use (also handed to ``torch.serialization.safe_globals``)."""
    out = []
    for candidates in _ALLOWED.values():
        try:
            obj = _resolve(candidates)
        except ImportError:
            continue
        if obj not in out and getattr(obj, "__module__", None) not in ("builtins", None):
            out.append(obj)
    # torch's weights_only unpickler rebuilds numpy dtypes from their classes (numpy >= 1.25)
    import numpy as np

    for kind in ("?", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8",
                 "c16"):
        cls = type(np.dtype(kind))
        if cls is not np.dtype and cls not in out:
            out.append(cls)
    return out


# the way forward when a file asks for code: only its author can vouch for that code
RESAVE_ADVICE = ("if you trust the file's author, load it in Python yourself and re-save only "
                 "the network's state dict (torch.save(state_dict, 'weights.pth')), then pass "
                 "that file")


class _RefusedGlobal(Exception):
    def __init__(self, qualname: str):
        super().__init__(qualname)
        self.qualname = qualname


# torch.save's legacy (non-zip) format starts with this pickled number
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class TorchFileError(UserError):
    """The file is torch-serialized (tensors as persistent ids), so torch.load must read it."""


class _PlainUnpickler(pickle.Unpickler):
    """An unpickler whose only importable names are containers, numbers and numpy arrays."""

    def find_class(self, module: str, name: str) -> Any:
        candidates = _ALLOWED.get((module, name))
        if candidates is None:
            raise _RefusedGlobal(f"{module}.{name}")
        return _resolve(candidates)

    def persistent_load(self, pid: Any) -> Any:
        # torch's legacy format stores tensors as persistent ids; a plain pickle never does
        raise TorchFileError("persistent id")


def load_plain_pickle(path: str | Path) -> dict:
    """Unpickle a weight file, admitting only plain containers and numpy arrays.

    Args:
        path: a ``.pkl`` file (Detectron2 model zoo or MSRA/Caffe2 layout).

    Returns:
        The unpickled dict.

    Raises:
        UserError: the file is missing, asks for any other global (nothing is run), is truncated
            or corrupt, or does not hold a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights file {path} does not exist; check the path")
    try:
        with open(path, "rb") as f:
            obj = _PlainUnpickler(f, encoding="latin1").load()
    except TorchFileError:
        raise TorchFileError(f"{path} is a torch-serialized file, not a plain pickle; read it "
                             "with torch.load (name it .pth)") from None
    except _RefusedGlobal as e:
        raise UserError(f"{path} is not a plain weight pickle: it asks to load {e.qualname}, "
                        f"which resdet refuses to run; {RESAVE_ADVICE}") from None
    except MemoryError:
        raise UserError(f"{path} is not a readable weight pickle (it is corrupt); "
                        "download it again") from None
    except Exception as e:  # noqa: BLE001 - any failure inside pickle means a broken file
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{path} is not a readable weight pickle ({reason}): the file is "
                        "truncated or corrupt, download it again") from None
    if obj == _TORCH_LEGACY_MAGIC:
        raise TorchFileError(f"{path} is a torch-serialized file, not a plain pickle; read it "
                             "with torch.load (name it .pth)")
    if not isinstance(obj, dict):
        raise UserError(f"{path} holds a pickled {type(obj).__name__}, not a dict of weights; "
                        "pass a Detectron2 or MSRA weight .pkl")
    return obj
