"""Config-reading builders around the engine (the modules above take explicit arguments)."""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Iterable, List, Optional

import torch

from resdet.engine import comm
from resdet.engine.events import setup_logging
from resdet.engine.lr_schedule import build_lr_schedule
from resdet.engine.optim import build_optimizer
from resdet.engine.trainer import Trainer, seed_all
from resdet.errors import UserError

logger = logging.getLogger("resdet.engine")


def select_device(cfg: Any) -> torch.device:
    """The device of this process.

    MODEL.DEVICE ``"cuda"`` (the default, as in Detectron2) means this process's GPU when one is
    visible and the CPU otherwise, quietly; a specific GPU (``"cuda:1"``) that is not there is
    warned about before falling back to the CPU.
    """
    want = str(cfg.MODEL.DEVICE)
    if want.startswith("cuda"):
        if torch.cuda.is_available():
            return torch.device("cuda", comm.get_local_rank())
        if want != "cuda":
            logger.warning("MODEL.DEVICE is %r but no CUDA GPU is visible; running on the CPU.",
                           want)
    return torch.device("cpu")


def check_output_dir(path: str) -> None:
    """Refuse an OUTPUT_DIR that cannot be written, without creating anything.

    Raises:
        UserError: ``path`` (or the nearest existing path above it) is a file or is not
            writable.
    """
    path = os.path.abspath(path)
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UserError(f"OUTPUT_DIR {path} cannot be created: {existing} is a file; set "
                        "OUTPUT_DIR to a folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == path else f" ({existing} is not writable)"
        raise UserError(f"OUTPUT_DIR {path} cannot be written{where}; set OUTPUT_DIR to a "
                        "writable folder.")


def default_setup(cfg: Any, args: Any = None) -> int:
    """Prepare a run: OUTPUT_DIR, log.txt, config.yaml, seeds, cudnn and matmul settings.

    Args:
        cfg: the loaded (frozen) config.
        args: the parsed command line (logged), or None.

    Returns:
        The seed used.
    """
    out = cfg.OUTPUT_DIR
    if comm.is_main_process():
        try:
            os.makedirs(out, exist_ok=True)
        except OSError as e:
            raise UserError(f"OUTPUT_DIR {out} cannot be created ({e}); set OUTPUT_DIR to a "
                            "writable folder.") from e
    comm.synchronize()
    setup_logging(out)
    logger.info("Rank %d of %d; command line: %s", comm.get_rank(), comm.get_world_size(), args)
    if comm.is_main_process():
        from resdet.config import dump_config

        path = dump_config(cfg, os.path.join(out, "config.yaml"))
        logger.info("Full config saved to %s", path)
    seed = seed_all(int(cfg.SEED))
    logger.info("Using seed %d", seed)
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = bool(cfg.CUDNN_BENCHMARK)
    if cfg.get("FLOAT32_PRECISION", ""):
        torch.set_float32_matmul_precision(cfg.FLOAT32_PRECISION)
    return seed


def build_trainer(cfg: Any, model: torch.nn.Module, task: Any,
                  data_loader_fn: Callable[[int], Iterable[Any]], *,
                  device: Optional[torch.device] = None,
                  hooks: Optional[List[Callable[..., None]]] = None,
                  log_period: Optional[int] = None) -> Trainer:
    """A :class:`Trainer` configured from ``SOLVER.*``, ``TEST.EVAL_PERIOD`` and ``OUTPUT_DIR``.

    Args:
        cfg: the run's config.
        model: the network, on ``device``.
        task: see :mod:`resdet.engine.trainer`.
        data_loader_fn: ``start_iter -> endless iterable of batches``.
        device: default :func:`select_device`.
        hooks: extra per-step callables.
        log_period: metrics.json period (default PRETRAIN.LOG_PERIOD or 20).

    Returns:
        The trainer (call ``resume()`` for ``--resume``, then ``train()``).
    """
    from resdet.config import dump_config  # noqa: F401  (import check: config is present)

    device = device or select_device(cfg)
    optimizer = build_optimizer(cfg, model)
    schedule = build_lr_schedule(cfg, optimizer)
    if log_period is None:
        log_period = cfg.PRETRAIN.LOG_PERIOD if "PRETRAIN" in cfg else 20
    amp = cfg.SOLVER.AMP.get("DTYPE", "bfloat16") if cfg.SOLVER.AMP.ENABLED else None
    if amp is not None and device.type != "cuda":
        logger.warning("SOLVER.AMP.ENABLED is ignored on the CPU (float32 is used).")
        amp = None
    return Trainer(
        model, optimizer, schedule, data_loader_fn, task,
        max_iter=cfg.SOLVER.MAX_ITER, output_dir=cfg.OUTPUT_DIR, device=device,
        checkpoint_period=cfg.SOLVER.CHECKPOINT_PERIOD, eval_period=cfg.TEST.EVAL_PERIOD,
        log_period=log_period, amp_dtype=amp,
        # NHWC only where asked (pretraining configs do); it applies on GPUs only.
        channels_last=bool(cfg.SOLVER.get("CHANNELS_LAST", False)),
        compile_model=bool(cfg.SOLVER.get("COMPILE", False)),
        skip_nonfinite=bool(cfg.SOLVER.get("SKIP_NONFINITE_LOSS", False)),
        cfg_yaml=cfg.dump(), hooks=hooks,
        progress=os.environ.get("RESDET_PROGRESS", "1") != "0")


def per_process_batch(total: int, key: str = "SOLVER.IMS_PER_BATCH") -> int:
    """``total`` images per iteration split over the processes (must divide evenly)."""
    w = comm.get_world_size()
    if total % w:
        raise UserError(f"{key} {total} must be divisible by the number of processes ({w}).")
    return total // w
