"""Detectron2 training: ``ResdetTrainer`` and ``main(args)`` for ``tools/train_net.py``.

``tools/train_net.py --engine detectron2`` calls :func:`main` (inside its launcher) with the
namespace of :func:`resdet.engine.launch.default_argument_parser`. Outputs are DESIGN.md's:
``config.yaml``, ``log.txt``, ``metrics.json`` (Detectron2's JSONWriter: one object per logging
step with iteration, losses, lr, time, data_time), ``model_NNNNNNN.pth`` / ``model_final.pth``
(with ``model``, ``iteration`` and the config as ``cfg``), ``last_checkpoint`` and
``eval_results.json`` (``{dataset: {"bbox": {"AP", "AP50", "AP75", ...}}}`` in percent).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import weakref
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

import torch
from detectron2.config import get_cfg as d2_get_cfg
from detectron2.engine import AMPTrainer, DefaultTrainer, HookBase, default_setup
from detectron2.utils import comm
from detectron2.utils.events import CommonMetricPrinter, JSONWriter
from detectron2.utils.logger import setup_logger

from resdet.config import add_resdet_config, check_keys_honoured, flatten, load_config
from resdet.d2.checkpoint import ResdetCheckpointer
from resdet.d2 import data as d2_data
from resdet.d2.data import SkippingDatasetMapper  # noqa: F401  (its old import path)
from resdet.d2.datasets import prepare_datasets, register_resdet_datasets
from resdet.data import catalog
from resdet.detection.drawing import draw_examples_after_training
from resdet.detection.evaluation import build_detection_evaluator, eval_results, inference_dir
from resdet.detection.options import check_resdet_keys_read
from resdet.engine.defaults import RunStart, undo_failed_start
from resdet.engine.events import write_eval_results
from resdet.errors import UserError

if TYPE_CHECKING:
    from fvcore.common.config import CfgNode

logger = logging.getLogger(__name__)

# resdet keys the Detectron2 engine does not implement: setting one is an error (DESIGN.md).
# PRETRAIN.* and MODEL.RESDET.NUM_CLASSES belong to the classification recipe (pretraining).
_UNSUPPORTED_KEYS = ("SOLVER.SKIP_NONFINITE_LOSS", "SOLVER.CHANNELS_LAST", "SOLVER.COMPILE",
                     "MODEL.RESDET.NUM_CLASSES")
_UNSUPPORTED_PREFIXES = ("PRETRAIN.",)


class SignalCheckpointHook(HookBase):
    """On SIGTERM or SIGINT, save a checkpoint after the current step and stop.

    A second signal stops at once (without saving). ``--resume`` continues from the checkpoint.
    """

    def __init__(self, checkpointer):
        self._checkpointer = checkpointer
        self._signal: Optional[int] = None
        self._old: Dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self._signal is not None:
            self._restore()
            raise KeyboardInterrupt
        self._signal = signum
        logger.warning("Got signal %d: saving a checkpoint after this iteration, then stopping.",
                       signum)

    def _restore(self) -> None:
        for signum, old in self._old.items():
            signal.signal(signum, old)
        self._old = {}

    def before_train(self) -> None:
        """Install the SIGTERM/SIGINT handlers (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._old[signum] = signal.signal(signum, self._handle)

    def after_step(self) -> None:
        """After a signal: save ``model_<iter>.pth``, restore the handlers and stop
        (SIGTERM: SystemExit(0); SIGINT: KeyboardInterrupt).
        """
        if self._signal is None:
            return
        it = self.trainer.iter
        name = f"model_{it:07d}"
        self._checkpointer.save(name, iteration=it)
        logger.warning("Saved %s.pth after iteration %d; rerun with --resume to continue.",
                       name, it)
        signum, self._signal = self._signal, None
        self._restore()
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(0)  # a clean stop, as on the torchvision engine and in pretraining

    def after_train(self) -> None:
        """Restore the signal handlers that were set before training."""
        self._restore()


@contextlib.contextmanager
def _cpu_ddp_without_device_ids(cfg: CfgNode):
    """Let DefaultTrainer wrap a CPU model in DDP (several gloo processes on a CPU machine).

    Detectron2's ``create_ddp_model`` always passes ``device_ids=[local_rank]``, which DDP refuses
    for a CPU module; with ``device_ids=None`` the same wrapper works on the CPU. GPU runs are
    untouched.
    """
    from detectron2.engine import defaults as d2_defaults

    if cfg.MODEL.DEVICE != "cpu" or comm.get_world_size() == 1:
        yield
        return
    original = d2_defaults.create_ddp_model

    def create_ddp_model(model, **kwargs):
        kwargs.setdefault("device_ids", None)
        return original(model, **kwargs)

    d2_defaults.create_ddp_model = create_ddp_model
    try:
        yield
    finally:
        d2_defaults.create_ddp_model = original


class ResdetTrainer(DefaultTrainer):
    """Detectron2's DefaultTrainer with resdet's checkpointer, evaluators, data and outputs."""

    def __init__(self, cfg: CfgNode):
        prepare_datasets(cfg.DATASETS.TRAIN, "DATASETS.TRAIN")
        prepare_datasets(cfg.DATASETS.TEST, "DATASETS.TEST")
        with _cpu_ddp_without_device_ids(cfg):
            super().__init__(cfg)
        if cfg.SOLVER.AMP.ENABLED:
            # Detectron2 always autocasts to float16; resdet's SOLVER.AMP.DTYPE chooses.
            old = self._trainer
            self._trainer = AMPTrainer(old.model, old.data_loader, old.optimizer,
                                       precision=getattr(torch, cfg.SOLVER.AMP.DTYPE))

    # Called once, after the first step (resdet.d2.train.main: the start is then over).
    after_first_step: Optional[Callable[[], None]] = None

    def run_step(self) -> None:
        """Detectron2's step, then :attr:`after_first_step` the first time."""
        super().run_step()
        if self.after_first_step is not None:
            self.after_first_step()
            self.after_first_step = None

    def build_hooks(self) -> List[HookBase]:
        """DefaultTrainer's hooks, with resdet's checkpointer and a signal checkpoint hook first."""
        # DefaultTrainer.__init__ made a DetectionCheckpointer just before calling this; swap in
        # resdet's (same saves, more weight formats, config inside each checkpoint).
        self.checkpointer = ResdetCheckpointer(
            self._trainer.model, self.cfg.OUTPUT_DIR, cfg=self.cfg, trainer=weakref.proxy(self)
        )
        hooks = super().build_hooks()
        # On every rank, so that all of them stop after the same step (only rank 0 writes).
        hooks.insert(0, SignalCheckpointHook(self.checkpointer))
        return hooks

    def build_writers(self) -> list:
        """Console and ``metrics.json`` writers, plus TensorBoard when it is installed."""
        writers = [CommonMetricPrinter(self.max_iter),
                   JSONWriter(os.path.join(self.cfg.OUTPUT_DIR, "metrics.json"))]
        try:  # TensorBoard is optional (Detectron2 always adds it)
            import tensorboard  # noqa: F401
            from detectron2.utils.events import TensorboardXWriter

            writers.append(TensorboardXWriter(self.cfg.OUTPUT_DIR))
        except ImportError:
            pass
        return writers

    @classmethod
    def build_train_loader(cls, cfg: CfgNode):
        """resdet's training loader (:func:`resdet.d2.data.build_train_loader`)."""
        # resdet's records and mapper (resdet.d2.data): the torchvision engine's pixels and boxes.
        return d2_data.build_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg: CfgNode, dataset_name):
        """resdet's test loader for ``dataset_name`` (:func:`resdet.d2.data.build_test_loader`)."""
        return d2_data.build_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg: CfgNode, dataset_name: str, output_folder: Optional[str] = None):
        """resdet's COCO or VOC evaluator, as on the torchvision engine
        (:func:`resdet.detection.evaluation.build_detection_evaluator`).

        A dataset registered only in Detectron2's own catalog (not resdet's) is Detectron2's:
        it gets Detectron2's evaluator for its ``evaluator_type``, as Detectron2 would give it.
        """
        prepare_datasets([dataset_name], "DATASETS.TEST")
        if dataset_name in catalog.list_datasets():
            return build_detection_evaluator(cfg, dataset_name, output_folder)
        from detectron2.data import MetadataCatalog
        from detectron2.evaluation import COCOEvaluator, PascalVOCDetectionEvaluator

        kind = getattr(MetadataCatalog.get(dataset_name), "evaluator_type", None)
        folder = output_folder or inference_dir(cfg, dataset_name)
        if kind == "coco":
            return COCOEvaluator(dataset_name, tasks=("bbox",), output_dir=folder)
        if kind == "pascal_voc":
            return PascalVOCDetectionEvaluator(dataset_name)
        raise UserError(f"Dataset {dataset_name!r} in DATASETS.TEST has no COCO or VOC evaluator "
                        f"(evaluator_type {kind!r}); list a detection dataset there.")

    @classmethod
    def test(cls, cfg: CfgNode, model, evaluators=None):
        """DefaultTrainer's test; the main process also writes ``eval_results.json`` in
        ``OUTPUT_DIR``.
        """
        results = super().test(cfg, model, evaluators)
        if comm.is_main_process():
            path = write_eval_results(cfg.OUTPUT_DIR, eval_results(cfg.DATASETS.TEST, results))
            logger.info("Evaluation results written to %s", path)
        return results


def check_config(cfg: CfgNode, base=None) -> None:
    """Refuse keys the Detectron2 engine would ignore: resdet's keys it does not implement
    (pretraining's, some SOLVER ones) and MODEL.RESDET keys the chosen builders do not read.

    Raises:
        UserError: naming the key.
    """
    base = base if base is not None else add_resdet_config(d2_get_cfg())
    supported = [k for k in flatten(base)
                 if k not in _UNSUPPORTED_KEYS and not k.startswith(_UNSUPPORTED_PREFIXES)]
    check_keys_honoured(cfg, supported, engine="detectron2", defaults=base)
    check_resdet_keys_read(cfg)
    if cfg.SOLVER.AMP.ENABLED and cfg.SOLVER.AMP.DTYPE not in ("float16", "bfloat16"):
        raise UserError(f"SOLVER.AMP.DTYPE = {cfg.SOLVER.AMP.DTYPE!r}; use float16 or bfloat16.")


def _load_config(args, base: CfgNode) -> CfgNode:
    """``args.config_file`` merged over ``base`` (Detectron2's defaults and resdet's keys), then
    ``args.opts``."""
    return load_config(args.config_file, list(args.opts or []), base_cfg=base)


def setup(args, cfg: Optional[CfgNode] = None) -> Any:
    """Detectron2's config + resdet's keys, merged with ``args.config_file`` and ``args.opts``
    (or ``cfg``, already loaded so by the engine choice).

    Also registers resdet's datasets, checks keys this engine cannot honour, falls back to the CPU
    when MODEL.DEVICE asks for a GPU that is not there, and runs Detectron2's ``default_setup``
    (logging, ``config.yaml``).
    """
    base = add_resdet_config(d2_get_cfg())
    if cfg is None:
        cfg = _load_config(args, base)
    check_config(cfg, base)
    requested = cfg.MODEL.DEVICE
    no_gpu = str(requested).startswith("cuda") and not torch.cuda.is_available()
    if no_gpu:
        cfg.defrost()
        cfg.MODEL.DEVICE = "cpu"
        cfg.freeze()
    from resdet.data.custom import register_custom_datasets  # DATASETS.CUSTOM names (issue 12)
    register_custom_datasets(cfg)
    register_resdet_datasets()
    # The engine line first, on the console and in log.txt: Detectron2's logger with the
    # arguments default_setup gives it (setup_logger is cached on them, so no second handler).
    if comm.is_main_process():
        os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank()).info(
        getattr(args, "engine_line", None) or "Engine: detectron2 (resdet plugin)")
    default_setup(cfg, args)
    if no_gpu and str(requested) != "cuda":  # the default "cuda" means: the GPU if visible
        logger.warning("MODEL.DEVICE is %s but no GPU is visible; running on the CPU.", requested)
    return cfg


def _ensure_local_process_group() -> None:
    """Detectron2's DDP wrapper needs its per-machine process group; resdet's launcher and
    torchrun do not create it, so it is made here (a no-op in one process)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    if comm._LOCAL_PROCESS_GROUP is not None:
        return
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "0")) or None
    if local is None:
        from resdet.engine import comm as resdet_comm

        local = resdet_comm.get_local_size()
    comm.create_local_process_group(local)


def main(args, cfg: Optional[CfgNode] = None) -> Any:
    """Train (or with ``args.eval_only`` evaluate) the config of ``args`` on Detectron2.

    A start that fails leaves OUTPUT_DIR as it was
    (:func:`resdet.engine.defaults.undo_failed_start`).

    Args:
        args: namespace with ``config_file``, ``opts``, ``resume``, ``eval_only`` (as made by
            :func:`resdet.engine.launch.default_argument_parser`).
        cfg: the config already loaded by the engine choice (:mod:`resdet.train_detection`);
            None loads it from ``args``.

    Returns:
        The evaluation results (Detectron2's format), or None when nothing was evaluated.
    """
    _ensure_local_process_group()
    if cfg is None:
        cfg = _load_config(args, add_resdet_config(d2_get_cfg()))
    # A start that fails (the model, MODEL.WEIGHTS for another model, the first batch) takes back
    # OUTPUT_DIR, log.txt, config.yaml and metrics.json; the run's files stay once it is under
    # way. Detectron2's own steps run inside unchanged.
    with undo_failed_start(cfg.OUTPUT_DIR) as start:
        return _setup_and_run(args, cfg, start)


def _setup_and_run(args, cfg: CfgNode, start: RunStart) -> Any:
    """:func:`main` from :func:`setup` on; ``start`` is marked once the work begins."""
    cfg = setup(args, cfg)
    if args.eval_only:
        prepare_datasets(cfg.DATASETS.TEST, "DATASETS.TEST")
        model = ResdetTrainer.build_model(cfg)
        ResdetCheckpointer(model, save_dir=cfg.OUTPUT_DIR, cfg=cfg,
                           purpose="evaluate").resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume)
        start.mark_started()
        return ResdetTrainer.test(cfg, model)
    trainer = ResdetTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    if args.resume:  # SOLVER.BASE_LR/STEPS/MAX_ITER/GAMMA changed on purpose win (issue 12)
        from resdet.d2.resume import apply_changed_solver_settings
        apply_changed_solver_settings(trainer, cfg)
    trainer.after_first_step = start.mark_started
    try:
        trainer.train()
    except FloatingPointError as e:
        # Detectron2 stops on a non-finite loss with a traceback; say where, and what to resume.
        raise UserError(_nonfinite_message(cfg.OUTPUT_DIR, trainer.iter)) from e
    if comm.is_main_process() and cfg.DATASETS.TEST:
        model = trainer.model.module if hasattr(trainer.model, "module") else trainer.model
        draw_examples_after_training(cfg, _AsTorchvisionDetector(model, cfg))
    return getattr(trainer, "_last_eval_results", None)


class _AsTorchvisionDetector(torch.nn.Module):
    """A Detectron2 detector behind torchvision's interface (CHW tensors in; dicts of boxes,
    scores, labels out), so resdet's drawing code serves both engines.

    Resizes each image to the test size first, as Detectron2's ``DefaultPredictor`` does (the
    model itself does not); boxes come back in the original image's pixels.
    """

    def __init__(self, model: torch.nn.Module, cfg: CfgNode):
        super().__init__()
        from detectron2.data import transforms as T

        self.model = model
        self.resize = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)

    def forward(self, images):
        inputs = []
        for im in images:
            hwc = im.permute(1, 2, 0).cpu().numpy()
            resized = self.resize.get_transform(hwc).apply_image(hwc)
            inputs.append({"image": torch.as_tensor(resized.transpose(2, 0, 1).copy()),
                           "height": im.shape[-2], "width": im.shape[-1]})
        outputs = []
        for out in self.model(inputs):
            inst = out["instances"]
            outputs.append({"boxes": inst.pred_boxes.tensor, "scores": inst.scores,
                            "labels": inst.pred_classes})
        return outputs


def _nonfinite_message(output_dir: str, iteration: int) -> str:
    pointer = os.path.join(output_dir, "last_checkpoint")
    last = None
    if os.path.isfile(pointer):
        with open(pointer, encoding="utf-8") as f:
            last = os.path.join(output_dir, f.read().strip())
    where = (f"the last good checkpoint is {last} (continue from it with --resume, e.g. with a "
             "lower SOLVER.BASE_LR)" if last else "no checkpoint was written before it")
    return (f"The loss became infinite or NaN at iteration {iteration}; {where}. Lower "
            "SOLVER.BASE_LR or add warm-up (SOLVER.WARMUP_ITERS).")
