"""Pretraining entry point: config -> classifier, data, task -> :class:`resdet.engine.Trainer`.

``tools/pretrain_imagenet.py`` is a thin wrapper around :func:`main`.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from fvcore.common.config import CfgNode
from torch import nn

from resdet.config import lookup
from resdet.config.choices import CHOICES, NO_NORM
from resdet.data import get_metadata
from resdet.data.classification import align_labels
from resdet.engine import comm
from resdet.engine.checkpointer import Checkpointer
from resdet.engine.defaults import (
    RunStart,
    build_trainer,
    check_output_dir,
    default_setup,
    per_process_batch,
    select_device,
    undo_failed_start,
)
from resdet.engine.events import setup_logging
from resdet.engine.launch import default_argument_parser, launch
from resdet.errors import UserError
from resdet.modeling import build_classifier, get_arch, resolve_arch
from resdet.pretrain.data import (
    Normalizer,
    TrainDataset,
    build_train_loader,
    compute_normalizer,
    load_records,
)
from resdet.pretrain.task import ClassificationTask

logger = logging.getLogger("resdet.pretrain")



def check_pretrain_config(cfg: Any) -> None:
    """Refuse settings pretraining cannot honour, naming the key.

    Raises:
        UserError: a bad choice, no or several training sets, an impossible size, or a network
            (``MODEL.RESDET.ARCH`` / ``MODEL.RESNETS.DEPTH``) that does not take an option set.
    """
    # Also checked when a config file or override sets them; a cfg built in code is not.
    for key, allowed in CHOICES.items():
        if not key.startswith("PRETRAIN."):
            continue
        node = lookup(cfg, key)
        if node not in allowed:
            raise UserError(f"{key} is {node!r}; use one of {', '.join(map(repr, allowed))}.")
    if len(cfg.DATASETS.TRAIN) != 1:
        raise UserError(f"DATASETS.TRAIN must name exactly one classification dataset for "
                        f"pretraining, e.g. ('imagenet_train',); got {tuple(cfg.DATASETS.TRAIN)}.")
    lo, hi = cfg.PRETRAIN.TRAIN_RESIZE_RANGE
    if cfg.PRETRAIN.AUGMENTATION == "scale" and not cfg.PRETRAIN.CROP_SIZE <= lo <= hi:
        raise UserError(f"PRETRAIN.TRAIN_RESIZE_RANGE {[lo, hi]} must satisfy CROP_SIZE "
                        f"({cfg.PRETRAIN.CROP_SIZE}) <= min <= max.")
    if cfg.PRETRAIN.TEST_RESIZE < cfg.PRETRAIN.CROP_SIZE:
        raise UserError(f"PRETRAIN.TEST_RESIZE {cfg.PRETRAIN.TEST_RESIZE} must be at least "
                        f"PRETRAIN.CROP_SIZE {cfg.PRETRAIN.CROP_SIZE}.")
    if cfg.SOLVER.MAX_ITER <= 0:
        raise UserError("SOLVER.MAX_ITER must be positive.")
    _network_options(cfg)


def _network_options(cfg: CfgNode) -> Tuple[str, Dict[str, Any]]:
    """The network the config names (:func:`resolve_arch`) and the options its spec takes.

    MODEL.RESNETS.STRIDE_IN_1X1 (a Detectron2 key, always set) goes to the networks that take
    ``stride_in_1x1``; MODEL.RESDET.SHORTCUT and PRETRAIN.NORM, resdet's keys, are refused
    for a network without that option unless they ask for nothing ("" / no norm).

    Raises:
        UserError: ARCH and DEPTH disagree or name no network, or an option the network does
            not take is set; each names the key.
    """
    arch = resolve_arch(cfg)
    spec = get_arch(arch)
    norm = None if cfg.PRETRAIN.NORM in NO_NORM else cfg.PRETRAIN.NORM
    shortcut = cfg.MODEL.RESDET.SHORTCUT  # "": the spec's paper default
    for key, value, option in (("PRETRAIN.NORM", norm, "norm"),
                               ("MODEL.RESDET.SHORTCUT", shortcut, "shortcut")):
        if value and not spec.supports(option):
            raise UserError(f"{key} is {value!r} but {arch} takes no {option} option (it takes "
                            f"{', '.join(spec.options)}); set {key} ''.")
    options: Dict[str, Any] = {"norm": norm}
    if shortcut:
        options["shortcut"] = shortcut
    if spec.supports("stride_in_1x1"):
        options["stride_in_1x1"] = bool(cfg.MODEL.RESNETS.STRIDE_IN_1X1)
    return arch, options


def build_pretrain_model(cfg: CfgNode) -> nn.Module:
    """The classifier of ``MODEL.RESDET.ARCH`` (``resnet{MODEL.RESNETS.DEPTH}`` when empty) with
    the config's options, not yet on a device: its forward maps (N, 3, H, W) to
    (N, MODEL.RESDET.NUM_CLASSES) logits.

    Raises:
        UserError: as :func:`check_pretrain_config` for the network and its options.
    """
    arch, options = _network_options(cfg)
    return build_classifier(arch, num_classes=cfg.MODEL.RESDET.NUM_CLASSES, **options)


def _export_info(cfg: Any, classes: Optional[List[str]]) -> Dict[str, Any]:
    info = {"arch": resolve_arch(cfg), "shortcut": cfg.MODEL.RESDET.SHORTCUT,
            "norm": cfg.PRETRAIN.NORM, "stride_in_1x1": bool(cfg.MODEL.RESNETS.STRIDE_IN_1X1),
            "num_classes": cfg.MODEL.RESDET.NUM_CLASSES,
            "trained_on": list(cfg.DATASETS.TRAIN)}
    if classes:
        info["classes"] = list(classes)  # the output order, for --eval-only elsewhere
    return info


def _test_sets(cfg: Any, classes: Optional[List[str]], classes_from: str,
               class_subset: bool = False) -> Tuple[Dict[str, List[dict]], Dict[str, List[int]]]:
    """The evaluation sets, labelled in the model's class order (matched by class name, e.g.
    WordNet id), and, with ``class_subset``, the model outputs each set is scored over.

    Raises:
        UserError: a test set has classes the model's do not include, or a test set holds fewer
            classes than the model has outputs and nothing says which outputs they are.
    """
    sets: Dict[str, List[dict]] = {}
    subsets: Dict[str, List[int]] = {}
    train_name = cfg.DATASETS.TRAIN[0]
    num_outputs = cfg.MODEL.RESDET.NUM_CLASSES
    if cfg.PRETRAIN.VAL_SPLIT > 0:
        # The paper's held-out validation (Sec. 4.2: 45k/5k) comes first: it drives "plateau".
        sets[f"{train_name}_heldout"] = load_records(train_name, val_split=cfg.PRETRAIN.VAL_SPLIT,
                                                     split_seed=0, part="heldout")
    for name in cfg.DATASETS.TEST:
        records = load_records(name)
        own = get_metadata(name).get("classes") or []
        if classes and own:
            records = align_labels(records, own, classes, name, classes_from)
            index = {c: i for i, c in enumerate(classes)}
            if class_subset:
                subsets[name] = sorted(index[c] for c in own if c in index)
            if class_subset or list(own) != list(classes):
                logger.info("%s: its %d classes are labelled as %s (matched by name); top-1/top-5 "
                            "over %s.", name, len(own), classes_from,
                            f"the set's {len(subsets[name])} outputs only (--class-subset)"
                            if class_subset else f"all {len(classes)} outputs of the model "
                            "(--class-subset: over the set's classes only)")
        elif own and len(own) < num_outputs:
            raise UserError(
                f"Dataset {name} holds {len(own)} classes but the model has {num_outputs} "
                f"outputs, and nothing says which outputs they are: {train_name} (the classes "
                f"in training order) is not on disk and MODEL.WEIGHTS records no classes "
                "(resdet checkpoints do; torchvision/timm ImageNet-1k weights mean the 1000 "
                f"sorted WordNet ids); put {train_name} in place or evaluate on a set with all "
                f"{num_outputs} classes.")
        sets[name] = records
    return sets, subsets


def _check_num_classes(cfg: Any, records: Sequence[dict], name: str) -> None:
    n = 1 + max(r["label"] for r in records)
    if n > cfg.MODEL.RESDET.NUM_CLASSES:
        raise UserError(f"Dataset {name} has {n} classes but MODEL.RESDET.NUM_CLASSES is "
                        f"{cfg.MODEL.RESDET.NUM_CLASSES}; set MODEL.RESDET.NUM_CLASSES {n}.")


def _weights_info(path: str) -> Dict[str, Any]:
    """The extra fields of a resdet ``model_final.pth`` (normaliser, classes), the classes other
    weights stand for (torchvision/timm ImageNet-1k: the sorted WordNet ids) and, as
    ``"object"``, the file's content, so that loading the weights does not read it again; {}
    when the file cannot be read (load_weights reports why)."""
    from resdet.checkpoint import read_weights_file
    from resdet.evaluation.classification import weights_output_classes

    if not path or not os.path.isfile(path):
        return {}
    try:
        ckpt = read_weights_file(path)
    except UserError:
        return {}
    if not isinstance(ckpt, dict):
        return {}
    task = ckpt.get("task") if isinstance(ckpt.get("task"), dict) else {}
    classes, classes_from = weights_output_classes(ckpt, path)
    return {"normalizer": ckpt.get("normalizer") or task.get("normalizer"),
            "classes": classes, "classes_from": classes_from, "object": ckpt}


def _model_classes(cfg: Any, weights: Dict[str, Any]) -> Tuple[Optional[List[str]], str]:
    """The model's output classes and where they come from: the record in ``weights`` (given
    when evaluating), else the training set's class list (None where neither says)."""
    if weights.get("classes"):
        return list(weights["classes"]), weights.get("classes_from") or cfg.MODEL.WEIGHTS
    train_name = cfg.DATASETS.TRAIN[0]
    return (get_metadata(train_name).get("classes") or None), train_name


def torchvision_normalizer() -> Normalizer:
    """How torchvision's ImageNet models expect their RGB input (0..255 here): channel mean
    (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225) of [0, 1] images."""
    return Normalizer(torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1) * 255.0,
                      torch.tensor([0.229, 0.224, 0.225]) * 255.0)


def _adopt_torchvision_conventions(cfg: Any, weights: Dict[str, Any], source_format: str,
                                   eval_only: bool) -> None:
    """torchvision's weights were trained on mean/std-normalised inputs, and its bottleneck
    ResNets put the stride in the 3x3 conv: evaluate them that way (the paper's per-pixel mean
    and stride placement would load without a complaint and score far worse)."""
    from resdet.checkpoint.formats import strides_in_3x3

    if not weights.get("normalizer"):
        weights["normalizer"] = torchvision_normalizer().state_dict()
        logger.info("%s holds torchvision weights: inputs are normalised as torchvision's "
                    "models expect (ImageNet channel mean and std).", cfg.MODEL.WEIGHTS)
    arch = resolve_arch(cfg)
    if cfg.MODEL.RESNETS.STRIDE_IN_1X1 and strides_in_3x3(source_format, arch):
        msg = (f"{cfg.MODEL.WEIGHTS} holds torchvision weights, whose {arch} "
               "puts the stride in the 3x3 conv; set MODEL.RESNETS.STRIDE_IN_1X1 False")
        if eval_only:
            raise UserError(msg + " to evaluate them.")
        logger.warning("%s, or the weights start from a different network.", msg)


def _check_inputs(cfg: Any, args: Any):
    """Read the datasets and fetch MODEL.WEIGHTS (a download), before anything is created.

    Returns:
        ``(get_train_records, classes, (test_sets, class_subsets), weights)``: the training
        records (a cached callable; --eval-only reads them only to compute a normaliser the
        weights lack), the model's output classes (:func:`_model_classes`), the evaluation sets
        with the outputs each is scored over (:func:`_test_sets`), and the extra fields of
        MODEL.WEIGHTS (a cached callable).
    """
    pre = cfg.PRETRAIN
    train_name = cfg.DATASETS.TRAIN[0]

    @functools.lru_cache(maxsize=None)
    def weights() -> Dict[str, Any]:
        # Read only when needed: a resumed run takes its normaliser from its own checkpoint.
        return _weights_info(cfg.MODEL.WEIGHTS)

    @functools.lru_cache(maxsize=None)
    def get_train_records() -> List[dict]:
        return load_records(train_name, val_split=pre.VAL_SPLIT, split_seed=0, part="train")

    if not args.eval_only:
        _check_num_classes(cfg, get_train_records(), train_name)
    classes, classes_from = _model_classes(cfg, weights() if args.eval_only else {})
    test_sets = _test_sets(cfg, classes, classes_from,
                           class_subset=getattr(args, "class_subset", False))
    resumes = args.resume and Checkpointer(cfg.OUTPUT_DIR).last_checkpoint() is not None
    if cfg.MODEL.WEIGHTS and not resumes and comm.is_main_process():
        from resdet.checkpoint.files import resolve_weights

        resolve_weights(cfg.MODEL.WEIGHTS)  # downloads into torch.hub's cache, once
    comm.synchronize()
    return get_train_records, classes, test_sets, weights


def run(cfg: Any, args: Any) -> Dict[str, Any]:
    """Train (or, with ``args.eval_only``, evaluate) in this process.

    A start that fails leaves OUTPUT_DIR as it was (:func:`undo_failed_start`).

    Returns:
        ``{"eval_results": ..., "interrupted": bool, "checkpoint": path}``.
    """
    check_pretrain_config(cfg)
    # Fail fast, leaving nothing behind: the output folder, the datasets and the weights file
    # are checked (and weights downloaded) before OUTPUT_DIR is created or the model built.
    setup_logging(None)  # the console until default_setup adds log.txt
    check_output_dir(cfg.OUTPUT_DIR)
    inputs = _check_inputs(cfg, args)
    # A start that fails (the model, MODEL.WEIGHTS for another network, the first batch) takes
    # back OUTPUT_DIR, log.txt and config.yaml; the run's files stay once it is under way.
    with undo_failed_start(cfg.OUTPUT_DIR) as start:
        return _setup_and_run(cfg, args, inputs, start)


def _setup_and_run(cfg: Any, args: Any, inputs: tuple, start: RunStart) -> Dict[str, Any]:
    """:func:`run` from :func:`default_setup` on; ``start.mark_started()`` once the work
    begins."""
    get_train_records, classes, (test_sets, class_subsets), weights = inputs
    seed = default_setup(cfg, args)
    device = select_device(cfg)
    if device.type == "cpu" and comm.get_world_size() == 1:
        # Leave a core per loader worker: on a small shared CPU, oversubscribed intra-op threads
        # are several times slower than one thread.
        # (OMP_NUM_THREADS / torch's default stays the upper bound).
        spare = max(1, (os.cpu_count() or 1) - cfg.DATALOADER.NUM_WORKERS)
        torch.set_num_threads(min(torch.get_num_threads(), spare))
    pre = cfg.PRETRAIN
    train_name = cfg.DATASETS.TRAIN[0]
    model = build_pretrain_model(cfg).to(device)
    task = ClassificationTask(
        None, test_sets, test_mode=pre.TEST_MODE,
        crop=pre.CROP_SIZE, resize=pre.TEST_RESIZE, scales=list(pre.TEST_SCALES),
        test_batch=pre.TEST_BATCH_SIZE, num_workers=cfg.DATALOADER.NUM_WORKERS,
        skip_bad=bool(cfg.DATALOADER.SKIP_BAD_SAMPLES), device=device,
        export_info=_export_info(cfg, classes), class_subsets=class_subsets)

    def ensure_normalizer() -> None:
        if task.normalizer is None and weights().get("normalizer"):
            task.normalizer = Normalizer.from_state(weights()["normalizer"])
        if task.normalizer is None:
            norm = None
            if comm.is_main_process():
                logger.info("Computing the %s mean of %s (up to %d images)...", pre.MEAN,
                            train_name, pre.MEAN_SAMPLES)
                norm = compute_normalizer(
                    get_train_records(), mode=pre.MEAN, crop=pre.CROP_SIZE,
                    resize=pre.TEST_RESIZE, max_samples=pre.MEAN_SAMPLES,
                    num_workers=cfg.DATALOADER.NUM_WORKERS)
                norm = norm.state_dict()
            task.normalizer = Normalizer.from_state(comm.broadcast_object(norm))

    def load_initial_weights() -> None:
        if cfg.MODEL.WEIGHTS:
            from resdet.checkpoint import load_weights

            # The file is read once (weights()); its content is not kept after loading.
            content = weights().pop("object", None)
            # nothing trains what the file does not fill when evaluating: refuse such weights
            report = load_weights(model, cfg.MODEL.WEIGHTS if content is None else content,
                                  source=cfg.MODEL.WEIGHTS, arch=resolve_arch(cfg),
                                  purpose="evaluate" if args.eval_only else "finetune")
            logger.info("Loaded %d tensors from %s (missing: %d).", len(report.matched),
                        cfg.MODEL.WEIGHTS, len(report.missing))
            if report.source_format.startswith("torchvision"):
                _adopt_torchvision_conventions(cfg, weights(), report.source_format,
                                               args.eval_only)

    if args.eval_only:
        if not cfg.MODEL.WEIGHTS:
            raise UserError("--eval-only needs MODEL.WEIGHTS (e.g. OUTPUT_DIR/model_final.pth).")
        load_initial_weights()
        ensure_normalizer()
        start.mark_started()
        results = task.evaluate(model)
        from resdet.engine.events import rounded, write_eval_results

        write_eval_results(cfg.OUTPUT_DIR, results)
        logger.info("Evaluation results: %s", rounded(results))
        return {"eval_results": results, "interrupted": False, "checkpoint": None}

    batch = per_process_batch(cfg.SOLVER.IMS_PER_BATCH)

    def data_loader_fn(start_iter: int):
        ds = TrainDataset(get_train_records(), task.normalizer, augmentation=pre.AUGMENTATION,
                          crop=pre.CROP_SIZE, resize_range=pre.TRAIN_RESIZE_RANGE, pad=pre.PAD,
                          color_std=pre.COLOR_AUG_STD if pre.COLOR_AUG else 0.0, seed=seed,
                          skip_bad=bool(cfg.DATALOADER.SKIP_BAD_SAMPLES))
        return build_train_loader(ds, batch_per_process=batch, seed=seed, start_iter=start_iter,
                                  num_workers=cfg.DATALOADER.NUM_WORKERS)

    trainer = build_trainer(cfg, model, task, data_loader_fn, device=device, hooks=[start.hook])
    resumed = trainer.resume() if args.resume else False
    if not resumed:
        load_initial_weights()
    ensure_normalizer()
    result = trainer.train()
    return {"eval_results": result.eval_results, "interrupted": result.interrupted,
            "checkpoint": result.checkpoint, "iteration": result.iteration}


def _worker(args: Any) -> Dict[str, Any]:
    from resdet.config import load_config

    cfg = load_config(args.config_file, args.opts)
    return run(cfg, args)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Command line of ``tools/pretrain_imagenet.py``."""
    parser = default_argument_parser(
        "Train a classifier with the paper's ImageNet (Sec. 3.4) or CIFAR-10 (Sec. 4.2) recipe; "
        "its model_final.pth is a detection backbone (MODEL.WEIGHTS).")
    parser.add_argument(
        "--class-subset", action="store_true",
        help="score each test set over the model outputs of its own classes only (e.g. a val "
             "set with 200 of ImageNet's 1000 classes), as timm validate.py's --valid-labels; "
             "default: over all of the model's outputs, as timm's default")
    args = parser.parse_args(argv)
    if not args.config_file:
        raise UserError("--config is required, e.g. --config configs/pretrain/quickstart.yaml.")
    from resdet.config import load_config

    cfg = load_config(args.config_file, args.opts)  # config errors before any process starts
    check_pretrain_config(cfg)
    # In this process for one process or under torchrun (which has started one per rank);
    # otherwise in spawned workers, whose results stay in OUTPUT_DIR.
    out = launch(_worker, args.num_gpus, num_machines=args.num_machines,
                 machine_rank=args.machine_rank, dist_url=args.dist_url, args=(args,)) or {}
    if out.get("interrupted"):
        print(f"Stopped by a signal; saved {out['checkpoint']}; continue with --resume.")
