"""LR schedules (Detectron2 warmup/multistep, plateau, error-gated warm-up) and the sampler."""

import itertools
import math

import pytest
import torch

from resdet.engine.lr_schedule import LRSchedule
from resdet.engine.sampler import InferenceSampler, InfiniteSampler


def _opt(lr=0.1):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def test_warmup_multistep_matches_detectron2_formula():
    s = LRSchedule(_opt(0.1), steps=(10, 20), gamma=0.1, warmup_iters=5, warmup_factor=0.001)
    for it in range(30):
        alpha = it / 5
        warm = 0.001 * (1 - alpha) + alpha if it < 5 else 1.0
        want = 0.1 * warm * 0.1 ** sum(it >= st for st in (10, 20))
        assert math.isclose(s.apply(it), want, rel_tol=1e-12), it


def test_plateau_divides_by_ten_after_patience_and_caps():
    s = LRSchedule(_opt(0.1), policy="plateau", patience=2, threshold=0.01, max_drops=2)
    s.observe_val_error(0.5, 0)
    s.observe_val_error(0.4, 1)  # improving: no drop
    assert s.apply(2) == pytest.approx(0.1)
    s.observe_val_error(0.399, 2)  # < 1% better: bad 1
    s.observe_val_error(0.41, 3)  # bad 2 -> drop
    assert s.apply(4) == pytest.approx(0.01)
    for i in range(10):
        s.observe_val_error(0.41, 5 + i)
    assert s.apply(20) == pytest.approx(0.001)  # capped at max_drops
    state = s.state_dict()
    s2 = LRSchedule(_opt(0.1), policy="plateau", patience=2, max_drops=2)
    s2.load_state_dict(state)
    assert s2.apply(20) == pytest.approx(0.001)


def test_gated_warmup_until_training_error_below_threshold():
    # Sec. 4.2 (110 layers): 0.01 until training error < 80%, then 0.1.
    s = LRSchedule(_opt(0.1), steps=(100,), gated_factor=0.1, gated_until=0.8, gated_max_iters=50)
    assert s.apply(0) == pytest.approx(0.01)
    s.observe_train_error(0.85, 0)
    assert s.apply(1) == pytest.approx(0.01)
    s.observe_train_error(0.79, 1)
    assert s.apply(2) == pytest.approx(0.1)
    s.observe_train_error(0.95, 2)  # stays open
    assert s.apply(3) == pytest.approx(0.1)
    s2 = LRSchedule(_opt(0.1), gated_factor=0.1, gated_max_iters=5)
    assert s2.apply(4) == pytest.approx(0.01) and s2.apply(5) == pytest.approx(0.1)


def _take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def test_infinite_sampler_deterministic_and_resumable():
    a = _take(InfiniteSampler(7, seed=3, rank=0, world_size=1), 30)
    assert a == _take(InfiniteSampler(7, seed=3, rank=0, world_size=1), 30)
    assert sorted(a[:7]) == list(range(7)) and sorted(a[7:14]) == list(range(7))
    assert a[10:30] == _take(InfiniteSampler(7, seed=3, start=10, rank=0, world_size=1), 20)


def test_two_ranks_union_is_the_single_process_batch():
    one = _take(InfiniteSampler(10, seed=0, rank=0, world_size=1, with_positions=True), 24)
    r0 = _take(InfiniteSampler(10, seed=0, rank=0, world_size=2, with_positions=True), 12)
    r1 = _take(InfiniteSampler(10, seed=0, rank=1, world_size=2, with_positions=True), 12)
    for b in range(3):  # global batch 8 = 4 per rank
        merged = sorted(r0[4 * b:4 * b + 4] + r1[4 * b:4 * b + 4], key=lambda t: t[1])
        assert merged == one[8 * b:8 * b + 8]
    # resumed at iteration 2 of batch 8 (start 16): rank 1 continues where it was
    r1b = _take(InfiniteSampler(10, seed=0, start=16, rank=1, world_size=2,
                                with_positions=True), 4)
    assert r1b == r1[8:12]


def test_inference_sampler_covers_once():
    parts = [list(InferenceSampler(11, rank=r, world_size=3)) for r in range(3)]
    assert sorted(sum(parts, [])) == list(range(11))
