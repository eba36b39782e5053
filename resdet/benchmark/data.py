"""Does the data loader keep up?  Loader images/s against the training step's consumption.

Three measurements, in this order:

1. the loader alone: the main process only pulls batches (``DATALOADER.NUM_WORKERS`` workers,
   default 2): images over the time from the first batch to the last of at least 20, the rate
   the workers sustain decoding and augmenting;
2. the training step alone, on one batch held in memory (the rate the model consumes images);
3. both together, as training runs them: each step waits for the next batch; the share of the
   time spent waiting is the loader's cost to training (0 when it keeps up). The workers' prefetch
   queue is full when this starts, so over few iterations it flatters the loader; the
   loader-alone rate of 1. is the number to compare.

The ratio reported is loader seconds per image / training seconds per image: at most 1 means the
loader is not the bottleneck. The loader and the step are not alternated (the workers would fill
their prefetch queue while the step runs and look faster than they are).
"""

from __future__ import annotations

import time
from typing import Callable, Dict, Iterator, Tuple

import torch

from resdet.benchmark.settings import (
    BenchSettings,
    autocast,
    prepare_input,
    prepare_model,
    torch_device,
)
from resdet.benchmark.timing import Runner, run_alternating
from resdet.errors import UserError


def _time_loader(it: Iterator, batches: int, count: Callable[[object], int]) -> Dict[str, object]:
    """Images/s of the loader alone, from the first batch's arrival to the last's.

    The first batch (worker start-up) is not timed. Per-batch times would mislead: the workers
    fill their prefetch queue while the main process waits, so most ``next()`` calls return at
    once; the rate over many batches is what the workers sustain.
    """
    next(it)
    t = time.perf_counter()
    images = sum(count(next(it)) for _ in range(batches))
    total = time.perf_counter() - t
    return {"sec_per_iter": total / batches, "images_per_iter": images / batches,
            "images_per_sec": images / total, "iters": batches, "peak_memory_mb": None,
            "memory_method": "not measured (worker processes)"}


def _time_together(it: Iterator, step_on: Callable[[object], None], iters: int,
                   device: torch.device) -> Dict[str, float]:
    wait = total = 0.0
    for _ in range(iters):
        t0 = time.perf_counter()
        batch = next(it)
        t1 = time.perf_counter()
        step_on(batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        wait += t1 - t0
        total += time.perf_counter() - t0
    return {"sec_per_iter": total / iters, "data_wait_fraction": wait / total}


def _detection_parts(s: BenchSettings) -> Tuple[Iterator, Callable, Callable, str]:
    from resdet.benchmark.detection import load_detection_config, resolve_engine_name

    engine = resolve_engine_name(s)
    if engine != "torchvision":
        raise UserError("--task data measures the torchvision engine's detection loader; add "
                        "--engine torchvision (Detectron2's loader is Detectron2's own).")
    try:
        from resdet.tvdet.build import build_model
        from resdet.tvdet.data import build_train_loader
    except ImportError as e:
        raise UserError(f"The detection data benchmark needs resdet.tvdet.data, which is not "
                        f"available ({e}).") from None
    cfg = load_detection_config(s, engine, ("DATALOADER.NUM_WORKERS", str(s.num_workers),
                                            "SOLVER.IMS_PER_BATCH", str(s.batch)))
    it = build_train_loader(cfg, 0, seed=0)
    torch.manual_seed(0)
    model = prepare_model(build_model(cfg, load_weights=False), s)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    # lr 0: the step does the same work, and randomly initialised detectors (frozen BN, no
    # pretrained weights) cannot diverge to NaN boxes during the timed rounds.
    opt = torch.optim.SGD(params, lr=0.0, momentum=0.9, weight_decay=1e-4)
    device = torch_device(s)

    def step_on(batch):
        images = [prepare_input(im, s) for im in batch["images"]]
        targets = [{k: v.to(device) for k, v in t.items()} for t in batch["targets"]]
        opt.zero_grad(set_to_none=True)
        with autocast(s):
            losses = model(images, targets)
        sum(losses.values()).backward()
        opt.step()

    return it, step_on, lambda b: len(b["images"]), f"detection loader ({cfg.DATASETS.TRAIN[0]})"


def _pretrain_parts(s: BenchSettings) -> Tuple[Iterator, Callable, Callable, str]:
    """The pretraining loader (PRETRAIN.* augmentation) and a classifier training step.

    ``--arch``: ``synthetic_imagenet`` with the default ImageNet recipe (scale augmentation to a
    shorter side in [256, 480], 224 crop, colour lighting); ``--config``: its DATASETS.TRAIN[0]
    and PRETRAIN keys. The mean/std are per channel (the per-pixel mean costs the same
    subtraction).
    """
    from resdet.benchmark.backbone import build_ours, default_num_classes
    from resdet.config import load_config

    try:
        from resdet.pretrain.data import Normalizer, TrainDataset, build_train_loader, load_records
    except ImportError as e:
        raise UserError(f"The pretraining data benchmark needs resdet.pretrain.data, which is "
                        f"not available ({e}).") from None
    cfg = load_config(s.config, list(s.opts))
    pre = cfg.PRETRAIN
    dataset = cfg.DATASETS.TRAIN[0] if s.config else "synthetic_imagenet"
    arch = s.arch or cfg.MODEL.RESDET.ARCH
    crop = s.input_size or pre.CROP_SIZE
    records = load_records(dataset)
    ds = TrainDataset(records, Normalizer(torch.zeros(3, 1, 1), torch.ones(3)),
                      augmentation=pre.AUGMENTATION, crop=crop,
                      resize_range=pre.TRAIN_RESIZE_RANGE, pad=pre.PAD,
                      color_std=pre.COLOR_AUG_STD if pre.COLOR_AUG else 0.0, seed=0)
    it = iter(build_train_loader(ds, batch_per_process=s.batch, seed=0, start_iter=0,
                                 num_workers=s.num_workers))
    torch.manual_seed(0)
    model_settings = BenchSettings(**{**s.as_dict(), "arch": arch})
    model = prepare_model(build_ours(model_settings), s)
    model.train()
    num_classes = default_num_classes(arch)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
    device = torch_device(s)

    def step_on(batch):
        x = prepare_input(batch["image"], s)
        y = batch["label"].to(device) % num_classes
        opt.zero_grad(set_to_none=True)
        with autocast(s):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    return it, step_on, lambda b: len(b["label"]), f"pretraining loader ({dataset}, {crop}px)"


def _is_classification_config(s: BenchSettings) -> bool:
    from resdet.config import load_config
    from resdet.data.classification import is_classification_dataset

    cfg = load_config(s.config, list(s.opts))
    return bool(cfg.DATASETS.TRAIN) and is_classification_dataset(cfg.DATASETS.TRAIN[0])


def data_benchmark(s: BenchSettings) -> Dict[str, object]:
    """Loader images/s, training-step images/s and both together; see the module docstring."""
    pretrain = bool(s.arch) or _is_classification_config(s)
    it, step_on, count, name = _pretrain_parts(s) if pretrain else _detection_parts(s)
    # at least 20 batches, so that the prefetched ones do not dominate the rate
    loader = _time_loader(it, max(s.iters, 20), count)
    loader["name"] = f"{name}, {s.num_workers} workers"
    held = next(it)
    train = run_alternating([Runner("training step (batch in memory)", lambda: step_on(held),
                                    count(held), torch_device(s))],
                            warmup=s.warmup, iters=s.iters, measure_memory=False)[0]
    together = _time_together(it, step_on, s.iters, torch_device(s))
    consumption = train.summary()
    loader_spi = 1.0 / loader["images_per_sec"]
    train_spi = 1.0 / consumption["images_per_sec"]
    return {"ours": loader, "reference": consumption, "ratio": loader_spi / train_spi,
            "ratio_kind": "loader s/image / training s/image (<= 1: the loader keeps up)",
            "keeps_up": loader_spi <= train_spi, "together": together}
