"""Start one training process per GPU (or per ``--num-gpus`` CPU process), like Detectron2's launch.

``launch(main, num_gpus_per_machine, num_machines, machine_rank, dist_url, args)`` spawns the
processes of this machine, joins the process group (NCCL on GPUs, gloo on the CPU) and runs
``main(*args)`` in each. When one worker dies, ``torch.multiprocessing``'s join stops the others
and this module turns the failure into one message naming the worker; collectives carry a timeout
(``resdet.engine.comm.DEFAULT_TIMEOUT``) so a peer lost on another machine cannot hang the job.
Under ``torchrun`` (``RANK``/``WORLD_SIZE`` set) the process group is joined from the environment.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import sys
from typing import Any, Callable, Optional, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from resdet.cli import default_argument_parser  # noqa: F401  (defined there: no torch import)
from resdet.engine import comm
from resdet.errors import UserError

logger = logging.getLogger(__name__)

__all__ = ["default_argument_parser", "launch"]


def _find_free_port() -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def _backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def launch(
    main_func: Callable[..., Any],
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: Optional[str] = "auto",
    args: Sequence[Any] = (),
) -> Any:
    """Run ``main_func(*args)`` in ``num_gpus_per_machine * num_machines`` processes.

    Args:
        main_func: a module-level function (it is pickled by reference into each worker).
        num_gpus_per_machine: processes on this machine; on a CPU-only machine, CPU processes.
        num_machines: machines taking part.
        machine_rank: this machine's index, 0..num_machines-1.
        dist_url: ``tcp://host:port`` of machine 0, or "auto" for a free local port.
        args: arguments for ``main_func``.

    Returns:
        What ``main_func`` returned when it ran in this process (one process, or under
        ``torchrun``); None when it ran in spawned workers.

    Raises:
        UserError: impossible settings, or a worker that stopped (its message is passed on).
    """
    if num_gpus_per_machine < 1 or num_machines < 1:
        raise UserError("--num-gpus and --num-machines must be at least 1.")
    if not 0 <= machine_rank < num_machines:
        raise UserError(f"--machine-rank {machine_rank} must be in [0, {num_machines}).")
    if torch.cuda.is_available() and num_gpus_per_machine > torch.cuda.device_count():
        raise UserError(f"--num-gpus {num_gpus_per_machine} exceeds the "
                        f"{torch.cuda.device_count()} GPUs visible on this machine.")
    world_size = num_machines * num_gpus_per_machine
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ and world_size == 1:
        # Started by torchrun: one process per rank already exists.
        _init_from_env()
        return main_func(*args)
    if world_size == 1:
        return main_func(*args)
    if dist_url in (None, "", "auto"):
        if num_machines > 1:
            raise UserError("--dist-url auto works on one machine only; pass "
                            "--dist-url tcp://HOST_OF_MACHINE_0:PORT on every machine.")
        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    ctx = mp.start_processes(
        _distributed_worker, nprocs=num_gpus_per_machine,
        args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, tuple(args)),
        join=False, start_method="spawn")

    def _forward(signum, frame):  # so each worker checkpoints and exits by itself
        for p in ctx.processes:
            if p.is_alive():
                os.kill(p.pid, signum)

    old = signal.signal(signal.SIGTERM, _forward)
    try:
        while not ctx.join():
            pass
    except mp.ProcessRaisedException as e:
        # Peers of a failing worker fail too ("connection closed by peer"); report the cause.
        index, trace = _root_cause(ctx, e.error_index, str(e))
        raise _worker_error(index + machine_rank * num_gpus_per_machine, trace) from None
    except mp.ProcessExitedException as e:
        rank = e.error_index + machine_rank * num_gpus_per_machine
        raise UserError(f"training worker rank {rank} died ({e}); the other workers were "
                        "stopped: see the log above or OUTPUT_DIR/log.txt, then rerun with "
                        "--resume.") from None
    finally:
        signal.signal(signal.SIGTERM, old)


def _root_cause(ctx: Any, index: int, trace: str) -> tuple:
    """The most informative worker failure: a UserError, else one that is not a lost peer."""
    import pickle

    traces = {}
    for i, path in enumerate(getattr(ctx, "error_files", [])):
        try:
            with open(path, "rb") as f:
                traces[i] = pickle.load(f)
        except (OSError, EOFError, pickle.UnpicklingError):
            continue
    for i, t in traces.items():
        if "resdet.errors.UserError: " in t:
            return i, t
    for i, t in traces.items():
        if "closed by peer" not in t and "Connection reset" not in t:
            return i, t
    return index, trace


def _worker_error(rank: int, trace: str) -> UserError:
    """A worker's exception as one message; a worker's own UserError is passed on unchanged."""
    m = re.search(r"resdet\.errors\.UserError: (.*)", trace, flags=re.S)
    if m:
        return UserError(m.group(1).strip())
    last = [ln for ln in trace.strip().splitlines() if ln.strip()][-1]
    return UserError(f"training worker rank {rank} failed with '{last.strip()}'; the other "
                     f"workers were stopped (run with --debug for the traceback):\n{trace}")


def _init_from_env() -> None:
    if comm.is_initialized():
        return
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=_backend(), init_method="env://", timeout=comm.DEFAULT_TIMEOUT)
    comm.set_local(local_rank, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def _distributed_worker(local_rank: int, main_func: Callable[..., Any], world_size: int,
                        num_gpus_per_machine: int, machine_rank: int, dist_url: str,
                        args: Sequence[Any]) -> None:
    global_rank = machine_rank * num_gpus_per_machine + local_rank
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    else:
        # CPU workers share the cores; one thread each avoids oversubscription.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // num_gpus_per_machine))
    try:
        dist.init_process_group(backend=_backend(), init_method=dist_url, world_size=world_size,
                                rank=global_rank, timeout=comm.DEFAULT_TIMEOUT)
    except Exception as e:
        raise UserError(f"could not join the process group at {dist_url} as rank {global_rank} "
                        f"({e}); check --dist-url and that every machine is started.") from e
    comm.set_local(local_rank, num_gpus_per_machine)
    comm.synchronize()
    main_func(*args)
    # Only after success: on an error the process exits with the group, and its error is
    # recorded before its peers see the connection drop.
    try:
        dist.destroy_process_group()
    except Exception:  # a peer may already be gone; nothing left to clean
        pass
    sys.stdout.flush()
