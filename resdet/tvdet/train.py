"""Training and evaluation of the torchvision engine on :mod:`resdet.engine`.

``main(args)`` is what ``tools/train_net.py --engine torchvision`` runs in each process: it
writes the same run directory as the Detectron2 engine (config.yaml, log.txt, metrics.json with
Detectron2's loss names, last_checkpoint, model_NNNNNNN.pth, model_final.pth,
eval_results.json ``{dataset: {"bbox": {...}}}``) and, after training, draws a few predictions.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any, Dict, Optional

import torch

from resdet.config import load_config
from resdet.engine import build_trainer, comm, default_setup, select_device
from resdet.engine.defaults import RunStart, undo_failed_start
from resdet.engine.events import setup_logging, write_eval_results
from resdet.detection.drawing import draw_examples_after_training
from resdet.detection.evaluation import build_detection_evaluator, eval_results
from resdet.errors import UserError
from resdet.tvdet.build import build_model, check_config, trainable_parameter_count
from resdet.tvdet.data import (
    build_test_loader,
    build_train_loader,
    inference_on_dataset,
    training_dicts,
)

if TYPE_CHECKING:
    from fvcore.common.config import CfgNode

logger = logging.getLogger("resdet.tvdet")

ENGINE_LINE = "Engine: torchvision (resdet.tvdet: torchvision's Faster R-CNN with resdet backbones)"

# metrics.json period, as Detectron2's default writer (every 20 iterations).
LOG_PERIOD = 20


def do_test(cfg: CfgNode, model: torch.nn.Module, device: torch.device) -> Dict[str, Any]:
    """Evaluate ``model`` on every ``DATASETS.TEST``; ``{dataset: {"bbox": {...}}}`` on rank 0
    (``{dataset: {}}`` elsewhere, and for the VOC2012 test split, which writes submissions)."""
    was_training = model.training
    model.eval()
    results: Dict[str, Any] = {}
    try:
        for name in cfg.DATASETS.TEST:
            evaluator = build_detection_evaluator(cfg, name)
            t0 = time.perf_counter()
            results[name] = inference_on_dataset(model, build_test_loader(cfg, name), evaluator,
                                                 device) or {}
            logger.info("Evaluated %s in %.1f s: %s", name, time.perf_counter() - t0,
                        {k: {m: round(v, 2) for m, v in r.items() if not m.startswith("AP-")}
                         for k, r in results[name].items()})
    finally:
        model.train(was_training)
    return results


class DetectionTask:
    """The detection task for :class:`resdet.engine.Trainer` (see its module docstring)."""

    def __init__(self, cfg: CfgNode, device: torch.device):
        self.cfg = cfg
        self.device = device

    def run_step(self, model: torch.nn.Module, batch: Dict[str, list]) -> Dict[str, torch.Tensor]:
        """One training step: the model's losses for a batch of images and targets."""
        return model(batch["images"], batch["targets"])

    def evaluate(self, model: torch.nn.Module) -> Dict[str, Any]:
        """Evaluate ``model`` on ``DATASETS.TEST`` (:func:`do_test`)."""
        return do_test(self.cfg, model, self.device)

    def export(self, model: torch.nn.Module) -> Dict[str, Any]:
        """What the export records: the engine and ``MODEL.RESDET.ARCH``."""
        return {"engine": "torchvision", "arch": self.cfg.MODEL.RESDET.ARCH}


def cpu_threads(cfg: CfgNode, device: torch.device) -> int:
    """Intra-op threads for CPU training: the cores of this process minus its loader workers.

    On a shared or small CPU, more compute threads than free cores make OpenMP's threads wait
    on each other (a 2-core machine ran 4x slower with 2 threads plus a loader worker than with
    one). ``OMP_NUM_THREADS`` in the environment, or a GPU device, leaves torch's choice.
    """
    if device.type != "cpu" or os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    threads = max(1, cores // max(comm.get_local_size(), 1) - int(cfg.DATALOADER.NUM_WORKERS))
    torch.set_num_threads(threads)
    return threads


def setup(args, cfg: Optional[CfgNode] = None) -> Any:
    """Check that this engine can honour the config (``cfg``, or ``args.config_file`` +
    ``args.opts`` loaded here) and prepare OUTPUT_DIR (log.txt starts with the engine line, then
    config.yaml, seed)."""
    if cfg is None:
        cfg = load_config(args.config_file, args.opts)
    from resdet.data.custom import register_custom_datasets  # DATASETS.CUSTOM names (issue 12)
    register_custom_datasets(cfg)
    check_config(cfg)
    if comm.is_main_process():
        try:
            os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
        except OSError as e:
            raise UserError(f"OUTPUT_DIR {cfg.OUTPUT_DIR} cannot be created ({e}); set "
                            "OUTPUT_DIR to a writable folder.") from None
    comm.synchronize()
    setup_logging(cfg.OUTPUT_DIR)
    # log.txt starts with the engine line too (tools/train_net.py passes its own, with the reason)
    logger.info(getattr(args, "engine_line", None) or ENGINE_LINE)
    seed = default_setup(cfg, args)
    return cfg, seed


def main(args, cfg: Optional[CfgNode] = None) -> Dict[str, Any]:
    """Train (or with ``args.eval_only`` evaluate) the config's detector; returns the last
    evaluation results (rank 0). A start that fails leaves OUTPUT_DIR as it was
    (:func:`resdet.engine.defaults.undo_failed_start`).

    Args:
        args: namespace with ``config_file``, ``opts``, ``resume``, ``eval_only``.
        cfg: the config already loaded by the engine choice (:mod:`resdet.train_detection`);
            None loads it from ``args``.
    """
    if cfg is None:
        cfg = load_config(args.config_file, args.opts)
    # A start that fails (the model, MODEL.WEIGHTS for another model, the first batch) takes back
    # OUTPUT_DIR, log.txt and config.yaml; the run's files stay once it is under way.
    with undo_failed_start(cfg.OUTPUT_DIR) as start:
        return _setup_and_run(args, cfg, start)


def _setup_and_run(args, cfg: CfgNode, start: RunStart) -> Dict[str, Any]:
    """:func:`main` from :func:`setup` on; ``start`` is marked once the work begins."""
    cfg, seed = setup(args, cfg)
    if args.eval_only and not cfg.MODEL.WEIGHTS:
        raise UserError("--eval-only needs MODEL.WEIGHTS (a model_final.pth of either engine).")
    device = select_device(cfg)
    # --eval-only: nothing trains the layers the weights do not fill (issue 15)
    model = build_model(cfg, purpose="evaluate" if args.eval_only else "finetune").to(device)
    logger.info("Model: %s on %s (%d threads); parameters %s", cfg.MODEL.RESDET.ARCH, device,
                cpu_threads(cfg, device), trainable_parameter_count(model))
    if args.eval_only:
        start.mark_started()
        results = do_test(cfg, model, device)
        if comm.is_main_process():
            write_eval_results(cfg.OUTPUT_DIR, eval_results(cfg.DATASETS.TEST, results))
        return results

    dicts = training_dicts(cfg)
    trainer = build_trainer(
        cfg, model, DetectionTask(cfg, device),
        lambda start_iter: build_train_loader(cfg, start_iter, seed=seed, dicts=dicts),
        device=device, log_period=LOG_PERIOD, hooks=[start.hook])
    if args.resume:
        trainer.resume()
    t0 = time.perf_counter()
    result = trainer.train()
    logger.info("Training took %.1f s.", time.perf_counter() - t0)
    if comm.is_main_process() and not result.interrupted:
        draw_examples_after_training(cfg, trainer.raw_model)
    return result.eval_results or {}
