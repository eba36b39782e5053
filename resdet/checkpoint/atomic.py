"""Writes that a crash or a kill cannot leave half-done: a temporary file renamed into place.

The file gets the mode any other program's new file gets (``0o666`` less the umask: 0644 under
the usual umask 022), not the 0600 that :func:`tempfile.mkstemp` gives its private files, so
teammates on a shared cluster can read checkpoints and results.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable

import torch


def current_umask() -> int:
    """The process's umask (read from /proc on Linux; elsewhere set and restored at once)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no read-only call exists; put it back at once
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, then rename it to ``path``.

    Readers see the old file or the new one, never a truncated one; the data is fsynced first.
    The file's mode follows the umask, as a plain ``open(path, "w")`` would.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):  # POSIX (Windows has no modes to fix)
                os.fchmod(f.fileno(), 0o666 & ~current_umask())
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda f: f.write(data))


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save(obj, path)``, atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda f: torch.save(obj, f))
