"""Top-1 and top-5 error (percent) of a classifier, accumulated over batches and processes."""

from __future__ import annotations

from typing import Dict, Sequence

import torch

from resdet.engine import comm


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

    Args:
        ks: which top-k errors to report (default top-1 and top-5, as the paper's tables).
    """

    def __init__(self, ks: Sequence[int] = (1, 5)):
        self.ks = tuple(ks)
        self.reset()

    def reset(self) -> None:
        """Forget everything processed so far."""
        self._correct = {k: 0 for k in self.ks}
        self._count = 0
        self._skipped = 0

    def process(self, scores: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a batch of class scores and their labels (negative label = skipped image)."""
        labels = labels.to(scores.device)
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
