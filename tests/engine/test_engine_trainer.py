"""Trainer: atomic checkpoints, resume, SIGTERM, non-finite loss, determinism (toy task)."""

import json
import os
import signal

import pytest
import torch
import torch.nn.functional as F

from resdet.engine import Checkpointer, LRSchedule, Trainer, seed_all
from resdet.engine.sampler import InfiniteSampler
from resdet.errors import UserError

X = torch.randn(64, 5, generator=torch.Generator().manual_seed(0))
Y = (X[:, 0] > 0).long()


class ToyTask:
    def __init__(self, nan_at=None):
        self.nan_at = nan_at
        self.calls = 0

    def run_step(self, model, batch):
        idx = batch
        out = model(X[idx])
        loss = F.cross_entropy(out, Y[idx])
        self.calls += 1
        if self.nan_at is not None and self.calls - 1 == self.nan_at:
            loss = loss * float("nan")
        return {"loss_cls": loss, "train_error": (out.argmax(1) != Y[idx]).float().mean()}


def _loader(start_iter, batch=8):
    it = iter(InfiniteSampler(64, seed=1, start=start_iter * batch, rank=0, world_size=1))
    while True:
        yield torch.tensor([next(it) for _ in range(batch)])


def make_trainer(out, task=None, max_iter=12, seed=0, hooks=None, **kw):
    seed_all(seed)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = LRSchedule(opt, steps=(6,), gamma=0.1, warmup_iters=3, warmup_factor=0.1)
    return Trainer(model, opt, sched, _loader, task or ToyTask(), max_iter=max_iter,
                   output_dir=str(out), device=torch.device("cpu"), checkpoint_period=4,
                   log_period=1, progress=False, hooks=hooks, **kw)


def _metrics(out):
    with open(os.path.join(out, "metrics.json")) as f:
        return [json.loads(line) for line in f]


def test_same_seed_same_losses(tmp_path):
    make_trainer(tmp_path / "a").train()
    make_trainer(tmp_path / "b").train()
    la = [m["loss_cls"] for m in _metrics(tmp_path / "a")]
    lb = [m["loss_cls"] for m in _metrics(tmp_path / "b")]
    assert len(la) == 12 and la == lb  # bit-identical on the CPU
    make_trainer(tmp_path / "c", seed=1).train()
    assert [m["loss_cls"] for m in _metrics(tmp_path / "c")] != la


def test_sigterm_saves_then_resume_matches_uninterrupted(tmp_path):
    full = make_trainer(tmp_path / "full")
    full.train()

    def kill_at_6(trainer, it):
        if it == 6:
            os.kill(os.getpid(), signal.SIGTERM)

    t = make_trainer(tmp_path / "cut", hooks=[kill_at_6])
    res = t.train()
    assert res.interrupted and res.iteration == 6
    assert res.checkpoint.endswith("model_0000006.pth") and os.path.isfile(res.checkpoint)
    with open(tmp_path / "cut" / "last_checkpoint") as f:
        assert f.read() == "model_0000006.pth"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored
    t2 = make_trainer(tmp_path / "cut", seed=123)  # RNG comes from the checkpoint
    assert t2.resume() and t2.start_iter == 7
    t2.train()
    for a, b in zip(full.raw_model.state_dict().values(), t2.raw_model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    m_full, m_cut = _metrics(tmp_path / "full"), _metrics(tmp_path / "cut")
    assert [m["iteration"] for m in m_cut] == list(range(12))
    assert [m["lr"] for m in m_cut] == [m["lr"] for m in m_full]
    final = torch.load(tmp_path / "cut" / "model_final.pth", weights_only=True)
    assert final["iteration"] == 11


def test_nonfinite_loss_stops_naming_iteration_and_checkpoint(tmp_path):
    t = make_trainer(tmp_path, task=ToyTask(nan_at=5))
    with pytest.raises(UserError) as e:
        t.train()
    msg = str(e.value)
    assert "iteration 5" in msg and "model_0000003.pth" in msg
    assert "SOLVER.SKIP_NONFINITE_LOSS" in msg


def test_nonfinite_loss_skipped_and_counted(tmp_path):
    t = make_trainer(tmp_path, task=ToyTask(nan_at=2), skip_nonfinite=True)
    res = t.train()
    assert res.skipped_nonfinite == 1 and res.iteration == 11
    assert any(m.get("skipped_nonfinite") == 1 for m in _metrics(tmp_path))


def test_checkpoint_pointer_moves_only_after_complete_file(tmp_path, monkeypatch):
    ck = Checkpointer(str(tmp_path))
    ck.save("model_0000001.pth", {"x": torch.ones(2)})

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        ck.save("model_0000002.pth", {"x": torch.zeros(2)})
    assert ck.last_checkpoint().endswith("model_0000001.pth")
    assert not os.path.exists(tmp_path / "model_0000002.pth")
    assert torch.equal(Checkpointer.load(ck.last_checkpoint())["x"], torch.ones(2))


class PlateauTask(ToyTask):
    def evaluate(self, model):
        return {"toy_val": {"top1_err": 40.0, "top5_err": 0.0}}

    def schedule_error(self, results):
        return results["toy_val"]["top1_err"] / 100


def test_plateau_rule_driven_by_periodic_evaluation(tmp_path):
    seed_all(0)
    model = torch.nn.Linear(5, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = LRSchedule(opt, policy="plateau", patience=2, max_drops=3)
    t = Trainer(model, opt, sched, _loader, PlateauTask(), max_iter=10, output_dir=str(tmp_path),
                device=torch.device("cpu"), eval_period=2, log_period=1, progress=False)
    t.train()
    lrs = {m["iteration"]: m["lr"] for m in _metrics(tmp_path) if "lr" in m}
    # evals after iterations 1, 3, 5, 7: first sets the bar, then 2 without progress -> drop
    assert lrs[5] == pytest.approx(0.1) and lrs[6] == pytest.approx(0.01)
    with open(tmp_path / "eval_results.json") as f:
        assert json.load(f) == {"toy_val": {"top1_err": 40.0, "top5_err": 0.0}}


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_amp_paths_run(tmp_path, dtype):
    t = make_trainer(tmp_path, max_iter=3, amp_dtype=dtype)
    res = t.train()
    assert res.iteration == 2 and (t.scaler is not None) == (dtype == "float16")
    ck = torch.load(tmp_path / "model_final.pth", weights_only=True)
    assert ("grad_scaler" in ck) == (dtype == "float16")


def test_read_metrics_cut_last_line_and_broken_middle_line(tmp_path, caplog):
    from resdet.engine.events import read_metrics

    path = str(tmp_path / "metrics.json")
    with open(path, "w") as f:
        f.write('{"iteration": 0}\n[1, 2]\n{"iteration": 1}\n{"iteration": 2, "lo')
    assert read_metrics(path) == [{"iteration": 0}, {"iteration": 1}]  # resume: never fails
    assert "line 2 is not a JSON object; skipping it" in caplog.text
    assert "last line is cut off" in caplog.text
    with pytest.raises(UserError, match=r"metrics.json line 2 is not a JSON object; metrics.json "
                       r"holds one JSON object per line \(fix or remove that line\)\."):
        read_metrics(path, strict=True)
    with open(path, "w") as f:
        f.write('{"iteration": 0}\n{"iteration": 1}\n{"iteration": 2, "lo')
    assert len(read_metrics(path, strict=True)) == 2  # a run still writing, or killed
    with pytest.raises(UserError, match="missing.json cannot be read"):
        read_metrics(str(tmp_path / "missing.json"))


def _losses(out):
    return [m["loss_cls"] for m in _metrics(out) if "loss_cls" in m]


def test_amp_bf16_and_fp16_with_grad_scaler_on_the_cpu(tmp_path):
    """The AMP paths meant for GPUs also run under CPU autocast: same losses to AMP precision."""
    make_trainer(tmp_path / "fp32").train()
    for dtype in ("bfloat16", "float16"):
        make_trainer(tmp_path / dtype, amp_dtype=dtype).train()
        torch.testing.assert_close(_losses(tmp_path / dtype), _losses(tmp_path / "fp32"),
                                   rtol=0, atol=2e-2)
    final = torch.load(tmp_path / "float16" / "model_final.pth", weights_only=True)
    assert "scale" in final["grad_scaler"]  # fp16 only: loss scaling
    assert "grad_scaler" not in torch.load(tmp_path / "bfloat16" / "model_final.pth",
                                           weights_only=True)
    with pytest.raises(UserError, match="SOLVER.AMP.DTYPE 'half' must be 'bfloat16' or"):
        make_trainer(tmp_path / "bad", amp_dtype="half")


@pytest.mark.slow
def test_compiled_model_saves_plain_names_and_resumes_uncompiled(tmp_path):
    """torch.compile (SOLVER.COMPILE) trains like the eager model; its checkpoints carry the
    plain module's names, so an eager run resumes them."""
    make_trainer(tmp_path / "eager", amp_dtype="bfloat16").train()
    make_trainer(tmp_path / "compiled", amp_dtype="bfloat16", compile_model=True).train()
    torch.testing.assert_close(_losses(tmp_path / "compiled"), _losses(tmp_path / "eager"),
                               rtol=1e-3, atol=1e-3)
    final = torch.load(tmp_path / "compiled" / "model_final.pth", weights_only=True)
    assert list(final["model"]) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    t = make_trainer(tmp_path / "compiled", max_iter=14)
    assert t.resume() and t.start_iter == 12
    assert t.train().iteration == 13
