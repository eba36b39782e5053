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
