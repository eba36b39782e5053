"""The classification task that :class:`resdet.engine.Trainer` runs for pretraining."""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from resdet.engine import comm
from resdet.evaluation.classification import ClassificationEvaluator
from resdet.pretrain.data import EvalDataset, Normalizer, build_test_loader
from resdet.pretrain.multicrop import multiscale_probs, ten_crop_probs

logger = logging.getLogger("resdet.pretrain")


@torch.no_grad()
def evaluate_classifier(model: nn.Module, loader: Any, normalizer: Normalizer, *, mode: str,
                        device: torch.device, scales: Optional[List[int]] = None,
                        class_subset: Optional[List[int]] = None) -> Dict[str, float]:
    """Top-1/top-5 error (percent) of ``model`` over this process's shard of a test loader.

    Args:
        model: the classifier (its train/eval mode is restored afterwards).
        loader: from :func:`resdet.pretrain.data.build_test_loader`.
        normalizer: mean/std of the training set.
        mode: "center", "10crop" or "multiscale".
        device: where to run.
        scales: shorter sides for "multiscale".
        class_subset: score over these outputs only (see
            :class:`~resdet.evaluation.classification.ClassificationEvaluator`); None: all.

    Returns:
        ``{"top1_err", "top5_err", "num_images"}`` summed over processes.
    """
    was_training = model.training
    model.eval()
    ev = ClassificationEvaluator(class_subset=class_subset)
    try:
        for batch in loader:
            images = batch["image"].to(device, non_blocking=True)
            labels = batch["label"]
            if mode == "center":
                probs = model(normalizer(images)).float()
            elif mode == "10crop":
                probs = ten_crop_probs(model, images, normalizer)
            else:
                probs = torch.stack([multiscale_probs(model, im, scales or [224], normalizer)
                                     for im in images])
            ev.process(probs.cpu(), labels)
    finally:
        model.train(was_training)
    return ev.evaluate()


class ClassificationTask:
    """Cross-entropy training and top-k evaluation for :class:`resdet.engine.Trainer`.

    Args:
        normalizer: training-set mean/std (None until computed or restored by ``--resume``).
        test_sets: ``{name: records}`` evaluated in this order; the first one's top-1 error
            drives the "plateau" lr rule.
        test_mode, crop, resize, scales, test_batch, num_workers, skip_bad: evaluation settings.
        device: where the model runs.
        export_info: extra metadata for ``model_final.pth`` (arch, options).
        class_subsets: ``{test set name: output indices}`` to score a test set over those outputs
            only (``--class-subset``); the others are scored over all outputs.
    """

    def __init__(self, normalizer: Optional[Normalizer], test_sets: Dict[str, List[dict]], *,
                 test_mode: str, crop: int, resize: int, scales: List[int], test_batch: int,
                 num_workers: int, skip_bad: bool, device: torch.device,
                 export_info: Optional[Dict[str, Any]] = None,
                 class_subsets: Optional[Dict[str, List[int]]] = None):
        self.normalizer = normalizer
        self.test_sets = test_sets
        self.test_mode = test_mode
        self.crop = crop
        self.resize = resize
        self.scales = scales
        self.test_batch = test_batch
        self.num_workers = num_workers
        self.skip_bad = skip_bad
        self.device = device
        self.export_info = dict(export_info or {})
        self.class_subsets = dict(class_subsets or {})
        self.bad_images = 0
        self.last_results: Optional[Dict[str, Any]] = None

    def run_step(self, model: nn.Module, batch: Dict[str, torch.Tensor]) -> Dict[str, Any]:
        """Forward one batch; loss and the batch's top-1 training error (a fraction)."""
        labels = batch["label"]
        logits = model(batch["image"])
        loss = F.cross_entropy(logits.float(), labels)
        err = (logits.detach().argmax(dim=1) != labels).float().mean()
        self.bad_images += int(batch["n_bad"].sum()) if "n_bad" in batch else 0
        return {"loss_cls": loss, "train_error": err}

    def evaluate(self, model: nn.Module) -> Dict[str, Dict[str, float]]:
        """Top-1/top-5 error on every test set (all processes take part)."""
        results = {}
        for name, records in self.test_sets.items():
            ds = EvalDataset(records, mode=self.test_mode, crop=self.crop, resize=self.resize,
                             skip_bad=self.skip_bad)
            loader = build_test_loader(ds, batch_size=self.test_batch,
                                       num_workers=min(self.num_workers, 2))
            results[name] = evaluate_classifier(model, loader, self.normalizer,
                                                mode=self.test_mode, device=self.device,
                                                scales=self.scales,
                                                class_subset=self.class_subsets.get(name))
        self.last_results = results
        return results

    def schedule_error(self, results: Dict[str, Dict[str, float]]) -> Optional[float]:
        """Top-1 error (fraction) of the first test set, for the "plateau" lr rule."""
        for metrics in results.values():
            return metrics["top1_err"] / 100.0
        return None

    def log_extras(self) -> Dict[str, Any]:
        """Unreadable training images skipped so far (all processes)."""
        n = comm.all_reduce_sum([float(self.bad_images)], self.device)[0]
        return {"skipped_images": int(n)} if n else {}

    def state_dict(self) -> Dict[str, Any]:
        """The normaliser and the skip count."""
        return {"normalizer": self.normalizer.state_dict() if self.normalizer else None,
                "bad_images": self.bad_images}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""
        if state.get("normalizer") is not None:
            self.normalizer = Normalizer.from_state(state["normalizer"])
        self.bad_images = state.get("bad_images", 0)

    def export(self, model: nn.Module) -> Dict[str, Any]:
        """Metadata for ``model_final.pth``: arch and options, input format and pixel mean."""
        info = dict(self.export_info)
        if self.normalizer is not None:
            info["pixel_mean"] = self.normalizer.channel_mean()  # RGB, 0..255
            info["pixel_std"] = [float(v) for v in self.normalizer.std.view(3)]
            info["normalizer"] = self.normalizer.state_dict()
        info["input_format"] = "RGB"
        if self.last_results is not None:
            info["eval_results"] = self.last_results
        return info
