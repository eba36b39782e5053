"""Training checkpoints that survive interruption: temp file + ``os.replace``, then the pointer.

A checkpoint is first written completely to a temporary file beside it (flushed and fsynced),
then renamed into place; ``last_checkpoint`` (a text file naming it) is rewritten the same way
and only afterwards. A process killed at any instant therefore leaves ``last_checkpoint`` naming a
complete file, and ``--resume`` continues from it.
"""

from __future__ import annotations

import logging
import os
import random
from typing import Any, Dict, Optional

import numpy as np
import torch

from resdet.checkpoint.atomic import atomic_torch_save, atomic_write_bytes
from resdet.errors import UserError

logger = logging.getLogger(__name__)

LAST_CHECKPOINT = "last_checkpoint"


def capture_rng_state() -> Dict[str, Any]:
    """The state of every random number generator training draws from."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    # Plain types and tensors only, so checkpoints load with torch.load(weights_only=True).
    state = {"python": random.getstate(),
             "numpy": (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
                       float(cached)),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng_state(state: Dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


class Checkpointer:
    """Saves and finds training checkpoints in one directory.

    Args:
        save_dir: the run's OUTPUT_DIR.
    """

    def __init__(self, save_dir: str):
        self.save_dir = save_dir

    def path_for(self, name: str) -> str:
        """Absolute path of checkpoint file ``name`` in the run directory."""
        return os.path.join(self.save_dir, name)

    def save(self, name: str, state: Dict[str, Any], *, tag_last: bool = True) -> str:
        """Write ``state`` to ``save_dir/name`` atomically; then point ``last_checkpoint`` at it.

        Returns:
            The path written.
        """
        os.makedirs(self.save_dir, exist_ok=True)
        path = self.path_for(name)
        atomic_torch_save(state, path)
        if tag_last:
            atomic_write_bytes(self.path_for(LAST_CHECKPOINT), name.encode())
        logger.info("Saved checkpoint %s", path)
        return path

    def last_checkpoint(self) -> Optional[str]:
        """Path of the checkpoint named by ``last_checkpoint``, or None when there is none."""
        tag = self.path_for(LAST_CHECKPOINT)
        if not os.path.isfile(tag):
            return None
        with open(tag) as f:
            name = f.read().strip()
        path = self.path_for(name)
        if not os.path.isfile(path):
            raise UserError(f"{tag} names {name}, which does not exist in {self.save_dir}; "
                            "delete last_checkpoint or restore the file.")
        return path

    @staticmethod
    def load(path: str) -> Dict[str, Any]:
        """Read a training checkpoint written by :meth:`save` (ours: optimizer and RNG included)."""
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise UserError(f"cannot read checkpoint {path} ({e}); delete it and point "
                            "last_checkpoint at an earlier one.") from e
