"""Iteration-based learning-rate schedules, resumable: Detectron2's warmup + multistep, and the
paper's "divide by 10 when the error plateaus" (Sec. 3.4), with the CIFAR-110 warm-up (Sec. 4.2).

The learning rate of iteration ``it`` is ``base_lr * factor``, where ``factor`` multiplies

- Detectron2's warmup (``SOLVER.WARMUP_ITERS/WARMUP_FACTOR/WARMUP_METHOD``): linear ramp from
  WARMUP_FACTOR to 1 over the first WARMUP_ITERS iterations, or constant WARMUP_FACTOR;
- the decay: ``GAMMA ** bisect_right(STEPS, it)`` ("step" policy), or ``GAMMA ** drops`` where a
  drop happens after ``patience`` observations of the watched error without improvement
  ("plateau" policy);
- an optional error-gated warm-up: ``gated_factor`` until an observed training error falls below
  ``gated_until`` (or ``gated_max_iters`` pass), then 1 for the rest of training.

Everything that depends on what training observed lives in :meth:`state_dict`, so ``--resume``
continues the same schedule.
"""

from __future__ import annotations

import bisect
import logging
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch


class LRSchedule:
    """Sets the learning rate of every parameter group of ``optimizer`` for each iteration.

    Args:
        optimizer: its groups' current ``lr`` is taken as the base lr (times ``lr_scale`` if set).
        policy: "step" or "plateau".
        steps: iterations where the lr is multiplied by ``gamma`` ("step").
        gamma: the decay factor (0.1 = divide by 10).
        warmup_iters, warmup_factor, warmup_method: Detectron2's warmup.
        patience: observations without improvement before a drop ("plateau").
        threshold: relative improvement that counts as progress ("plateau").
        max_drops: cap on the number of drops ("plateau").
        window: training-error observations are averaged over this many iterations before they
            count ("plateau" on the training error).
        gated_factor: lr multiplier of the error-gated warm-up; 1.0 disables it.
        gated_until: training error (fraction) below which the gated warm-up ends.
        gated_max_iters: the gated warm-up ends after this many iterations regardless.
        watch: the error the plateau policy watches, "val" or "train".
    """

    def __init__(self, optimizer: torch.optim.Optimizer, *, policy: str = "step",
                 steps: Sequence[int] = (), gamma: float = 0.1, warmup_iters: int = 0,
                 warmup_factor: float = 1.0, warmup_method: str = "linear", patience: int = 3,
                 threshold: float = 0.01, max_drops: int = 3, window: int = 1,
                 gated_factor: float = 1.0, gated_until: float = 0.8,
                 gated_max_iters: int = 400, watch: str = "val"):
        if policy not in ("step", "plateau"):
            raise ValueError(f"unknown lr policy {policy!r}")
        if watch not in ("val", "train"):
            raise ValueError(f"unknown plateau metric {watch!r}")
        if warmup_method not in ("linear", "constant"):
            raise ValueError(f"unknown warmup method {warmup_method!r}")
        self.optimizer = optimizer
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.policy = policy
        self.steps = sorted(int(s) for s in steps)
        self.gamma = gamma
        self.warmup_iters = int(warmup_iters)
        self.warmup_factor = warmup_factor
        self.warmup_method = warmup_method
        self.patience = patience
        self.threshold = threshold
        self.max_drops = max_drops
        self.window = max(1, int(window))
        self.gated_factor = gated_factor
        self.gated_until = gated_until
        self.gated_max_iters = gated_max_iters
        self._watch = watch
        # State that depends on training (saved in checkpoints).
        self.drops = 0
        self.best = math.inf
        self.bad_observations = 0
        self.gate_open = gated_factor == 1.0
        self._window_sum = 0.0
        self._window_n = 0
        self.history: List[Dict[str, Any]] = []

    # ---------------------------------------------------------------- factors
    def _warmup(self, it: int) -> float:
        if it >= self.warmup_iters:
            return 1.0
        if self.warmup_method == "constant":
            return self.warmup_factor
        alpha = it / self.warmup_iters
        return self.warmup_factor * (1 - alpha) + alpha

    def factor(self, it: int) -> float:
        """The lr multiplier for iteration ``it`` given what has been observed so far."""
        f = self._warmup(it)
        if self.policy == "step":
            f *= self.gamma ** bisect.bisect_right(self.steps, it)
        else:
            f *= self.gamma ** self.drops
        if not self.gate_open:
            if it >= self.gated_max_iters:
                self.gate_open = True
                self.history.append({"iteration": it, "event": "warmup_end", "reason": "max"})
            else:
                f *= self.gated_factor
        return f

    def apply(self, it: int) -> float:
        """Set the optimizer's lr for iteration ``it``; returns the lr of the first group."""
        f = self.factor(it)
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = base * g.get("lr_scale", 1.0) * f
        return self.optimizer.param_groups[0]["lr"]

    # ---------------------------------------------------------- observations
    def observe_train_error(self, err: float, it: int) -> None:
        """Feed the training error (fraction) of iteration ``it``."""
        if not self.gate_open and err < self.gated_until:
            # Paper Sec. 4.2: "0.01 ... until the training error is below 80%, then 0.1".
            self.gate_open = True
            self.history.append({"iteration": it, "event": "warmup_end", "train_error": err})
        if self.policy == "plateau" and self._watch == "train":
            self._window_sum += err
            self._window_n += 1
            if self._window_n >= self.window:
                self._observe(self._window_sum / self._window_n, it)
                self._window_sum, self._window_n = 0.0, 0

    def observe_val_error(self, err: float, it: int) -> None:
        """Feed a validation error (fraction) measured after iteration ``it``."""
        if self.policy == "plateau" and self._watch == "val":
            self._observe(err, it)

    def _observe(self, err: float, it: int) -> None:
        if err < self.best * (1 - self.threshold):
            self.best = err
            self.bad_observations = 0
            return
        self.bad_observations += 1
        if self.bad_observations >= self.patience and self.drops < self.max_drops:
            self.drops += 1
            self.bad_observations = 0
            # The error that plateaued at the old lr is not the bar at the new one.
            self.best = err
            self.history.append({"iteration": it, "event": "lr_drop", "drops": self.drops,
                                 "error": err})

    # ------------------------------------------------------------ state
    def state_dict(self) -> Dict[str, Any]:
        """Everything observed so far (the configuration itself comes from the config)."""
        return {"drops": self.drops, "best": self.best, "bad_observations": self.bad_observations,
                "gate_open": self.gate_open, "window_sum": self._window_sum,
                "window_n": self._window_n, "history": list(self.history),
                "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore :meth:`state_dict`: what training observed. The base lrs stay the config's
        (``SOLVER.BASE_LR`` changed on purpose for ``--resume`` applies from the resumed
        iteration; see :func:`changed_solver_settings`)."""
        self.drops = state["drops"]
        self.best = state["best"]
        self.bad_observations = state["bad_observations"]
        self.gate_open = state["gate_open"]
        self._window_sum = state["window_sum"]
        self._window_n = state["window_n"]
        self.history = list(state["history"])


def build_lr_schedule(cfg: Any, optimizer: torch.optim.Optimizer) -> LRSchedule:
    """Build the schedule from ``SOLVER.*`` and ``PRETRAIN.*`` keys.

    Args:
        cfg: a resdet config.
        optimizer: built with ``SOLVER.BASE_LR`` as its groups' lr.

    Returns:
        An :class:`LRSchedule`.
    """
    from resdet.errors import UserError

    name = cfg.SOLVER.LR_SCHEDULER_NAME
    if name != "WarmupMultiStepLR":
        raise UserError(f"SOLVER.LR_SCHEDULER_NAME {name!r} is not supported by resdet's engine; "
                        "use WarmupMultiStepLR (and PRETRAIN.LR_POLICY for the plateau rule).")
    pre = cfg.get("PRETRAIN", None)
    policy = pre.LR_POLICY if pre is not None else "step"
    if policy not in ("step", "plateau"):
        raise UserError(f"PRETRAIN.LR_POLICY {policy!r} must be 'step' or 'plateau'.")
    bad = [s for s in cfg.SOLVER.STEPS if s > cfg.SOLVER.MAX_ITER]
    if bad and policy == "step":
        # Detectron2 warns too: a step after MAX_ITER never happens.
        import logging

        logging.getLogger(__name__).warning(
            "SOLVER.STEPS %s lie beyond SOLVER.MAX_ITER %d and will never apply.",
            bad, cfg.SOLVER.MAX_ITER)
    kwargs: Dict[str, Any] = dict(
        policy=policy, steps=cfg.SOLVER.STEPS, gamma=cfg.SOLVER.GAMMA,
        warmup_iters=cfg.SOLVER.WARMUP_ITERS, warmup_factor=cfg.SOLVER.WARMUP_FACTOR,
        warmup_method=cfg.SOLVER.WARMUP_METHOD)
    if pre is not None:
        gated = 1.0
        if pre.WARMUP_LR > 0:
            gated = pre.WARMUP_LR / cfg.SOLVER.BASE_LR
        metric = pre.get("PLATEAU_METRIC", "val")
        if metric not in ("val", "train"):
            raise UserError(f"PRETRAIN.PLATEAU_METRIC {metric!r} must be 'val' or 'train'.")
        if policy == "plateau" and metric == "val" and cfg.TEST.EVAL_PERIOD <= 0:
            raise UserError("PRETRAIN.LR_POLICY plateau with PRETRAIN.PLATEAU_METRIC val needs "
                            "TEST.EVAL_PERIOD > 0 (or set PRETRAIN.PLATEAU_METRIC train).")
        kwargs.update(patience=pre.PLATEAU_PATIENCE, threshold=pre.get("PLATEAU_THRESHOLD", 0.01),
                      max_drops=pre.get("PLATEAU_MAX_DROPS", 3),
                      window=pre.get("PLATEAU_WINDOW", 1), gated_factor=gated,
                      gated_until=pre.WARMUP_UNTIL_ERROR, gated_max_iters=pre.WARMUP_MAX_ITERS,
                      watch=metric)
    return LRSchedule(optimizer, **kwargs)


# Solver settings a user may change on purpose between a run and its --resume (e.g. a lower
# BASE_LR after a non-finite loss): the config's value applies from the resumed iteration.
RESUMABLE_SOLVER_KEYS = ("SOLVER.BASE_LR", "SOLVER.STEPS", "SOLVER.MAX_ITER", "SOLVER.GAMMA")


def _solver_values(cfg: Any) -> Optional[Dict[str, Any]]:
    if cfg is None:
        return None
    if isinstance(cfg, (str, bytes)):
        import yaml

        try:
            cfg = yaml.safe_load(cfg)
        except yaml.YAMLError:
            return None
    solver = cfg.get("SOLVER") if hasattr(cfg, "get") else None
    if not hasattr(solver, "get"):
        return None
    out = {}
    for key in RESUMABLE_SOLVER_KEYS:
        value = solver.get(key.split(".", 1)[1])
        out[key] = list(value) if isinstance(value, (list, tuple)) else value
    return out


def changed_solver_settings(saved_cfg: Any, cfg: Any) -> List[Tuple[str, Any, Any]]:
    """The :data:`RESUMABLE_SOLVER_KEYS` whose value in ``cfg`` differs from the checkpoint's.

    Args:
        saved_cfg: the config stored in the checkpoint (YAML text or a config/dict); None when
            the checkpoint has none (nothing is reported then).
        cfg: the config of the resumed run (YAML text or a config/dict).

    Returns:
        ``[(key, checkpoint value, config value), ...]`` in :data:`RESUMABLE_SOLVER_KEYS` order.
    """
    old, new = _solver_values(saved_cfg), _solver_values(cfg)
    if old is None or new is None:
        return []
    return [(k, old[k], new[k]) for k in RESUMABLE_SOLVER_KEYS
            if old[k] is not None and old[k] != new[k]]


def log_changed_solver_settings(changes: List[Tuple[str, Any, Any]], start_iter: int) -> None:
    """One warning per changed key: ``checkpoint value -> config value``."""
    log = logging.getLogger("resdet.engine")
    for key, old, new in changes:
        log.warning("--resume: %s %s -> %s (checkpoint value -> config value); the config's "
                    "value applies from iteration %d.", key, old, new, start_iter)
