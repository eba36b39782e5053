"""Detection steps for ``--config``: resdet's detector on the torchvision engine (against
torchvision's ``fasterrcnn_resnet50_fpn``) or on the Detectron2 engine (against Detectron2's own
models).

The detectors and their reference models come from the engine engineers' helpers,
:mod:`resdet.tvdet.bench` and :mod:`resdet.d2.bench`; this module only turns them into timed
:class:`~resdet.benchmark.timing.Runner` s. Where a helper is missing the benchmark says so in one
sentence instead of measuring something else.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, List, Tuple

import torch

from resdet.benchmark.settings import BenchSettings, autocast, prepare_model, torch_device
from resdet.benchmark.timing import Runner
from resdet.errors import UserError

if TYPE_CHECKING:
    from fvcore.common.config import CfgNode


def load_detection_config(s: BenchSettings, engine: str, overrides: tuple = ()):
    """The config of ``--config`` with ``s.opts`` (and ``overrides``) applied."""
    from resdet.config import load_config

    return load_config(s.config, list(s.opts) + list(overrides),
                       engine="detectron2" if engine == "detectron2" else None)


def resolve_engine_name(s: BenchSettings) -> str:
    """"detectron2" or "torchvision" for ``--engine`` (auto: Detectron2 when it imports)."""
    from resdet.train_detection import resolve_engine

    return resolve_engine(s.engine, s.config or "", list(s.opts)).name


def _bench_module(engine: str):
    name = "resdet.d2.bench" if engine == "detectron2" else "resdet.tvdet.bench"
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise UserError(f"The {engine}-engine detection benchmark needs {name}, which is not "
                        f"available ({e}); use --arch for a backbone benchmark meanwhile."
                        ) from None


def _train_step(model: torch.nn.Module, images: list, targets: list, s: BenchSettings):
    """One SGD step of a torchvision-style detector (loss dict from ``model(images, targets)``)."""
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    # lr 0: the step does the same work, and randomly initialised detectors (frozen BN, no
    # pretrained weights) cannot diverge to NaN boxes during the timed rounds.
    opt = torch.optim.SGD(params, lr=0.0, momentum=0.9, weight_decay=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast(s):
            losses = model(images, targets)
        sum(losses.values()).backward()
        opt.step()

    return step


def _inference_step(model: torch.nn.Module, images: list, s: BenchSettings):
    model.eval()

    def step():
        with torch.no_grad(), autocast(s):
            model(images)

    return step


def synthetic_detection_batch(cfg: CfgNode, batch: int, input_size, device: torch.device,
                              seed: int = 0) -> Tuple[list, list]:
    """``batch`` random float images (0-255, the loader's output after resizing) with 4 boxes
    each: the short side is ``input_size`` (default ``INPUT.MIN_SIZE_TRAIN[0]``), the long side
    4/3 of it (capped by ``INPUT.MAX_SIZE_TRAIN``)."""
    h = int(input_size or cfg.INPUT.MIN_SIZE_TRAIN[0])
    w = min(int(round(h * 4 / 3)), int(cfg.INPUT.MAX_SIZE_TRAIN))
    g = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for _ in range(batch):
        images.append((torch.rand(3, h, w, generator=g) * 255).to(device))
        xy = torch.rand(4, 2, generator=g) * torch.tensor([w * 0.6, h * 0.6])
        wh = (0.1 + 0.3 * torch.rand(4, 2, generator=g)) * torch.tensor([w, h])
        boxes = torch.cat([xy, xy + wh], dim=1)
        labels = torch.randint(0, cfg.MODEL.ROI_HEADS.NUM_CLASSES, (4,), generator=g)
        targets.append({"boxes": boxes.to(device), "labels": labels.to(device)})
    return images, targets


def _layout(cfg: CfgNode) -> str:
    name = cfg.MODEL.BACKBONE.NAME
    return "VGG" if "vgg" in name else ("FPN" if "fpn" in name else "C4")


def detection_runners(s: BenchSettings) -> List[Runner]:
    """``[ours]`` or ``[ours, reference]`` for a detection config (train or inference).

    Ours on the torchvision engine is :func:`resdet.tvdet.build.build_model` of the config on
    synthetic images of ``--input-size`` (short side); with ``--reference torchvision`` both
    models come from :func:`resdet.tvdet.bench.build_models` (the config made to match
    ``fasterrcnn_resnet50_fpn``'s sizes). The Detectron2 engine's pair comes from
    :mod:`resdet.d2.bench`.
    """
    engine = resolve_engine_name(s)
    if s.reference not in (None, "torchvision", "detectron2"):
        raise UserError(f"--reference {s.reference} does not apply to a detection config; use "
                        "torchvision (torchvision engine) or detectron2 (Detectron2 engine).")
    if s.reference == "detectron2" and engine != "detectron2":
        raise UserError("--reference detectron2 needs the Detectron2 engine (--engine detectron2, "
                        "with detectron2 installed).")
    if s.reference == "torchvision" and engine != "torchvision":
        raise UserError("--reference torchvision compares on the torchvision engine; add "
                        "--engine torchvision.")
    if engine == "detectron2":
        return _detectron2_runners(s)
    cfg = load_detection_config(s, engine)
    device = torch_device(s)
    h = int(s.input_size or cfg.INPUT.MIN_SIZE_TRAIN[0])
    w = min(int(round(h * 4 / 3)), int(cfg.INPUT.MAX_SIZE_TRAIN))
    if s.reference == "torchvision":
        if cfg.MODEL.RESDET.ARCH != "resnet50" or _layout(cfg) != "FPN":
            raise UserError(f"--reference torchvision compares R50-FPN with torchvision's "
                            f"fasterrcnn_resnet50_fpn; {s.config} is {cfg.MODEL.RESDET.ARCH} "
                            f"{_layout(cfg)} (use configs/faster_rcnn_R50_FPN_coco.yaml).")
        models, inputs = _torchvision_pair(s, h, w, device)
    else:
        from resdet.tvdet.build import build_model

        # test-time resize to the input's own size: inference is timed at --input-size too
        cfg = load_detection_config(s, engine, ("INPUT.MIN_SIZE_TEST", str(h),
                                                "INPUT.MAX_SIZE_TEST", str(max(w, h))))
        torch.manual_seed(0)
        ours = build_model(cfg, load_weights=False)
        models = [(f"resdet {cfg.MODEL.RESDET.ARCH} {_layout(cfg)} (torchvision engine)", ours)]
        inputs = [synthetic_detection_batch(cfg, s.batch, h, device)]
    runners = []
    for (name, model), (images, targets) in zip(models, inputs):
        model = prepare_model(model, s)
        step = (_train_step(model, images, targets, s) if s.task == "train"
                else _inference_step(model, images, s))
        runners.append(Runner(name, step, len(images), device))
    return runners


def _as_pretrained_setup(model: torch.nn.Module) -> None:
    """Give torchvision's detector the backbone setup it trains with from ImageNet weights.

    Built without weights, ``fasterrcnn_resnet50_fpn`` switches to trainable BatchNorm and trains
    every layer; with weights (how it is used, and what resdet's R50-FPN config does: FrozenBN,
    ``FREEZE_AT`` 2) it has frozen BN and trains layer2..layer4 only. Timing the no-weights
    variant would charge the reference for BN statistics and stem/res2 gradients it never pays.
    """
    from torchvision.ops.misc import FrozenBatchNorm2d

    def convert(module: torch.nn.Module) -> None:
        for name, child in module.named_children():
            if isinstance(child, torch.nn.BatchNorm2d):
                frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
                for key in ("weight", "bias", "running_mean", "running_var"):
                    getattr(frozen, key).copy_(getattr(child, key).detach())
                setattr(module, name, frozen.to(child.weight.device))
            else:
                convert(child)

    body = model.backbone.body
    convert(body)
    for name, p in body.named_parameters():
        if not name.startswith(("layer2", "layer3", "layer4")):
            p.requires_grad_(False)


def _torchvision_pair(s: BenchSettings, h: int, w: int, device: torch.device):
    """resdet's R50-FPN (the config with :data:`resdet.tvdet.bench.MATCH_TORCHVISION`) and
    torchvision's ``fasterrcnn_resnet50_fpn`` of the same sizes, on the same images (0-1 and
    1-based labels for torchvision). The test-time resize is set to the input's own size, so
    neither model interpolates."""
    bench = _bench_module("torchvision")
    if not hasattr(bench, "build_models"):
        raise UserError("The detection reference needs resdet.tvdet.bench.build_models, which "
                        "is not available yet.")
    torch.manual_seed(0)
    pair = bench.build_models(min_size=h, max_size=max(w, h), device=device,
                              config=s.config or "")
    _as_pretrained_setup(pair["torchvision"])
    images, targets = bench.make_inputs(s.batch, (h, w), device)
    tv_inputs = ([im / 255.0 for im in images],
                 [dict(t, labels=t["labels"] + 1) for t in targets])
    models = [("resdet R50-FPN (torchvision engine)", pair["resdet"]),
              ("torchvision fasterrcnn_resnet50_fpn", pair["torchvision"])]
    return models, [(images, targets), tv_inputs]


def _d2_step(model: torch.nn.Module, inputs: list, s: BenchSettings):
    """A Detectron2 model's step: ``model(list of dicts)`` gives losses (train) or outputs."""
    if s.task != "train":
        model.eval()

        def infer():
            with torch.no_grad(), autocast(s):
                model(inputs)

        return infer
    from detectron2.utils.events import EventStorage

    model.train()
    # lr 0, as in _train_step: same work, no divergence of the random weights
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0,
                          momentum=0.9, weight_decay=1e-4)
    storage = EventStorage(0)  # Detectron2's losses log into the current storage

    def train():
        opt.zero_grad(set_to_none=True)
        with storage, autocast(s):
            losses = model(inputs)
        sum(losses.values()).backward()
        opt.step()

    return train


def _detectron2_runners(s: BenchSettings) -> List[Runner]:
    """resdet's parts registered in Detectron2 against Detectron2's own model of the same kind
    (C4 or FPN) and depth, with identical weights (:func:`resdet.d2.bench.build_pair`)."""
    bench = _bench_module("detectron2")
    cfg = load_detection_config(s, "detectron2")
    kind = "FPN" if "fpn" in cfg.MODEL.BACKBONE.NAME else "C4"
    depth = int(cfg.MODEL.RESNETS.DEPTH)
    if "vgg" in cfg.MODEL.BACKBONE.NAME or depth not in (50, 101):
        raise UserError("The Detectron2-engine benchmark compares R50/R101 C4 and FPN models "
                        "(Detectron2 has no VGG-16); set MODEL.RESNETS.DEPTH 50 or 101.")
    h = int(s.input_size or cfg.INPUT.MIN_SIZE_TRAIN[0])
    w = min(int(round(h * 4 / 3)), int(cfg.INPUT.MAX_SIZE_TRAIN))
    device = torch_device(s)
    theirs, ours = bench.build_pair(kind, depth, device=str(device))
    inputs = bench.make_inputs(s.batch, h, w, device=str(device))
    models = [(f"resdet R{depth}-{kind} (Detectron2 engine)", ours)]
    if s.reference == "detectron2":
        models.append((f"detectron2 R{depth}-{kind}", theirs))
    runners = []
    for name, model in models:
        model = prepare_model(model, s)
        runners.append(Runner(name, _d2_step(model, inputs, s), len(inputs), device))
    return runners
