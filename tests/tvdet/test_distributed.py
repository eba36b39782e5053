"""Two-process (gloo) training on the CPU through resdet.engine.launch."""

from __future__ import annotations

import json
import os

import torch
from tvdet_helpers import config_path, tiny_opts, train_args

from resdet.engine import launch
from resdet.tvdet.train import main


def test_two_process_gloo_training(datasets_env, tmp_path):
    out = str(tmp_path / "ddp")
    opts = tiny_opts(out, **{"DATASETS.TRAIN": '("coco_2017_train",)',
                             "DATASETS.TEST": '("coco_2017_val",)'})
    args = train_args(config_path("quickstart.yaml"), opts, num_gpus=2)
    launch(main, 2, num_machines=1, machine_rank=0, dist_url="auto", args=(args,))
    with open(os.path.join(out, "metrics.json")) as f:
        records = [json.loads(line) for line in f]
    assert [r["iteration"] for r in records if "total_loss" in r] == [1]
    assert os.path.isfile(os.path.join(out, "log.txt.rank1"))
    with open(os.path.join(out, "log.txt.rank1")) as f:
        assert "Rank 1 of 2" in f.read()
    final = torch.load(os.path.join(out, "model_final.pth"), weights_only=False)
    assert final["iteration"] == 1
    with open(os.path.join(out, "eval_results.json")) as f:
        assert "bbox" in json.load(f)["coco_2017_val"]
