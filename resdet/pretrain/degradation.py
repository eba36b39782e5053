"""The paper's Fig. 6 experiment: plain vs residual CIFAR-style nets at 20 and 56 layers.

Trains ``cifar_plain20``, ``cifar_resnet20``, ``cifar_plain56`` and ``cifar_resnet56`` with one
recipe on any classification dataset, then draws training (thin) and validation (bold) error.
The paper's finding ("degradation", Sec. 4.2): plain-56 has *higher training error* than plain-20,
while ResNet-56 is better than ResNet-20.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from typing import Dict, List, Optional, Sequence

from resdet.errors import UserError

ARCHS = ("cifar_plain20", "cifar_resnet20", "cifar_plain56", "cifar_resnet56")
logger = logging.getLogger("resdet.pretrain")


def _default_config(dataset: str) -> str:
    root = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "pretrain")
    name = "Base-CIFAR10.yaml" if dataset.startswith("cifar10") else "quickstart.yaml"
    return os.path.normpath(os.path.join(root, name))


def _test_name(train: str) -> str:
    from resdet.data import list_datasets

    for cand in (train.replace("_train", "_test"), train.replace("_train", "_val"),
                 train + "_val"):
        if cand != train and cand in list_datasets():
            return cand
    raise UserError(f"No test set found for {train}; pass --test-dataset.")


def run_degradation(dataset: str, iters: int, out_dir: str, *, test_dataset: Optional[str] = None,
                    config: Optional[str] = None, batch: Optional[int] = None,
                    archs: Sequence[str] = ARCHS, opts: Sequence[str] = (),
                    eval_points: int = 10) -> Dict[str, Dict[str, float]]:
    """Train the four nets one after another (in this process) and plot them.

    Args:
        dataset: training set name (e.g. cifar10_train, synthetic_imagenet).
        iters: iterations per net; the lr drops /10 at 50% and 75% (the paper's 32k/48k of 64k).
        out_dir: one sub-folder per net, plus ``degradation.png`` and ``summary.json``.
        test_dataset: validation set (default: derived from ``dataset``).
        config: base config (default Base-CIFAR10.yaml for CIFAR, quickstart.yaml otherwise).
        batch: SOLVER.IMS_PER_BATCH override.
        archs: the networks.
        opts: extra ``KEY VALUE`` overrides for every run.
        eval_points: evaluations per run.

    Returns:
        ``{arch: {"train_err": %, "val_err": %}}`` at the end of training.
    """
    from resdet.config import load_config
    from resdet.data import get_metadata
    from resdet.pretrain.curves import load_curves, plot_runs
    from resdet.pretrain.train import run

    test_dataset = test_dataset or _test_name(dataset)
    classes = get_metadata(dataset).get("classes") or []
    if not classes:
        from resdet.data import get_dataset_dicts

        classes = sorted({r["label"] for r in get_dataset_dicts(dataset)})
    summary: Dict[str, Dict[str, float]] = {}
    dirs: List[str] = []
    for arch in archs:
        run_dir = os.path.join(out_dir, arch)
        o = ["MODEL.RESDET.ARCH", arch, "MODEL.RESDET.NUM_CLASSES", str(len(classes)),
             "DATASETS.TRAIN", f"('{dataset}',)", "DATASETS.TEST", f"('{test_dataset}',)",
             "SOLVER.MAX_ITER", str(iters),
             "SOLVER.STEPS", f"({iters // 2}, {iters * 3 // 4})",
             "TEST.EVAL_PERIOD", str(max(1, iters // eval_points)),
             "SOLVER.CHECKPOINT_PERIOD", str(max(1, iters // 2)),
             "PRETRAIN.LR_POLICY", "step", "PRETRAIN.LOG_PERIOD", str(max(1, iters // 50)),
             "OUTPUT_DIR", run_dir]
        if batch:
            o += ["SOLVER.IMS_PER_BATCH", str(batch)]
        cfg = load_config(config or _default_config(dataset), o + list(opts))
        logger.info("Degradation experiment: training %s for %d iterations.", arch, iters)
        run(cfg, argparse.Namespace(eval_only=False, resume=False))
        c = load_curves(run_dir, test_dataset)
        tail = c["train"][1][-max(1, len(c["train"][1]) // 10):]
        summary[arch] = {"train_err": sum(tail) / len(tail),
                         "val_err": c["val"][1][-1] if c["val"][1] else float("nan")}
        dirs.append(run_dir)
    png = plot_runs(dirs, os.path.join(out_dir, "degradation.png"), labels=list(archs),
                    dataset=test_dataset,
                    title=f"plain vs residual on {dataset} ({iters} iterations)")
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    logger.info("Wrote %s", png)
    return summary
