"""TensorBoard event files, the console above the progress bar, rounded results in log lines."""

from __future__ import annotations

import glob
import io
import json
import logging
import os
import sys

import pytest
import torch
import torch.nn.functional as F

from resdet.engine import LRSchedule, Trainer, seed_all
from resdet.engine.events import TensorboardWriter, rounded, setup_logging
from resdet.evaluation.classification import ClassificationEvaluator

X = torch.randn(32, 5, generator=torch.Generator().manual_seed(0))
Y = (X[:, 0] > 0).long()


class ToyTask:
    def run_step(self, model, batch):
        return {"loss_cls": F.cross_entropy(model(X[batch]), Y[batch])}

    def evaluate(self, model):
        return {"toy_val": {"top1_err": 12.5, "num_images": 32}}


def _loader(start_iter):
    i = start_iter
    while True:
        yield torch.arange(8 * i, 8 * i + 8) % 32
        i += 1


def _trainer(out, max_iter=4, **kw):
    seed_all(0)
    model = torch.nn.Linear(5, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = LRSchedule(opt, steps=(3,), gamma=0.1, warmup_iters=0, warmup_factor=1.0)
    kw.setdefault("progress", False)
    return Trainer(model, opt, sched, _loader, ToyTask(), max_iter=max_iter, output_dir=str(out),
                   device=torch.device("cpu"), log_period=2, **kw)


def _events(out):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = glob.glob(os.path.join(out, "events.out.tfevents.*"))
    assert len(files) == 1, files
    acc = EventAccumulator(files[0])
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_event_file_holds_the_metrics_json_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    _trainer(tmp_path).train()
    events = _events(str(tmp_path))
    assert set(events) == {"loss_cls", "total_loss", "lr", "time", "data_time", "eta_seconds",
                           "toy_val/top1_err", "toy_val/num_images"}
    with open(tmp_path / "metrics.json") as f:
        lines = [json.loads(x) for x in f if "loss_cls" in x]
    assert [x["iteration"] for x in lines] == [1, 3]
    for key in ("loss_cls", "total_loss", "lr", "time", "data_time"):
        got = [(s, v) for s, v in events[key]]
        want = [(x["iteration"], x[key]) for x in lines]
        assert [s for s, _ in got] == [s for s, _ in want]
        torch.testing.assert_close([v for _, v in got], [v for _, v in want])  # float32 events
    assert events["lr"][1][1] == pytest.approx(0.01)  # after the step at iteration 3
    assert events["toy_val/top1_err"] == [(3, 12.5)]


def test_without_tensorboard_no_event_file_and_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import -> ImportError
    said = []
    handler = logging.Handler()
    handler.emit = lambda record: said.append(record.getMessage())
    events_logger = logging.getLogger("resdet.engine.events")
    events_logger.addHandler(handler)
    try:
        _trainer(tmp_path).train()
    finally:
        events_logger.removeHandler(handler)
    assert glob.glob(str(tmp_path / "events.*")) == []
    assert said == ["tensorboard is not installed, so no event files are written "
                    "(pip install tensorboard to get them)."]
    assert os.path.isfile(tmp_path / "model_final.pth")


def test_tensorboard_writer_on_other_ranks_writes_nothing(tmp_path, monkeypatch):
    from resdet.engine import comm

    monkeypatch.setattr(comm, "is_main_process", lambda: False)
    w = TensorboardWriter(str(tmp_path))
    w.write(0, {"loss": 1.0})
    w.close()
    assert os.listdir(tmp_path) == []


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_log_lines_start_on_their_own_line_above_the_bar(tmp_path, monkeypatch):
    term = _Terminal()
    monkeypatch.setattr(sys, "stdout", term)
    monkeypatch.setattr(sys, "stderr", term)
    setup_logging(None)
    try:
        _trainer(tmp_path, max_iter=6, progress=True).train()
    finally:
        setup_logging(None)  # handlers on the real stdout again
    text = term.getvalue()
    assert "train:" in text  # the bar was drawn
    # tqdm clears the bar with a carriage return before each log line, then redraws it below
    lines = [ln for ln in text.replace("\r", "\n").split("\n") if "INFO: iter:" in ln]
    assert len(lines) == 3
    assert all(ln.startswith("[") for ln in lines), lines  # not glued onto the bar


def test_progress_bar_only_on_a_terminal(tmp_path, monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", out)
    _trainer(tmp_path, progress=True).train()
    assert out.getvalue() == ""


def test_error_rates_have_no_float_noise():
    ev = ClassificationEvaluator(ks=(1,))
    scores = torch.zeros(400, 3)
    scores[:, 0] = 1.0
    labels = torch.zeros(400, dtype=torch.long)
    labels[:19] = 1  # 19 of 400 wrong: 4.75 %
    ev.process(scores, labels)
    assert ev.evaluate()["top1_err"] == 4.75
    assert rounded({"a": {"top5_err": 4.749999999999998, "n": 3}}) == {"a": {"top5_err": 4.75,
                                                                              "n": 3}}
