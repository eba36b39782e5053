import atexit
import os
import shutil
import sys
import tempfile

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# Parsed-annotation cache (resdet.data.cache) in a folder of this test session, not the user's.
if "RESDET_CACHE_DIR" not in os.environ:
    os.environ["RESDET_CACHE_DIR"] = tempfile.mkdtemp(prefix="resdet-test-cache-")
    atexit.register(shutil.rmtree, os.environ["RESDET_CACHE_DIR"], True)

# Tests are small; more threads only fight each other on a 2-core CI machine.
torch.set_num_threads(1)


@pytest.fixture
def repo_root() -> str:
    return ROOT
