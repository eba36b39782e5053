"""The timing harness: alternation, ratios, memory measurement."""

import time

import pytest
import torch

from resdet.benchmark import BenchSettings, Measurement, Runner, compare, run_alternating
from resdet.benchmark.settings import check_settings
from resdet.benchmark.timing import peak_memory_of_step
from resdet.errors import UserError


def test_rounds_alternate_order_and_count():
    calls = []
    runners = [Runner("a", lambda: calls.append("a"), 1), Runner("b", lambda: calls.append("b"), 1)]
    ms = run_alternating(runners, warmup=1, iters=4, measure_memory=False)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b", "b", "a"]
    assert [len(m.times) for m in ms] == [4, 4]


def test_ratio_is_median_of_per_round_ratios():
    ours = Measurement("ours", 2, times=[1.0, 2.0, 3.0])
    ref = Measurement("ref", 2, times=[2.0, 2.0, 1.0])  # per round: 0.5, 1.0, 3.0
    r = compare(ours, ref)
    assert r["ratio"] == pytest.approx(1.0)
    assert r["ratio_of_medians"] == pytest.approx(2.0 / 2.0)
    assert (r["ratio_min"], r["ratio_max"]) == (0.5, 3.0)
    s = ours.summary()
    assert s["sec_per_iter"] == 2.0 and s["images_per_sec"] == pytest.approx(1.0)


def test_slower_step_gets_larger_ratio():
    fast = Runner("fast", lambda: time.sleep(0.002), 1)
    slow = Runner("slow", lambda: time.sleep(0.06), 1)
    ms = run_alternating([slow, fast], warmup=0, iters=3, measure_memory=False)
    # 30x apart: a loaded machine's late wake-ups (a few ms) cannot bring it under 3
    assert compare(ms[0], ms[1])["ratio"] > 3


def test_cpu_peak_memory_sees_a_large_allocation():
    def step():
        x = torch.ones(64, 2**20)  # 256 MiB, every page written
        x.add_(1)
        del x

    peak, method = peak_memory_of_step(Runner("alloc", step, 1))
    assert peak > 200 * 2**20, (peak, method)


@pytest.mark.parametrize("kwargs, match", [
    (dict(task="train"), "needs --arch NAME"),
    (dict(task="train", arch="resnet18", batch=0), "--batch must be at least 1"),
    (dict(task="nope", arch="resnet18"), "--task 'nope' is not one of"),
    (dict(task="train", arch="resnet18", config="x.yaml"), "either --arch or --config"),
])
def test_bad_settings_are_user_errors(kwargs, match):
    with pytest.raises(UserError, match=match):
        check_settings(BenchSettings(**kwargs))


def test_gpu_settings_are_dropped_on_cpu(caplog):
    s = check_settings(BenchSettings(task="train", arch="resnet18", amp=True, compile=True,
                                     channels_last=True))
    assert (s.amp, s.compile, s.channels_last) == (False, False, True)
    assert "ignored on the CPU" in caplog.text


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_without_gpu_is_a_user_error():
    with pytest.raises(UserError, match="no CUDA device"):
        check_settings(BenchSettings(task="train", arch="resnet18", device="cuda"))
