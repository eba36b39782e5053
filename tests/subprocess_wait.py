"""Waiting on a training process in the real-process tests (signals, kill, resume)."""

import subprocess
import time
from typing import Callable


def wait_until(proc: subprocess.Popen, cond: Callable[[], bool], timeout: float = 240) -> bool:
    """Poll ``cond`` until it holds (True) or ``proc`` exits first (False); fail on timeout."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if cond():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    raise AssertionError("timed out waiting for the training process")
