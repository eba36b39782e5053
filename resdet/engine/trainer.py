"""The iteration-based training loop shared by pretraining and the torchvision detection engine.

The loop knows nothing about the task. A *task* object supplies the work:

- ``run_step(model, batch) -> dict``: forward one batch; keys starting with ``loss`` are summed
  into the loss that is minimised; other keys are logged scalars (``train_error``, a fraction,
  also feeds the lr schedule's error-gated warm-up and plateau rule).
- ``evaluate(model) -> {dataset: {metric: value}}`` (optional): run on every rank.
- ``schedule_error(results) -> float | None`` (optional): the validation error (fraction) the
  "plateau" lr rule watches.
- ``state_dict()/load_state_dict()`` (optional): task state saved in checkpoints.
- ``export(model) -> dict`` (optional): extra fields for ``model_final.pth`` (e.g. "arch").
- ``log_extras() -> dict`` (optional): extra scalars for each metrics.json line.

The trainer owns everything else: DDP, AMP (bf16/fp16 with a GradScaler for fp16), channels_last,
torch.compile, the lr schedule, atomic checkpoints and ``--resume``, SIGINT/SIGTERM (save and stop
cleanly), the non-finite-loss guard, metrics.json/log.txt and TensorBoard event files, a progress
bar with ETA on a terminal (log lines are printed above it), and periodic evaluation.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.contrib.logging import logging_redirect_tqdm

from resdet.engine import comm
from resdet.engine.checkpointer import Checkpointer, capture_rng_state, restore_rng_state
from resdet.engine.events import MetricsWriter, TensorboardWriter, rounded, write_eval_results
from resdet.engine.lr_schedule import (
    LRSchedule,
    changed_solver_settings,
    log_changed_solver_settings,
)
from resdet.errors import UserError

logger = logging.getLogger("resdet.engine")

_AMP_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class TrainResult:
    """What :meth:`Trainer.train` ended with."""

    iteration: int  # index of the last completed iteration (Detectron2's convention)
    interrupted: bool = False  # stopped by SIGINT/SIGTERM after saving ``checkpoint``
    checkpoint: Optional[str] = None
    eval_results: Optional[Dict[str, Any]] = None
    skipped_nonfinite: int = 0


def move_to_device(obj: Any, device: torch.device, channels_last: bool = False) -> Any:
    """Move tensors in nested lists/tuples/dicts to ``device``; 4-D float tensors become NHWC."""
    if isinstance(obj, torch.Tensor):
        t = obj.to(device, non_blocking=True)
        if channels_last and t.dim() == 4 and t.is_floating_point():
            t = t.contiguous(memory_format=torch.channels_last)
        return t
    if isinstance(obj, dict):
        return {k: move_to_device(v, device, channels_last) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(move_to_device(v, device, channels_last) for v in obj)
    return obj


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP and torch.compile wrappers."""
    while True:
        if isinstance(model, DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


class Trainer:
    """Runs ``max_iter`` iterations of a task, checkpointing and evaluating along the way.

    Args:
        model: the network, already on ``device`` (the trainer wraps it in DDP when distributed).
        optimizer: built over ``model``'s parameters.
        schedule: sets the lr per iteration.
        data_loader_fn: ``start_iter -> iterable of batches`` (the iterable must resume the data
            stream where ``start_iter`` left off and be endless).
        task: see the module docstring.
        max_iter: total number of iterations.
        output_dir: run directory (checkpoints, metrics.json, eval_results.json).
        device: where the model runs.
        checkpoint_period: save ``model_NNNNNNN.pth`` every this many iterations (0: never).
        eval_period: evaluate every this many iterations (0: only at the end).
        log_period: write a metrics.json line every this many iterations.
        amp_dtype: None, "bfloat16" or "float16".
        channels_last: NHWC memory format for the model and 4-D batch tensors.
        compile_model: wrap the model in ``torch.compile``.
        skip_nonfinite: skip and count steps whose loss is NaN/inf instead of stopping.
        cfg_yaml: the resolved config, stored in checkpoints.
        progress: show a tqdm progress bar with ETA on rank 0.
        hooks: callables ``hook(trainer, iteration)`` run after every step.
        final_eval: evaluate once more after the last iteration.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 schedule: LRSchedule, data_loader_fn: Callable[[int], Iterable[Any]], task: Any,
                 *, max_iter: int, output_dir: str, device: torch.device,
                 checkpoint_period: int = 0, eval_period: int = 0, log_period: int = 20,
                 amp_dtype: Optional[str] = None, channels_last: bool = False,
                 compile_model: bool = False, skip_nonfinite: bool = False, cfg_yaml: str = "",
                 progress: bool = True, hooks: Optional[List[Callable[..., None]]] = None,
                 final_eval: bool = True):
        if amp_dtype is not None and amp_dtype not in _AMP_DTYPES:
            raise UserError(f"SOLVER.AMP.DTYPE {amp_dtype!r} must be 'bfloat16' or 'float16'.")
        self.device = device
        self.channels_last = channels_last and device.type == "cuda"
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.raw_model = model
        if compile_model:
            model = torch.compile(model)
        if comm.get_world_size() > 1:
            ids = [device.index] if device.type == "cuda" else None
            model = DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)
        self.model = model
        self.optimizer = optimizer
        self.schedule = schedule
        self.data_loader_fn = data_loader_fn
        self.task = task
        self.max_iter = int(max_iter)
        self.output_dir = output_dir
        self.checkpoint_period = int(checkpoint_period)
        self.eval_period = int(eval_period)
        self.log_period = max(1, int(log_period))
        self.amp_dtype = _AMP_DTYPES[amp_dtype] if amp_dtype else None
        self.scaler = None
        if self.amp_dtype == torch.float16:
            self.scaler = torch.amp.GradScaler(device.type)
        self.skip_nonfinite = skip_nonfinite
        self.cfg_yaml = cfg_yaml
        self.progress = progress
        self.hooks = list(hooks or [])
        self.final_eval = final_eval
        self.checkpointer = Checkpointer(output_dir)
        self.metrics = MetricsWriter(output_dir)
        self.tensorboard = TensorboardWriter(output_dir)
        self.start_iter = 0
        self.iter = -1
        self.skipped_nonfinite = 0
        self.last_good_checkpoint: Optional[str] = None
        self._stop_signal: Optional[int] = None

    # ------------------------------------------------------------------ state
    def state_dict(self, iteration: int) -> Dict[str, Any]:
        """Everything ``--resume`` needs to continue after ``iteration``."""
        state = {
            "model": self.raw_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "iteration": iteration,
            "rng": capture_rng_state(),
            "skipped_nonfinite": self.skipped_nonfinite,
            "cfg": self.cfg_yaml,
        }
        if self.scaler is not None:
            state["grad_scaler"] = self.scaler.state_dict()
        if hasattr(self.task, "state_dict"):
            state["task"] = self.task.state_dict()
        return state

    def resume(self) -> bool:
        """Restore model, optimizer, schedule, grad scaler, RNG and iteration from
        ``last_checkpoint``; returns False (and changes nothing) when there is none."""
        path = self.checkpointer.last_checkpoint()
        if path is None:
            logger.info("No checkpoint in %s; starting from iteration 0.", self.output_dir)
            return False
        ckpt = self.checkpointer.load(path)
        self.raw_model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.schedule.load_state_dict(ckpt["scheduler"])
        if self.scaler is not None and "grad_scaler" in ckpt:
            self.scaler.load_state_dict(ckpt["grad_scaler"])
        if hasattr(self.task, "load_state_dict") and "task" in ckpt:
            self.task.load_state_dict(ckpt["task"])
        restore_rng_state(ckpt["rng"])
        self.skipped_nonfinite = ckpt.get("skipped_nonfinite", 0)
        self.start_iter = ckpt["iteration"] + 1
        self.last_good_checkpoint = path
        self.metrics.truncate_after(ckpt["iteration"])
        # The schedule kept the config's base lrs, steps, gamma and max_iter: say which differ.
        log_changed_solver_settings(changed_solver_settings(ckpt.get("cfg"), self.cfg_yaml),
                                    self.start_iter)
        self.tensorboard.purge_step = self.start_iter  # TensorBoard drops the redone steps
        logger.info("Resumed from %s: continuing at iteration %d of %d.", path, self.start_iter,
                    self.max_iter)
        return True

    def save(self, iteration: int, name: Optional[str] = None) -> Optional[str]:
        """Write the checkpoint of ``iteration`` (rank 0) and return its path on every rank."""
        name = name or f"model_{iteration:07d}.pth"
        path = self.checkpointer.path_for(name)
        if comm.is_main_process():
            state = self.state_dict(iteration)
            if name == "model_final.pth" and hasattr(self.task, "export"):
                state.update(self.task.export(self.raw_model))
            self.checkpointer.save(name, state)
        comm.synchronize()
        self.last_good_checkpoint = path
        return path

    # ----------------------------------------------------------------- signals
    @contextlib.contextmanager
    def _signal_handlers(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            if self._stop_signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C stops at once
            self._stop_signal = signum

        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    # -------------------------------------------------------------------- loop
    def train(self) -> TrainResult:
        """Run from ``start_iter`` to ``max_iter``; see :class:`TrainResult`."""
        # On a terminal, console log lines go through tqdm.write, above the bar, not onto it.
        redirect = (logging_redirect_tqdm([logging.getLogger("resdet")]) if self._show_bar()
                    else contextlib.nullcontext())
        with self._signal_handlers(), redirect:
            try:
                return self._train()
            finally:
                self.tensorboard.close()

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _train(self) -> TrainResult:
        logger.info("Starting training from iteration %d (max_iter %d).", self.start_iter,
                    self.max_iter)
        self.model.train()
        data_iter = iter(self.data_loader_fn(self.start_iter))
        bar = self._progress_bar()
        window: Dict[str, float] = {}
        window_n = 0
        t_window = t_data_window = 0.0
        eval_results = None
        it = self.start_iter - 1
        try:
            for it in range(self.start_iter, self.max_iter):
                self.iter = it
                if self._stop_agreed(it):
                    return self._stop(it - 1)
                t0 = time.perf_counter()
                try:
                    batch = next(data_iter)
                except Exception:
                    if self._stop_signal is not None:  # Ctrl-C also reached the workers
                        return self._stop(it - 1)
                    raise
                batch = move_to_device(batch, self.device, self.channels_last)
                t_data = time.perf_counter() - t0
                lr = self.schedule.apply(it)

                with self._autocast():
                    out = self.task.run_step(self.model, batch)
                losses = {k: v for k, v in out.items() if k.startswith("loss")}
                if not losses:
                    raise RuntimeError("task.run_step returned no 'loss*' entries")
                total = sum(losses.values())
                scalars = {k: float(v) for k, v in out.items() if not k.startswith("loss")}
                finite = bool(torch.isfinite(total.detach()).item())
                flags = comm.all_reduce_sum(
                    [0.0 if finite else 1.0, scalars.get("train_error", 0.0)], self.device)
                if flags[0] > 0:
                    self.optimizer.zero_grad(set_to_none=True)
                    self._nonfinite(it, {k: float(v.detach()) for k, v in losses.items()})
                    continue
                self.optimizer.zero_grad(set_to_none=True)
                if self.scaler is not None:
                    self.scaler.scale(total).backward()
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                else:
                    total.backward()
                    self.optimizer.step()
                if "train_error" in scalars:
                    self.schedule.observe_train_error(flags[1] / comm.get_world_size(), it)

                t_iter = time.perf_counter() - t0
                vals = {k: float(v.detach()) for k, v in losses.items()}
                vals["total_loss"] = float(total.detach())
                vals.update(scalars)
                for k, v in vals.items():
                    window[k] = window.get(k, 0.0) + v
                window_n += 1
                t_window += t_iter
                t_data_window += t_data
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{vals['total_loss']:.3f}", lr=f"{lr:.3g}",
                                    refresh=False)
                last = it == self.max_iter - 1
                if (it + 1) % self.log_period == 0 or last:
                    self._log(it, window, window_n, t_window, t_data_window, lr)
                    window, window_n, t_window, t_data_window = {}, 0, 0.0, 0.0
                for hook in self.hooks:
                    hook(self, it)
                if self.eval_period > 0 and (it + 1) % self.eval_period == 0 and not last:
                    eval_results = self._evaluate(it)
                if (self.checkpoint_period > 0 and (it + 1) % self.checkpoint_period == 0
                        and not last):
                    self.save(it)
        finally:
            if bar is not None:
                bar.close()
        # Final evaluation first, so model_final's metadata may carry its results.
        if self.final_eval and self.max_iter > self.start_iter:
            eval_results = self._evaluate(self.max_iter - 1)
        final = self.save(max(self.max_iter - 1, it), "model_final.pth")
        logger.info("Training finished at iteration %d; wrote %s.", self.max_iter - 1, final)
        return TrainResult(iteration=self.max_iter - 1, checkpoint=final,
                           eval_results=eval_results, skipped_nonfinite=self.skipped_nonfinite)

    def _show_bar(self) -> bool:
        # Not in a file, where the bar's carriage returns glue onto the log lines (which carry
        # the ETA anyway).
        return self.progress and comm.is_main_process() and sys.stderr.isatty()

    def _progress_bar(self):
        if not self._show_bar():
            return None
        from tqdm import tqdm

        return tqdm(total=self.max_iter, initial=self.start_iter, desc="train",
                    dynamic_ncols=True, mininterval=0.5, file=sys.stderr, unit="it")

    def _stop_agreed(self, it: int) -> bool:
        """True on every rank when any rank received SIGINT/SIGTERM."""
        local = 1.0 if self._stop_signal is not None else 0.0
        if comm.get_world_size() == 1:
            return local > 0
        return comm.all_reduce_sum([local], self.device)[0] > 0

    def _stop(self, last_done: int) -> TrainResult:
        name = signal.Signals(self._stop_signal).name if self._stop_signal else "a stop request"
        if last_done < self.start_iter:
            path = self.last_good_checkpoint
            logger.warning("Received %s before any iteration finished; nothing new to save "
                           "(last checkpoint: %s).", name, path)
        else:
            path = self.save(last_done)
        msg = (f"Received {name}: saved checkpoint {path} after iteration {last_done}; "
               "continue with --resume.")
        logger.warning(msg)
        return TrainResult(iteration=last_done, interrupted=True, checkpoint=path,
                           skipped_nonfinite=self.skipped_nonfinite)

    def _nonfinite(self, it: int, losses: Dict[str, float]) -> None:
        shown = ", ".join(f"{k}={v}" for k, v in losses.items())
        if self.skip_nonfinite:
            self.skipped_nonfinite += 1
            logger.warning("Non-finite loss (%s) at iteration %d: step skipped (%d so far, "
                           "SOLVER.SKIP_NONFINITE_LOSS).", shown, it, self.skipped_nonfinite)
            self.metrics.write({"iteration": it, "skipped_nonfinite": self.skipped_nonfinite})
            self.tensorboard.write(it, {"skipped_nonfinite": self.skipped_nonfinite})
            return
        where = self.last_good_checkpoint or "none (no checkpoint was written yet)"
        raise UserError(
            f"The loss became non-finite ({shown}) at iteration {it}; the last good checkpoint "
            f"is {where}: lower SOLVER.BASE_LR or check the data, then rerun (--resume starts "
            "from that checkpoint), or set SOLVER.SKIP_NONFINITE_LOSS True to skip such steps.")

    def _log(self, it: int, window: Dict[str, float], n: int, t: float, t_data: float,
             lr: float) -> None:
        keys = sorted(window)
        sums = comm.all_reduce_sum([window[k] for k in keys], self.device)
        w = comm.get_world_size()
        rec: Dict[str, Any] = {"iteration": it}
        rec.update({k: s / (n * w) for k, s in zip(keys, sums)})
        rec["lr"] = lr
        rec["time"] = t / n
        rec["data_time"] = t_data / n
        rec["eta_seconds"] = (self.max_iter - it - 1) * t / n
        if self.skipped_nonfinite:
            rec["skipped_nonfinite"] = self.skipped_nonfinite
        if hasattr(self.task, "log_extras"):
            rec.update(self.task.log_extras())
        self.metrics.write(rec)
        self.tensorboard.write(it, {k: v for k, v in rec.items() if k != "iteration"})
        shown = "  ".join(f"{k}: {rec[k]:.4g}" for k in keys)
        logger.info("iter: %d  %s  lr: %.4g  time: %.3f  data_time: %.3f  eta: %s", it, shown, lr,
                    rec["time"], rec["data_time"], _fmt_eta(rec["eta_seconds"]))

    def _evaluate(self, it: int) -> Optional[Dict[str, Any]]:
        if not hasattr(self.task, "evaluate"):
            return None
        self.model.eval()
        try:
            with torch.no_grad(), self._autocast():
                results = self.task.evaluate(self.raw_model)
        finally:
            self.model.train()
        if not results:
            return results
        write_eval_results(self.output_dir, results)
        flat: Dict[str, Any] = {"iteration": it}
        for ds, metrics in results.items():
            for k, v in metrics.items():
                flat[f"{ds}/{k}"] = v
        self.metrics.write(flat)
        self.tensorboard.write(it, results)
        logger.info("Evaluation after iteration %d: %s", it, rounded(results))
        if hasattr(self.task, "schedule_error"):
            err = self.task.schedule_error(results)
            if err is not None and math.isfinite(err):
                self.schedule.observe_val_error(err, it)
        return results


def _fmt_eta(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}"


def seed_all(seed: int) -> int:
    """Seed python, numpy and torch (all devices); a negative seed draws one (rank 0's, shared).

    Returns:
        The seed used (log it: it reproduces the run).
    """
    import random

    import numpy as np

    if seed < 0:
        seed = comm.broadcast_object(int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF)
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return seed
