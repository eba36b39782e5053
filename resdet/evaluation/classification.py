"""Top-1 and top-5 error (percent) of a classifier, accumulated over batches and processes, and
which classes a classifier's outputs stand for (to label a val set in the model's order)."""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from resdet.engine import comm
from resdet.errors import UserError

logger = logging.getLogger(__name__)

# The last classifier layer, in resdet's names: ResNets' fc, VGG's fc8 (torchvision classifier.6)
_OUTPUT_LAYERS = ("fc.weight", "fc8.weight")


def weights_output_classes(obj: Any, source: str) -> Tuple[Optional[List[str]], str]:
    """The classes a weights file's outputs stand for, in output order, when the file says.

    resdet checkpoints record theirs (``classes``). torchvision's and timm's ImageNet-1k weights
    (their layout with a 1000-output classifier) stand for ImageNet-1k's 1000 WordNet ids in
    sorted order (:func:`resdet.data.classification.imagenet1k_wnids`).

    Args:
        obj: what was read from the file (:func:`resdet.checkpoint.read_weights_file`).
        source: the file, for the description.

    Returns:
        ``(classes, description)``, or ``(None, "")`` when the file does not tell.
    """
    if isinstance(obj, dict) and obj.get("classes"):
        return [str(c) for c in obj["classes"]], f"the classes recorded in {source}"
    from resdet.checkpoint import convert_to_resdet
    from resdet.data.classification import imagenet1k_wnids

    try:
        converted = convert_to_resdet(obj, source)
    except UserError:  # not weights resdet knows; loading them says why
        return None, ""
    if not converted.source_format.startswith("torchvision"):
        return None, ""
    head = next((converted.tensors[k] for k in _OUTPUT_LAYERS if k in converted.tensors), None)
    if head is None or head.dim() != 2 or head.shape[0] != 1000:
        return None, ""
    return list(imagenet1k_wnids()), (f"the 1000 ImageNet-1k classes of {source} "
                                      f"({converted.source_format} weights: sorted WordNet ids)")


def topk_correct(scores: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)
                 ) -> Dict[int, int]:
    """How many rows of ``scores`` rank their label within the top k, for each k.

    Args:
        scores: ``N x C`` logits or probabilities.
        labels: ``N`` class indices; rows with a negative label (a skipped image) are ignored.
        ks: the k values; k larger than C counts every row as correct.

    Returns:
        ``{k: number correct}``.
    """
    keep = labels >= 0
    scores, labels = scores[keep], labels[keep]
    if scores.numel() == 0:
        return {k: 0 for k in ks}
    kmax = min(max(ks), scores.shape[1])
    top = scores.topk(kmax, dim=1).indices
    hit = top == labels[:, None]
    return {k: int(hit[:, : min(k, kmax)].any(dim=1).sum()) for k in ks}


class ClassificationEvaluator:
    """Counts top-k hits; :meth:`evaluate` sums over processes and returns errors in percent.

    By default a row's label competes with all of the model's outputs (timm's ``validate.py``
    default, e.g. a 1000-class model on ImageNet-A/R's 200 classes). With ``class_subset`` only
    those outputs count and labels are their positions in it (what timm's ``--valid-labels``
    does), e.g. for a val set holding 200 of the model's 1000 classes.

    Args:
        ks: which top-k errors to report (default top-1 and top-5, as the paper's tables).
        class_subset: output indices to score over (each row's label must be one of them).
    """

    def __init__(self, ks: Sequence[int] = (1, 5), class_subset: Optional[Sequence[int]] = None):
        self.ks = tuple(ks)
        self.class_subset = list(class_subset) if class_subset is not None else None
        self.reset()

    def reset(self) -> None:
        """Forget everything processed so far."""
        self._correct = {k: 0 for k in self.ks}
        self._count = 0
        self._skipped = 0

    def process(self, scores: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a batch of class scores ``N x C`` (all of the model's outputs) and their labels
        ``N`` (output indices; negative = skipped image)."""
        labels = labels.to(scores.device)
        if self.class_subset is not None:
            subset = torch.as_tensor(self.class_subset, device=scores.device)
            position = torch.full((scores.shape[1],), -1, dtype=torch.long, device=scores.device)
            position[subset] = torch.arange(len(subset), device=scores.device)
            keep = labels >= 0
            labels = torch.where(keep, position[labels.clamp_min(0)], labels)
            if bool((keep & (labels < 0)).any()):
                raise ValueError("a label lies outside class_subset")
            scores = scores[:, subset]
        for k, c in topk_correct(scores, labels, self.ks).items():
            self._correct[k] += c
        valid = int((labels >= 0).sum())
        self._count += valid
        self._skipped += int(labels.numel()) - valid

    def evaluate(self) -> Dict[str, float]:
        """``{"top1_err": %, "top5_err": %, "num_images": n}`` over all processes."""
        parts = comm.all_gather_object(
            (self._count, self._skipped, [self._correct[k] for k in self.ks]))
        count = sum(p[0] for p in parts)
        skipped = sum(p[1] for p in parts)
        correct = [sum(p[2][i] for p in parts) for i in range(len(self.ks))]
        out: Dict[str, float] = {}
        for k, c in zip(self.ks, correct):
            # One rounding (integers first): 100 * (1 - c / n) printed 4.749999999999998.
            out[f"top{k}_err"] = 100.0 * (count - c) / count if count else float("nan")
        out["num_images"] = count
        if skipped:
            out["num_skipped"] = skipped
        return out
