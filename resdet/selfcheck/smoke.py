"""Smoke items: each trains or evaluates for a few iterations on generated data, through the
same command a user runs (``tools/pretrain_imagenet.py``, ``tools/train_net.py``), in a fresh
process, and passes when that command exits 0 and wrote what it promises.

An item's result is "passed", "failed" (with the tool's own one-sentence error, or what was
missing) or "skipped" (with why: no GPU, Detectron2 not installed, too slow for ``--quick``).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"
QUICK, FULL, BOTH = ("quick",), ("full",), ("quick", "full")


@dataclass
class ItemResult:
    """The outcome of one smoke item.

    Attributes:
        name: the item's name (``pretrain-bf16-channels-last``, ...).
        status: "passed", "failed" or "skipped".
        detail: for a failure, one sentence saying what went wrong (the tool's own ``error:``
            line where it printed one); for a skip, why; for a pass, what was checked.
        seconds: wall time of the item, in seconds.
        log: the output folder or log file to look at, when there is one.
    """

    name: str
    status: str
    detail: str = ""
    seconds: float = 0.0
    log: str = ""

    def as_dict(self) -> dict:
        """The result as a JSON-ready dict."""
        return asdict(self)


class ItemFailure(Exception):
    """Raised inside an item: the item failed, and the message is its sentence."""


class ItemSkipped(Exception):
    """Raised inside an item: the item does not apply here, and the message says why."""


@dataclass
class Context:
    """What the items share: where to run, on what, at which size.

    Attributes:
        repo: the source checkout holding ``tools/`` and ``configs/``.
        work_dir: a scratch folder; each item writes into its own subfolder.
        datasets_dir: ``$DETECTRON2_DATASETS`` for the items (generated sets are made there).
        device: "cuda" or "cpu".
        num_gpus: GPUs visible (0 on a CPU machine).
        quick: small sizes and no slow items (the CPU check CI runs).
        has_detectron2: whether ``import detectron2`` works.
        extra_opts: ``KEY VALUE`` overrides appended to every training command (for trying a
            setting, and for the test that makes an item fail on purpose).
        timeout: seconds one command may run before the item fails.
    """

    repo: str
    work_dir: str
    datasets_dir: str
    device: str
    num_gpus: int
    quick: bool
    has_detectron2: bool
    extra_opts: Sequence[str] = ()
    timeout: float = 600.0
    outputs: Dict[str, str] = field(default_factory=dict)

    def env(self) -> dict:
        """The environment of the items' processes."""
        env = dict(os.environ, DETECTRON2_DATASETS=self.datasets_dir, RESDET_PROGRESS="0")
        if self.device == "cpu":
            env.setdefault("OMP_NUM_THREADS", "1")
            env["CUDA_VISIBLE_DEVICES"] = ""
        return env


def _tool(ctx: Context, name: str) -> str:
    path = os.path.join(ctx.repo, "tools", name)
    if not os.path.isfile(path):
        raise ItemFailure(f"{path} is missing: run the self-check from a source checkout of "
                          "resdet installed with pip install -e .")
    return path


def _config(ctx: Context, rel: str) -> str:
    return os.path.join(ctx.repo, "configs", rel)


def error_sentence(output: str) -> str:
    """The sentence a failed tool printed: its last ``error:`` line, else its last line."""
    lines = [x.strip() for x in output.splitlines() if x.strip()]
    for line in reversed(lines):
        if line.startswith("error:"):
            return line[len("error:"):].strip()
    return lines[-1] if lines else "the command printed nothing"


def _run(ctx: Context, argv: List[str], out_dir: str) -> str:
    """Run one command to its end; its output is kept in ``out_dir``.log; raises ItemFailure."""
    log = out_dir + ".log"
    os.makedirs(os.path.dirname(log), exist_ok=True)
    try:
        r = subprocess.run([sys.executable] + argv, env=ctx.env(), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=ctx.timeout)
    except subprocess.TimeoutExpired as e:
        _write(log, e.stdout or "")
        raise ItemFailure(f"the command ran past {ctx.timeout:.0f} s (log: {log})") from None
    _write(log, r.stdout)
    if r.returncode != 0:
        raise ItemFailure(f"{error_sentence(r.stdout)} (exit status {r.returncode}; log: {log})")
    return r.stdout


def _write(path: str, text) -> None:
    with open(path, "w") as f:
        f.write(text if isinstance(text, str) else text.decode(errors="replace"))


def _losses(out_dir: str) -> Dict[int, float]:
    path = os.path.join(out_dir, "metrics.json")
    losses = {}
    if os.path.isfile(path):
        with open(path) as f:
            for line in f:
                try:
                    m = json.loads(line)
                except ValueError:
                    continue  # a line being written
                if "total_loss" in m:
                    losses[int(m["iteration"])] = float(m["total_loss"])
    return losses


def _check_run(out_dir: str, iters: int, every_iteration: bool = True) -> Dict[int, float]:
    """The run's losses; it must have logged the last iteration (and every one, when asked)."""
    losses = _losses(out_dir)
    if iters - 1 not in losses or (every_iteration and len(losses) < iters):
        raise ItemFailure(f"{out_dir}/metrics.json holds {len(losses)} logged training "
                          f"iterations, without the last one ({iters - 1})"
                          if iters - 1 not in losses else
                          f"{out_dir}/metrics.json holds {len(losses)} training iterations, "
                          f"expected {iters}")
    bad = [i for i, v in losses.items() if not math.isfinite(v)]
    if bad:
        raise ItemFailure(f"the loss was not finite at iteration {bad[0]} ({out_dir}/metrics.json)")
    if not os.path.isfile(os.path.join(out_dir, "model_final.pth")):
        raise ItemFailure(f"{out_dir}/model_final.pth was not written")
    return losses


# ---------------------------------------------------------------------------------------------
# Pretraining


def _pretrain_opts(ctx: Context, out_dir: str, iters: int, evaluate: bool = False) -> List[str]:
    big = ctx.device == "cuda" and not ctx.quick
    opts = {
        "OUTPUT_DIR": out_dir, "MODEL.DEVICE": ctx.device,
        # A CIFAR-size ResNet-20 is the quick check; the full check trains the paper's ResNet-50.
        "MODEL.RESDET.ARCH": "cifar_resnet20" if ctx.quick else "resnet50",
        "DATASETS.TRAIN": "('synthetic_imagenet',)",
        "DATASETS.TEST": "('synthetic_imagenet_val',)" if evaluate else "()",
        "DATALOADER.NUM_WORKERS": "4" if big else "0",
        "SOLVER.IMS_PER_BATCH": "64" if big else "8",
        "SOLVER.MAX_ITER": str(iters), "SOLVER.STEPS": f"({iters + 100},)",
        "SOLVER.CHECKPOINT_PERIOD": "1000", "TEST.EVAL_PERIOD": "0",
        "PRETRAIN.LOG_PERIOD": "1", "PRETRAIN.MEAN_SAMPLES": "20",
        "PRETRAIN.TRAIN_RESIZE_RANGE": "[36, 48]" if ctx.quick else "[72, 96]",
        "PRETRAIN.CROP_SIZE": "32" if ctx.quick else "64",
        "PRETRAIN.TEST_RESIZE": "36" if ctx.quick else "72",
    }
    return [x for kv in opts.items() for x in kv]


def _pretrain(ctx: Context, name: str, settings: Dict[str, str], num_gpus: int = 1,
              evaluate: bool = False) -> str:
    out = os.path.join(ctx.work_dir, name)
    iters = 3 if ctx.quick else 10
    argv = [_tool(ctx, "pretrain_imagenet.py"), "--config",
            _config(ctx, "pretrain/quickstart.yaml")]
    if num_gpus > 1:
        argv += ["--num-gpus", str(num_gpus)]
    argv += _pretrain_opts(ctx, out, iters, evaluate)
    argv += [x for kv in settings.items() for x in kv] + list(ctx.extra_opts)
    _run(ctx, argv, out)
    _check_run(out, iters)
    if evaluate:
        _check_eval(out, "top1_err")
    ctx.outputs[name] = out
    return f"{iters} iterations, finite losses, model_final.pth written"


def pretrain_bf16_channels_last(ctx: Context) -> str:
    """Pretraining with bfloat16 autocast and channels_last, then evaluation."""
    return _pretrain(ctx, "pretrain-bf16-channels-last", {
        "SOLVER.AMP.ENABLED": "True", "SOLVER.AMP.DTYPE": "bfloat16",
        "SOLVER.CHANNELS_LAST": "True"}, evaluate=True)


def pretrain_fp16_loss_scaling(ctx: Context) -> str:
    """Pretraining with float16 autocast (gradient scaling)."""
    return _pretrain(ctx, "pretrain-fp16-loss-scaling", {
        "SOLVER.AMP.ENABLED": "True", "SOLVER.AMP.DTYPE": "float16"})


def pretrain_compile(ctx: Context) -> str:
    """Pretraining with ``SOLVER.COMPILE`` (torch.compile).

    Raises:
        ItemSkipped: with ``--quick``.
    """
    if ctx.quick:
        raise ItemSkipped("torch.compile takes about a minute to compile on a CPU; run without "
                          "--quick to check it")
    return _pretrain(ctx, "pretrain-compile", {"SOLVER.COMPILE": "True"})


def pretrain_two_gpus(ctx: Context) -> str:
    """Pretraining on 2 GPUs (NCCL) with autocast.

    Raises:
        ItemSkipped: fewer than 2 GPUs are visible.
    """
    if ctx.num_gpus < 2:
        raise ItemSkipped(f"needs 2 GPUs, {ctx.num_gpus} visible")
    return _pretrain(ctx, "pretrain-2-gpus-nccl", {"SOLVER.AMP.ENABLED": "True"}, num_gpus=2)


def resume_after_sigterm(ctx: Context) -> str:
    """SIGTERM mid-run saves a checkpoint and exits 0; --resume ends with the losses of a run
    that was never stopped (same seed, resumable sampler and RNG state)."""
    iters = 8 if ctx.quick else 16
    ref_dir = os.path.join(ctx.work_dir, "resume-reference")
    run_dir = os.path.join(ctx.work_dir, "resume-after-sigterm")
    base = [_tool(ctx, "pretrain_imagenet.py"), "--config",
            _config(ctx, "pretrain/quickstart.yaml")]
    fp32 = ["SOLVER.AMP.ENABLED", "False"]

    def argv(out: str) -> List[str]:
        return base + _pretrain_opts(ctx, out, iters) + fp32 + list(ctx.extra_opts)

    _run(ctx, argv(ref_dir), ref_dir)
    reference = _check_run(ref_dir, iters)

    log = run_dir + ".log"
    with open(log, "w") as f:
        p = subprocess.Popen([sys.executable] + argv(run_dir), env=ctx.env(), stdout=f,
                             stderr=subprocess.STDOUT)
        t0 = time.time()
        while max(_losses(run_dir), default=-1) < 2:
            if p.poll() is not None or time.time() - t0 > ctx.timeout:
                p.kill()
                p.wait()
                raise ItemFailure(f"the run to interrupt ended or hung before iteration 2 "
                                  f"(log: {log})")
            time.sleep(0.05)
        p.send_signal(signal.SIGTERM)
        try:
            code = p.wait(timeout=ctx.timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            raise ItemFailure(f"the run did not stop after SIGTERM (log: {log})") from None
    if code != 0:
        raise ItemFailure(f"SIGTERM: the run exited with status {code}, expected 0 after saving "
                          f"a checkpoint (log: {log})")
    last = os.path.join(run_dir, "last_checkpoint")
    if not os.path.isfile(last):
        raise ItemFailure(f"SIGTERM: no checkpoint was saved ({last} is missing)")
    with open(last) as f:
        stopped = f.read().strip()
    if len(_losses(run_dir)) >= iters:
        raise ItemSkipped("the run finished before SIGTERM arrived (this machine is too fast "
                          "for the quick sizes)")
    _run(ctx, argv(run_dir)[:3] + ["--resume"] + argv(run_dir)[3:], run_dir + "-resume")
    resumed = _check_run(run_dir, iters)
    tol = 1e-4 if ctx.device == "cpu" else 2e-2  # cuDNN's backward is not bit-deterministic
    for it in range(iters):
        a, b = reference[it], resumed[it]
        if abs(a - b) > tol * max(1.0, abs(a)):
            raise ItemFailure(f"after --resume from {stopped}, iteration {it}'s loss is {b:.6g}; "
                              f"the uninterrupted run's is {a:.6g} (relative tolerance {tol:g})")
    return f"stopped at {stopped}, resumed to {iters} iterations with the uninterrupted losses"


# ---------------------------------------------------------------------------------------------
# Detection


def _detection_opts(ctx: Context, out_dir: str, iters: int) -> List[str]:
    big = ctx.device == "cuda" and not ctx.quick
    opts = {
        "OUTPUT_DIR": out_dir, "MODEL.DEVICE": ctx.device, "MODEL.WEIGHTS": "",
        # From random weights: trainable BN (the paper's frozen BN needs ImageNet statistics,
        # and a 101-layer net without them overflows in a few steps).
        "MODEL.RESNETS.NORM": "BN",
        "MODEL.ROI_HEADS.NUM_CLASSES": "3",
        "DATASETS.TRAIN": "('shapes_train',)", "DATASETS.TEST": "('shapes_val',)",
        "DATALOADER.NUM_WORKERS": "4" if big else "0",
        "SOLVER.IMS_PER_BATCH": "8" if big else "2", "SOLVER.BASE_LR": "0.005",
        "SOLVER.MAX_ITER": str(iters), "SOLVER.STEPS": f"({iters + 100},)",
        "SOLVER.WARMUP_ITERS": "1", "SOLVER.CHECKPOINT_PERIOD": "1000", "TEST.EVAL_PERIOD": "0",
        "INPUT.MIN_SIZE_TRAIN": "(320,)" if big else "(64,)",
        "INPUT.MAX_SIZE_TRAIN": "512" if big else "128",
        "INPUT.MIN_SIZE_TEST": "320" if big else "64",
        "INPUT.MAX_SIZE_TEST": "512" if big else "128",
    }
    return [x for kv in opts.items() for x in kv]


def _detection(ctx: Context, engine: str, layout: str, config: str, num_gpus: int = 1) -> str:
    if engine == "detectron2" and not ctx.has_detectron2:
        raise ItemSkipped("Detectron2 is not installed")
    name = f"detection-{engine}-{layout}" + ("-2-gpus" if num_gpus > 1 else "")
    out = os.path.join(ctx.work_dir, name)
    iters = 3 if ctx.quick else 10
    argv = [_tool(ctx, "train_net.py"), "--engine", engine, "--config", _config(ctx, config)]
    if num_gpus > 1:
        argv += ["--num-gpus", str(num_gpus)]
    argv += _detection_opts(ctx, out, iters) + list(ctx.extra_opts)
    _run(ctx, argv, out)
    _check_run(out, iters, every_iteration=False)  # detection logs every 20 iterations
    ctx.outputs[name] = out
    return f"{iters} iterations, finite losses, model_final.pth written"


def _detection_items() -> List[tuple]:
    items = []
    for engine in ("torchvision", "detectron2"):
        items.append((f"detection-{engine}-quickstart", QUICK,
                      lambda ctx, e=engine: _detection(ctx, e, "quickstart", "quickstart.yaml")))
        # The full check: the modern R50-FPN and the paper's R101-C4 (Sec. 4.3, Appendix A).
        for layout, config in (("R50-FPN", "faster_rcnn_R50_FPN_coco.yaml"),
                               ("R101-C4", "faster_rcnn_R101_coco.yaml")):
            items.append((f"detection-{engine}-{layout}", FULL,
                          lambda ctx, e=engine, lay=layout, c=config: _detection(ctx, e, lay, c)))
    return items


def detection_two_gpus(ctx: Context) -> str:
    """R50-FPN detection training on 2 GPUs (Detectron2 engine when installed).

    Raises:
        ItemSkipped: fewer than 2 GPUs are visible.
    """
    if ctx.num_gpus < 2:
        raise ItemSkipped(f"needs 2 GPUs, {ctx.num_gpus} visible")
    engine = "detectron2" if ctx.has_detectron2 else "torchvision"
    return _detection(ctx, engine, "R50-FPN", "faster_rcnn_R50_FPN_coco.yaml", num_gpus=2)


def _check_eval(out_dir: str, metric: str) -> dict:
    path = os.path.join(out_dir, "eval_results.json")
    if not os.path.isfile(path):
        raise ItemFailure(f"{path} was not written")
    with open(path) as f:
        try:
            results = json.load(f)
        except ValueError as e:
            raise ItemFailure(f"{path} is not valid JSON ({e})") from None
    found = [v for ds in results.values() for v in _walk(ds) if metric in v]
    if not found:
        raise ItemFailure(f"{path} holds no {metric!r}")
    return results


def _walk(node) -> list:
    if isinstance(node, dict):
        return [node] + [x for v in node.values() for x in _walk(v)]
    return []


def evaluation(ctx: Context) -> str:
    """--eval-only with the run's own config.yaml and model_final.pth writes eval_results.json."""
    trained = [k for k in ctx.outputs if k.startswith("detection-torchvision")]
    if not trained:
        raise ItemSkipped("needs a detection model: the detection items did not pass")
    run = ctx.outputs[trained[0]]
    out = run + "-eval-only"
    argv = [_tool(ctx, "train_net.py"), "--engine", "torchvision", "--eval-only", "--config",
            os.path.join(run, "config.yaml"), "MODEL.WEIGHTS",
            os.path.join(run, "model_final.pth"), "OUTPUT_DIR", out]
    _run(ctx, argv, out)
    results = _check_eval(out, "AP")
    names = ", ".join(sorted(results))
    return f"--eval-only from the run's config.yaml wrote AP for {names}"


# ---------------------------------------------------------------------------------------------

# (name, the modes that run it, function). Order matters: "evaluation" uses a detection model.
ITEMS: List[tuple] = (
    [("pretrain-bf16-channels-last", BOTH, pretrain_bf16_channels_last),
     ("pretrain-fp16-loss-scaling", BOTH, pretrain_fp16_loss_scaling),
     ("pretrain-compile", BOTH, pretrain_compile),
     ("resume-after-sigterm", BOTH, resume_after_sigterm)]
    + _detection_items()
    + [("evaluation", BOTH, evaluation),
       ("pretrain-2-gpus-nccl", BOTH, pretrain_two_gpus),
       ("detection-2-gpus", BOTH, detection_two_gpus)]
)


def item_names(quick: bool) -> List[str]:
    """The items of a mode: ``--quick`` (small sizes) or the full smoke."""
    mode = "quick" if quick else "full"
    return [name for name, modes, _ in ITEMS if mode in modes]


def check_item_names(names: Sequence[str]) -> None:
    """Raises ValueError naming the first of ``names`` that is not an item."""
    known = [name for name, _, _ in ITEMS]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown item {unknown[0]!r}; the items are: {', '.join(known)}")


def run_items(ctx: Context, only: Optional[Sequence[str]] = None,
              on_result: Optional[Callable[[ItemResult], None]] = None) -> List[ItemResult]:
    """Run the smoke items in order.

    Args:
        ctx: where and how to run.
        only: item names to run (``--only``); None runs those of the mode.
        on_result: called with each result as it is known (for live printing).

    Returns:
        one :class:`ItemResult` per item run.

    Raises:
        ValueError: a name in ``only`` is not an item.
    """
    check_item_names(only or ())
    wanted = list(only) if only else item_names(ctx.quick)
    results = []
    for name, _, fn in ITEMS:
        if name not in wanted:
            continue
        t0 = time.time()
        try:
            detail, status = fn(ctx), PASSED
        except ItemSkipped as e:
            detail, status = str(e), SKIPPED
        except ItemFailure as e:
            detail, status = str(e), FAILED
        except Exception as e:  # a bug in the check itself is still a failed item
            detail, status = f"the check itself failed: {type(e).__name__}: {e}", FAILED
        res = ItemResult(name, status, detail, round(time.time() - t0, 1),
                         ctx.outputs.get(name, ""))
        results.append(res)
        if on_result:
            on_result(res)
    return results
