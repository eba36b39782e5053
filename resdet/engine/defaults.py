"""Config-reading builders around the engine (the modules above take explicit arguments)."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import stat
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import torch

from resdet.checkpoint.atomic import atomic_write_bytes
from resdet.engine import comm
from resdet.engine.events import close_log_file, setup_logging
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


# What a start writes into OUTPUT_DIR (resdet's and Detectron2's setup, trainer and writers):
# log.txt[.rankN] and metrics.json are appended to, config.yaml is replaced.
_START_FILES = re.compile(r"^(log\.txt(\.rank\d+)?|metrics\.json|config\.yaml(\.tmp\.\d+)?"
                          r"|events\.out\.tfevents\..*)$")
_APPENDED = re.compile(r"^(log\.txt(\.rank\d+)?|metrics\.json)$")
_CONFIG = "config.yaml"


class RunStart:
    """What a run's start adds to OUTPUT_DIR, so that a start that fails can take it back.

    Made before anything is written (:func:`undo_failed_start`): whether OUTPUT_DIR and its
    parents exist, its entries, the sizes of the files a start appends to (``log.txt``,
    ``log.txt.rankN``, ``metrics.json``) and the bytes of ``config.yaml``, which a start
    replaces. Files that were there before (a run being resumed) are never removed.

    Args:
        output_dir: the run's OUTPUT_DIR.
    """

    def __init__(self, output_dir: str):
        self.output_dir = os.path.abspath(output_dir or ".")
        self.started = False
        # The highest folder on the way to OUTPUT_DIR that does not exist yet (None: it exists).
        self.created_top: Optional[str] = None
        path = self.output_dir
        while not os.path.lexists(path):
            self.created_top = path
            parent = os.path.dirname(path)
            if parent == path:
                break
            path = parent
        self.entries = set(os.listdir(self.output_dir)) if os.path.isdir(self.output_dir) else set()
        self.sizes: Dict[str, int] = {}
        self.config: Optional[Tuple[bytes, int]] = None
        for name in self.entries:
            path = os.path.join(self.output_dir, name)
            if not os.path.isfile(path):
                continue
            if _APPENDED.match(name):
                self.sizes[name] = os.path.getsize(path)
            elif name == _CONFIG:
                with open(path, "rb") as f:
                    self.config = (f.read(), os.stat(path).st_mode)

    def mark_started(self) -> None:
        """The run is under way (its first iteration done, or its evaluation begun): from here
        on a failure keeps what the run wrote."""
        self.started = True

    def hook(self, trainer: Any, iteration: int) -> None:
        """A :class:`Trainer` hook (run after each step) that calls :meth:`mark_started`."""
        self.mark_started()

    def undo(self) -> None:
        """Remove what the start added to OUTPUT_DIR and put back what it changed.

        The log files into OUTPUT_DIR are closed first. A folder the start created is removed
        with its parents that it created, and with all it holds (nothing else wrote there). In a
        folder that was there, rank 0 removes the new files a start writes (``log.txt*``,
        ``config.yaml``, ``metrics.json``, TensorBoard event files), cuts the appended ones back
        to their size and puts back ``config.yaml``; other ranks remove their ``log.txt.rankN``.
        """
        close_log_file(self.output_dir)
        rank = comm.get_rank()
        if self.created_top is not None:
            if rank == 0:
                _remove(self.created_top)
            else:  # rank 0 removes the folder; this rank only what it added, if it came later
                _remove(os.path.join(self.output_dir, f"log.txt.rank{rank}"))
                _remove_empty_folders(self.output_dir, self.created_top)
            return
        if rank != 0:
            name = f"log.txt.rank{rank}"
            if name not in self.entries:
                _remove(os.path.join(self.output_dir, name))
            return
        if not os.path.isdir(self.output_dir):
            return
        for name in set(os.listdir(self.output_dir)) - self.entries:
            if _START_FILES.match(name):
                _remove(os.path.join(self.output_dir, name))
        for name, size in self.sizes.items():
            path = os.path.join(self.output_dir, name)
            if os.path.isfile(path) and os.path.getsize(path) > size:
                os.truncate(path, size)
        if self.config is not None:
            path = os.path.join(self.output_dir, _CONFIG)
            data, mode = self.config
            current = None
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    current = f.read()
            if current != data:
                atomic_write_bytes(path, data)
                os.chmod(path, stat.S_IMODE(mode))


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        with contextlib.suppress(FileNotFoundError):  # another rank's undo came first
            os.remove(path)


def _remove_empty_folders(path: str, top: str) -> None:
    """``rmdir`` from ``path`` up to ``top``, stopping at the first folder that is not empty."""
    while True:
        try:
            os.rmdir(path)
        except OSError:
            return
        if path == top:
            return
        path = os.path.dirname(path)


@contextlib.contextmanager
def undo_failed_start(output_dir: str) -> Iterator[RunStart]:
    """Leave OUTPUT_DIR as it was when the run's start fails.

    Wrap everything from :func:`default_setup` (which creates OUTPUT_DIR, ``log.txt`` and
    ``config.yaml``) to the run's first iteration; call ``start.mark_started()`` where the work
    begins, or pass ``start.hook`` to the trainer. An exception before then (a model that cannot
    be built, MODEL.WEIGHTS for another model, a data loader that fails at once, Ctrl-C) removes
    what the start created (:meth:`RunStart.undo`) and propagates unchanged.

    Args:
        output_dir: the run's OUTPUT_DIR.

    Yields:
        The :class:`RunStart` record.
    """
    start = RunStart(output_dir)
    try:
        yield start
    except BaseException:
        if not start.started:
            try:
                start.undo()
            except OSError as e:  # the error that stopped the run is the one to report
                logger.warning("Could not remove what the failed start wrote in %s (%s).",
                               start.output_dir, e)
        raise


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
