"""--resume, --eval-only and unreadable training images on the torchvision engine."""

from __future__ import annotations

import json
import logging
import os

import pytest
from tvdet_helpers import config_path, tiny_opts, train_args

from resdet.errors import UserError
from resdet.tvdet.train import main

QUICK = config_path("quickstart.yaml")
COCO = {"DATASETS.TRAIN": '("coco_2017_train",)', "DATASETS.TEST": '("coco_2017_val",)'}


def _iterations(out):
    with open(os.path.join(out, "metrics.json")) as f:
        return [r["iteration"] for r in map(json.loads, f) if "total_loss" in r]


def test_eval_only_reproduces_and_resume_continues(datasets_env, tmp_path):
    out = str(tmp_path / "run")
    first = main(train_args(QUICK, tiny_opts(out, **COCO)))
    assert _iterations(out) == [1]
    # --eval-only on the final weights gives the numbers of the final evaluation
    again = str(tmp_path / "eval")
    weights = os.path.join(out, "model_final.pth")
    results = main(train_args(QUICK, tiny_opts(again, **COCO, **{"MODEL.WEIGHTS": weights}),
                              eval_only=True))
    same = json.dumps(results, sort_keys=True)  # (NaN-safe comparison)
    assert same == json.dumps(first, sort_keys=True) and "AP50" in same
    with open(os.path.join(again, "eval_results.json")) as f:
        # the file holds the same numbers; JSON has no NaN, so an undefined AP is written as null
        assert json.dumps(json.load(f), sort_keys=True) == same.replace("NaN", "null")
    # the same command with a longer schedule and --resume starts after iteration 1
    main(train_args(QUICK, tiny_opts(out, **COCO, **{"SOLVER.MAX_ITER": "3"}), resume=True))
    assert _iterations(out) == [1, 2]
    with open(os.path.join(out, "log.txt")) as f:
        assert "continuing at iteration 2 of 3" in f.read()


def test_unreadable_training_image_is_skipped_with_a_warning(tiny_root, tmp_path, monkeypatch,
                                                           caplog):
    import shutil

    root = str(tmp_path / "ds")
    shutil.copytree(tiny_root, root)
    bad = os.path.join(root, "coco", "train2017", "000000000001.jpg")
    with open(bad, "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 not really a jpeg")
    monkeypatch.setenv("DETECTRON2_DATASETS", root)
    out = str(tmp_path / "out")
    opts = tiny_opts(out, **COCO, **{"SOLVER.MAX_ITER": "3"})
    with caplog.at_level(logging.WARNING, logger="resdet.tvdet.data"):
        logging.getLogger("resdet").propagate = True
        try:
            main(train_args(QUICK, opts))
        finally:
            logging.getLogger("resdet").propagate = False
    warned = [r.getMessage() for r in caplog.records if "Skipping a training image" in r.message]
    assert warned and "000000000001.jpg" in warned[0] and "(1 image(s) skipped" in warned[0]
    assert _iterations(out) == [2]
    with pytest.raises(UserError, match="000000000001.jpg"):
        main(train_args(QUICK, tiny_opts(str(tmp_path / "strict"), **COCO,
                                         **{"DATALOADER.SKIP_BAD_SAMPLES": "False"})))
