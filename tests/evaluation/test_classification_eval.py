"""Top-1/top-5 error in percent; skipped images (label -1) are not counted."""

import torch

from resdet.evaluation.classification import ClassificationEvaluator, topk_correct


def test_topk_by_hand():
    scores = torch.tensor([[0.1, 0.9, 0.0],   # label 1: top-1 hit
                           [0.5, 0.3, 0.2],   # label 2: top-1 miss, top-2 miss (rank 3)
                           [0.2, 0.5, 0.3]])  # label 2: top-1 miss, top-2 hit
    labels = torch.tensor([1, 2, 2])
    assert topk_correct(scores, labels, (1, 2, 5)) == {1: 1, 2: 2, 5: 3}


def test_evaluator_percent_and_skips():
    ev = ClassificationEvaluator()
    # row i predicts class i; the other classes rank by index (class 0 second)
    scores = torch.eye(10)[:8] + torch.linspace(0.5, 0.0, 10)
    labels = torch.tensor([0, 1, 2, 3, 0, 0, -1, -1])  # two wrong, two skipped
    ev.process(scores[:4], labels[:4])
    ev.process(scores[4:], labels[4:])
    out = ev.evaluate()
    assert out["num_images"] == 6 and out["num_skipped"] == 2
    assert abs(out["top1_err"] - 100 * 2 / 6) < 1e-9
    assert out["top5_err"] == 0.0  # class 0 is always in the top 5
