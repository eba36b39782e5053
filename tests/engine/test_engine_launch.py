"""launch(): a worker that dies stops the others with a message instead of hanging."""

import os
import time

import pytest

from resdet.engine import comm, launch
from resdet.errors import UserError


def _die_or_wait(marker):
    if comm.get_rank() == 1:
        os._exit(3)
    comm.synchronize()  # rank 0 would wait here forever for its dead peer
    open(marker, "w").close()


def _raise_user_error():
    if comm.get_rank() == 1:
        raise UserError("DATASETS.TRAIN names a dataset that rank 1 cannot read.")
    comm.synchronize()


@pytest.mark.slow
def test_dead_worker_stops_the_others(tmp_path):
    t0 = time.time()
    with pytest.raises(UserError) as e:
        launch(_die_or_wait, 2, args=(str(tmp_path / "done"),))
    assert "rank 1 died" in str(e.value) and "--resume" in str(e.value)
    assert time.time() - t0 < 120
    assert not (tmp_path / "done").exists()
    # a worker's own UserError comes back as that one sentence
    with pytest.raises(UserError, match="^DATASETS.TRAIN names a dataset that rank 1"):
        launch(_raise_user_error, 2)


def test_launch_argument_errors():
    with pytest.raises(UserError, match="--num-gpus"):
        launch(print, 0)
    with pytest.raises(UserError, match="--dist-url"):
        launch(print, 2, num_machines=2, machine_rank=0, dist_url="auto")


_MACHINE = """
import json, sys, torch
sys.path.insert(0, {root!r})
from resdet.engine import comm, launch

def report(out):
    total = comm.all_reduce_sum([float(comm.get_rank())], torch.device("cpu"))[0]
    with open(f"{{out}}.{{comm.get_rank()}}", "w") as f:
        json.dump([comm.get_rank(), comm.get_local_rank(), comm.get_world_size(),
                   comm.get_local_size(), total], f)

if __name__ == "__main__":
    launch(report, 2, num_machines=2, machine_rank=int(sys.argv[1]), dist_url=sys.argv[2],
           args=({out!r},))
"""


@pytest.mark.slow
def test_two_machines_of_two_processes_join_one_group(tmp_path):
    """--num-machines 2 --machine-rank K --dist-url tcp://...: ranks are machine-major."""
    import json
    import socket
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    # A port below Linux's ephemeral range (32768+): a client that retries a port of that range
    # before its server listens can be handed the same port and connect to itself (and hang).
    for port in range(29500 + os.getpid() % 1000, 31500):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                break
            except OSError:
                continue
    url = f"tcp://127.0.0.1:{port}"
    out = str(tmp_path / "rank")
    script = tmp_path / "machine.py"  # spawned workers re-import it to find report()
    script.write_text(_MACHINE.format(root=root, out=out))
    procs = []
    for k in (0, 1):
        log = open(tmp_path / f"machine{k}.log", "w")
        procs.append(subprocess.Popen([sys.executable, str(script), str(k), url], stdout=log,
                                      stderr=subprocess.STDOUT, start_new_session=True))
    deadline = time.time() + 180
    while time.time() < deadline and any(p.poll() is None for p in procs):
        time.sleep(0.5)
    codes = [p.poll() for p in procs]  # None: still running after 3 minutes (a hang)
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, 9)
    logs = "\n".join((tmp_path / f"machine{k}.log").read_text()[-2000:] for k in (0, 1))
    assert codes == [0, 0], logs
    seen = [json.load(open(f"{out}.{r}")) for r in range(4)]
    # [rank, local rank, world size, processes on this machine, sum of all ranks]
    assert seen == [[0, 0, 4, 2, 6.0], [1, 1, 4, 2, 6.0], [2, 0, 4, 2, 6.0], [3, 1, 4, 2, 6.0]]
