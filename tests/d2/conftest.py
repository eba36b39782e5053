"""The d2 tests' dataset fixture (helpers live in d2_helpers.py).

This file needs no Detectron2; the test modules skip themselves when it is absent.
"""

import pytest

from tests.d2.d2_helpers import write_tiny_coco, write_tiny_voc


@pytest.fixture(scope="session")
def d2_datasets(tmp_path_factory):
    """A dataset root with every builtin detection dataset, tiny; $DETECTRON2_DATASETS points to it
    for the session, and Detectron2's catalog is re-pointed to it."""
    root = str(tmp_path_factory.mktemp("d2_datasets"))
    write_tiny_coco(root)
    write_tiny_voc(root, 2007)
    write_tiny_voc(root, 2012)
    from resdet.data.shapes import ensure_shapes

    ensure_shapes(root, num_train=6, num_val=3)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DETECTRON2_DATASETS", root)
        from resdet.d2 import register_resdet_datasets

        register_resdet_datasets()
        yield root
    register_resdet_datasets()
