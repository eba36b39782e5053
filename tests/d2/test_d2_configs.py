"""Every detection config in configs/ builds on Detectron2 and trains 2 iterations on tiny data.

The tiny datasets sit in the official layouts (conftest.py); only sizes, iteration counts and
weights are overridden (no download is possible here), the rest of each config is used as is.
"""

import argparse
import glob
import json
import os

import pytest

pytest.importorskip("detectron2")

import torch  # noqa: E402
import yaml  # noqa: E402
from tests.d2.d2_helpers import TINY_OPTS, write_tame_weights  # noqa: E402

from resdet.d2.train import main  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DETECTION_CONFIGS = sorted(
    os.path.relpath(p, ROOT)
    for p in glob.glob(os.path.join(ROOT, "configs", "*.yaml"))
    if not os.path.basename(p).startswith("Base-")
)


def _args(config, output_dir, *opts, eval_only=False, resume=False):
    return argparse.Namespace(
        config_file=config, opts=[*TINY_OPTS, "OUTPUT_DIR", str(output_dir), *opts],
        resume=resume, eval_only=eval_only, num_gpus=1, debug=False)


@pytest.mark.skipif(not DETECTION_CONFIGS, reason="no detection configs in configs/ yet")
@pytest.mark.parametrize("config", DETECTION_CONFIGS)
def test_config_trains_two_iterations(config, d2_datasets, tmp_path):
    from resdet.config import load_config

    out = tmp_path / "out"
    path = os.path.join(ROOT, config)
    weights = write_tame_weights(str(tmp_path / "tame.pth"), load_config(path).dump())
    opts = ["MODEL.WEIGHTS", weights]
    if "VGG16" in config:
        # fc6 alone is 25088 x 4096 (100M weights); a narrower head keeps the test small.
        opts += ["MODEL.RESDET.VGG_FC_DIM", "64"]
    main(_args(path, out, *opts))
    assert (out / "config.yaml").is_file()
    assert (out / "last_checkpoint").read_text().strip() == "model_final.pth"
    final = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)
    assert final["iteration"] == 1 and "MODEL:" in final["cfg"]
    lines = [json.loads(x) for x in (out / "metrics.json").read_text().splitlines()]
    train_lines = [x for x in lines if "total_loss" in x]
    assert train_lines and train_lines[-1]["iteration"] == 1
    assert torch.isfinite(torch.tensor(train_lines[-1]["total_loss"]))
    results = json.loads((out / "eval_results.json").read_text())
    if list(yaml.safe_load(final["cfg"])["DATASETS"]["TEST"]) == ["voc_2012_test"]:
        # no public labels: submission files in the devkit's layout instead of metrics
        sub = out / "inference" / "voc_2012_test" / "results" / "VOC2012" / "Main"
        assert (sub / "comp4_det_test_aeroplane.txt").is_file()
        assert len(list(sub.glob("comp4_det_test_*.txt"))) == 20
    else:
        (name, metrics), = results.items()
        assert set(metrics["bbox"]) >= {"AP", "AP50", "AP75"}
