"""Read a finished training run's directory (either engine): its config, metrics and results."""

from __future__ import annotations

import json
import logging
import os
import statistics
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import yaml

from resdet.engine.events import read_metrics
from resdet.errors import UserError

logger = logging.getLogger(__name__)

PRETTY_ARCH = {"vgg16": "VGG-16"}


def pretty_arch(arch: str) -> str:
    """"resnet101" -> "ResNet-101", "plain34" -> "plain-34", "vgg16" -> "VGG-16"."""
    if arch in PRETTY_ARCH:
        return PRETTY_ARCH[arch]
    for prefix, shown in (("cifar_resnet", "CIFAR ResNet-"), ("cifar_plain", "CIFAR plain-"),
                          ("resnet", "ResNet-"), ("plain", "plain-")):
        if arch.startswith(prefix):
            return shown + arch[len(prefix):]
    return arch


@dataclass
class Run:
    """One run directory, read by :func:`read_run`."""

    path: str
    arch: str
    setting: str  # "C4", "FPN" or "VGG"
    engine: str
    train_datasets: List[str]
    metrics: List[dict] = field(default_factory=list)
    eval_results: Dict[str, dict] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """Backbone, layout (none for VGG) and the run folder's name, for legends and tables."""
        layout = "" if self.setting == "VGG" else f" {self.setting}"
        return f"{pretty_arch(self.arch)}{layout} ({os.path.basename(self.path.rstrip('/'))})"

    def loss_curve(self) -> tuple:
        """``(iterations, total_loss)`` of the metrics lines that carry a loss."""
        pts = [(m["iteration"], m["total_loss"]) for m in self.metrics
               if isinstance(m.get("total_loss"), (int, float)) and "iteration" in m]
        return [p[0] for p in pts], [p[1] for p in pts]

    def seconds_per_iter(self) -> Optional[float]:
        """Median of the logged ``time`` (seconds per iteration), None when none was logged."""
        times = [m["time"] for m in self.metrics if isinstance(m.get("time"), (int, float))]
        return statistics.median(times) if times else None

    def last_iteration(self) -> Optional[int]:
        """The number of iterations run (the last logged iteration + 1), or None."""
        its = [m["iteration"] for m in self.metrics if isinstance(m.get("iteration"), int)]
        return max(its) + 1 if its else None

    def ap(self, dataset: str, key: str) -> Optional[float]:
        """``eval_results[dataset]['bbox'][key]`` (AP in percent) or None when absent."""
        v = self.eval_results.get(dataset, {}).get("bbox", {}).get(key)
        return float(v) if isinstance(v, (int, float)) else None


def _load_yaml(path: str) -> dict:
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise UserError(f"{path} cannot be read ({e.strerror}); pass a finished training run's "
                        "OUTPUT_DIR.") from None
    except yaml.YAMLError as e:
        raise UserError(f"{path} is not valid YAML ({str(e).splitlines()[0]}); it should be the "
                        "config.yaml a training run writes.") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} does not hold a config (a YAML mapping); pass a training run's "
                        "OUTPUT_DIR.")
    return data


def _get(d: dict, dotted: str, default=None):
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return default
        d = d[part]
    return d


def identify_backbone(cfg: dict) -> tuple:
    """``(arch, setting)`` from a config dict of either engine.

    The arch is ``MODEL.RESDET.ARCH`` (both engines' resdet configs carry it and the loader
    checks ``MODEL.RESNETS.DEPTH`` against it); a plain Detectron2 config without resdet's keys
    gives ``resnet{MODEL.RESNETS.DEPTH}``. The setting is "VGG", "FPN" (the backbone name says
    fpn) or "C4" (the paper's: res5 as the per-RoI head).
    """
    name = str(_get(cfg, "MODEL.BACKBONE.NAME", "") or "")
    arch = _get(cfg, "MODEL.RESDET.ARCH")
    if "vgg" in name.lower():
        arch = arch or "vgg16"
    if not arch:
        depth = _get(cfg, "MODEL.RESNETS.DEPTH")
        arch = f"resnet{depth}" if depth else "unknown"
    setting = "VGG" if arch == "vgg16" else ("FPN" if "fpn" in name.lower() else "C4")
    return str(arch), setting


def _engine(run_dir: str, cfg: dict) -> str:
    log = os.path.join(run_dir, "log.txt")
    if os.path.isfile(log):
        with open(log, errors="replace") as f:
            for _, line in zip(range(50), f):
                if "Engine: " in line:
                    return line.split("Engine: ", 1)[1].split()[0]
    engine = str(cfg.get("ENGINE", "") or "")
    return engine if engine and engine != "auto" else "unknown"


def read_eval_results(path: str) -> Dict[str, dict]:
    """``{dataset: {"bbox": {"AP": .., "AP50": ..}}}`` from an eval_results.json."""
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as e:
        raise UserError(f"{path} cannot be read ({e.strerror}); the run needs an evaluation "
                        "(TEST set in DATASETS.TEST) that writes eval_results.json.") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}); it should be "
                        "the eval_results.json a training run writes.") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise UserError(f"{path} should map each dataset to its results, as "
                        '{"voc_2007_test": {"bbox": {"AP50": ..}}}.')
    return data


def read_run(run_dir: str) -> Run:
    """Read ``config.yaml``, ``metrics.json`` and ``eval_results.json`` of ``run_dir``.

    Raises:
        UserError: the folder or one of the files is missing or broken (the message names it).
    """
    if not os.path.isdir(run_dir):
        raise UserError(f"{run_dir} is not a directory; pass training runs' OUTPUT_DIRs.")
    for name in ("config.yaml", "metrics.json", "eval_results.json"):
        if not os.path.isfile(os.path.join(run_dir, name)):
            raise UserError(f"{os.path.join(run_dir, name)} does not exist; each RUN_DIR must be "
                            "a finished training run (config.yaml, metrics.json, "
                            "eval_results.json).")
    cfg = _load_yaml(os.path.join(run_dir, "config.yaml"))
    arch, setting = identify_backbone(cfg)
    train = _get(cfg, "DATASETS.TRAIN", []) or []
    return Run(path=run_dir, arch=arch, setting=setting, engine=_engine(run_dir, cfg),
               train_datasets=list(train),
               metrics=read_metrics(os.path.join(run_dir, "metrics.json"), strict=True),
               eval_results=read_eval_results(os.path.join(run_dir, "eval_results.json")))
