"""Find and read weight files: local paths, ``torchvision://`` names and URLs, pinned by sha256."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from resdet.checkpoint.safe_pickle import (
    RESAVE_ADVICE,
    TorchFileError,
    allowed_globals,
    load_plain_pickle,
)
from resdet.errors import UserError

logger = logging.getLogger(__name__)

# Architectures whose ImageNet weights torchvision publishes and resdet can load. IMAGENET1K_V1
# is the default: the original recipe's weights, closest to the paper's training.
TORCHVISION_ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "vgg16")


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_sha256(path: str | Path, sha256: str | None) -> None:
    """Refuse ``path`` unless its sha256 equals ``sha256`` (no check when ``sha256`` is None)."""
    if not sha256:
        return
    expected = sha256.strip().lower()
    actual = file_sha256(path)
    if actual != expected:
        raise UserError(f"refusing weights {path}: its sha256 is {actual} but {expected} was "
                        "pinned; download the file again or correct the pinned hash")


def torchvision_weights_url(spec: str) -> str:
    """URL of ``torchvision://NAME[:WEIGHTS]`` (e.g. ``torchvision://resnet50:IMAGENET1K_V2``)."""
    name, _, tag = spec[len("torchvision://"):].partition(":")
    if name not in TORCHVISION_ARCHS:
        raise UserError(f"unknown weights {spec!r}; valid torchvision names: "
                        + ", ".join(f"torchvision://{a}" for a in TORCHVISION_ARCHS))
    import torchvision

    enum = torchvision.models.get_model_weights(name)
    tag = tag or "IMAGENET1K_V1"
    try:
        return enum[tag].url
    except KeyError:
        raise UserError(f"torchvision has no weights {tag!r} for {name}; choose one of "
                        + ", ".join(w.name for w in enum)) from None


def _download_failed(url: str, spec: str, reason: str) -> str:
    return (f"downloading {url} failed ({reason}); download the file manually and pass the local "
            f"file as MODEL.WEIGHTS (or the tool's weights option) instead of {spec!r}")


def _download(url: str, spec: str) -> str:
    filename = os.path.basename(urlparse(url).path)
    dst = os.path.join(torch.hub.get_dir(), "checkpoints", filename)
    if os.path.isfile(dst):
        return dst
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    # torchvision file names carry the first hex digits of their sha256 (resnet50-0676ba61.pth)
    m = torch.hub.HASH_REGEX.search(filename)
    hash_prefix = m.group(1) if m and spec.startswith("torchvision://") else None
    logger.info("Downloading %s to %s", url, dst)
    try:
        torch.hub.download_url_to_file(url, dst, hash_prefix, progress=False)
    except RuntimeError as e:
        reason = str(e).splitlines()[0]
        if "hash" in reason:
            raise UserError(f"refusing the download of {url}: its hash does not match the "
                            f"published one ({reason}); download it again") from None
        raise UserError(_download_failed(url, spec, reason)) from None
    except Exception as e:  # noqa: BLE001 - URLError, timeouts, DNS: all mean "no network"
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(_download_failed(url, spec, reason)) from None
    return dst


def resolve_weights(spec: str | Path, *, sha256: str | None = None) -> str:
    """Turn a weights spec into a local file path, downloading and verifying it if needed.

    Args:
        spec: a local path, ``torchvision://resnet18|34|50|101|152|vgg16`` (optionally
            ``:WEIGHTS_TAG``, default ``IMAGENET1K_V1``), or an ``http(s)://`` URL. Downloads go
            to torch.hub's cache (``$TORCH_HOME/hub/checkpoints``).
        sha256: if given, the file's sha256 must equal it or the file is refused.

    Returns:
        The local path.

    Raises:
        UserError: missing file, unknown name, failed download, or hash mismatch.
    """
    spec = str(spec)
    if spec.startswith("torchvision://"):
        path = _download(torchvision_weights_url(spec), spec)
    elif spec.startswith(("http://", "https://")):
        path = _download(spec, spec)
    else:
        path = os.path.expanduser(spec)
        if not os.path.isfile(path):
            raise UserError(f"weights file {spec} does not exist; check the path")
    check_sha256(path, sha256)
    return path


@contextlib.contextmanager
def _safe_globals(objs: list):
    """``torch.serialization.safe_globals`` (torch >= 2.5), done by hand on torch 2.4."""
    ser = torch.serialization
    if hasattr(ser, "safe_globals"):
        with ser.safe_globals(objs):
            yield
        return
    before = list(ser.get_safe_globals())  # a copy: torch hands back its own list
    ser.add_safe_globals(objs)
    try:
        yield
    finally:
        ser.clear_safe_globals()
        ser.add_safe_globals(before)


def _torch_load_safe(path: Path) -> Any:
    """``torch.load(weights_only=True)``; numpy arrays admitted where torch allows adding them."""
    try:
        with warnings.catch_warnings():
            # torch warns about the pickle protocol of legacy files; the outcome is what counts
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as first:  # noqa: BLE001
        error = first
    if isinstance(error, pickle.UnpicklingError) and hasattr(
            torch.serialization, "add_safe_globals"):
        # numpy arrays/scalars and trainers' option bags (argparse.Namespace) are data, not
        # code; admit exactly those
        try:
            with _safe_globals(allowed_globals()):
                return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001
            error = e
    if not zipfile.is_zipfile(path):
        # a plain pickle saved under another extension: the restricted unpickler decides
        try:
            return load_plain_pickle(path)
        except TorchFileError:
            pass
        except UserError as e:
            if "asks to load" in str(e):
                raise
    text = str(error)
    # torch words this differently across versions ("Unsupported global: GLOBAL x.y",
    # "Trying to load unsupported GLOBAL x.y whose module x is blocked")
    m = re.search(r"unsupported global:? (?:GLOBAL )?([\w.]+)", text, flags=re.IGNORECASE)
    if m:
        raise UserError(f"{path} is not a plain weight file: it asks to load {m.group(1)}, which "
                        f"resdet refuses to run (torch.load weights_only); {RESAVE_ADVICE}"
                        ) from None
    m = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
    reason = m.group(1) if m else text.splitlines()[0] if text else type(error).__name__
    reason = re.split(r"(?<=[a-z])\. ", reason)[0][:200]  # first sentence only
    raise UserError(f"{path} could not be read as a torch checkpoint ({reason}); check that it is "
                    "a complete .pth/.pkl weight file") from None


def read_weights_file(path: str | Path) -> Any:
    """Read a weight file safely: ``.pkl`` via the restricted unpickler, others via torch.load.

    Raises:
        UserError: the file is missing, unsafe or unreadable (message names the path).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights file {path} does not exist; check the path")
    if path.suffix == ".pkl" and not zipfile.is_zipfile(path):
        try:
            return load_plain_pickle(path)
        except TorchFileError:
            pass  # torch.save output named .pkl: torch's weights_only reader is just as safe
    return _torch_load_safe(path)
