"""``--resume`` on the Detectron2 engine honours solver settings the user changed on purpose.

Detectron2 restores its lr scheduler's ``base_lrs`` (and the optimizer's lrs) from the
checkpoint, so a lower ``SOLVER.BASE_LR`` (what resdet's non-finite-loss message advises) was
silently ignored while ``config.yaml`` recorded it. Its multiplier (``STEPS``, ``GAMMA``,
``MAX_ITER``) is built from the config already. :func:`apply_changed_solver_settings` puts the
config's base lrs back and logs each of :data:`~resdet.engine.lr_schedule.RESUMABLE_SOLVER_KEYS`
that differs from the checkpoint's config, as resdet's own engine does.
"""

from __future__ import annotations

import logging
from typing import Any, List, Tuple

import torch

from resdet.engine.lr_schedule import changed_solver_settings, log_changed_solver_settings

logger = logging.getLogger(__name__)


def _saved_config(path: str) -> Any:
    """The config text a resdet checkpoint carries (``"cfg"``), or None."""
    try:  # mmap: the tensors are not read
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - only the log lines depend on it
        return None
    return data.get("cfg") if isinstance(data, dict) else None


def apply_changed_solver_settings(trainer: Any, cfg: Any) -> List[Tuple[str, Any, Any]]:
    """After ``trainer.resume_or_load(resume=True)``: the config's ``SOLVER.BASE_LR`` (through the
    optimizer's parameter groups, bias and norm factors included) applies from the resumed
    iteration; one warning per changed solver key.

    Args:
        trainer: a Detectron2 ``DefaultTrainer`` (``checkpointer``, ``optimizer``,
            ``scheduler``, ``start_iter``).
        cfg: the run's config.

    Returns:
        The changed ``(key, checkpoint value, config value)`` triples.
    """
    checkpointer = trainer.checkpointer
    if not checkpointer.has_checkpoint():
        return []
    changes = changed_solver_settings(_saved_config(checkpointer.get_checkpoint_file()), cfg)
    # Each group's lr as the config builds it (the scheduler's base lrs before the checkpoint).
    fresh = [g["lr"] for g in trainer.build_optimizer(cfg, trainer.model).param_groups]
    scheduler, optimizer = trainer.scheduler, trainer.optimizer
    if len(fresh) == len(scheduler.base_lrs) and list(scheduler.base_lrs) != fresh:
        scheduler.base_lrs = fresh
        for group, base, lr in zip(optimizer.param_groups, fresh, scheduler.get_lr()):
            group["initial_lr"] = base
            group["lr"] = lr
    log_changed_solver_settings(changes, trainer.start_iter)
    return changes
