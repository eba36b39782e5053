"""``tools/predict.py`` on the torchvision engine: a detector checkpoint of either engine, drawn by
:mod:`resdet.detection.drawing`."""

from __future__ import annotations

import logging
import os
from typing import List, Optional, Sequence

from resdet.detection.drawing import list_images, predict_images
from resdet.errors import UserError

logger = logging.getLogger(__name__)


def run_predict(config_file: str, weights: str, inputs: Sequence[str], output_dir: str,
                score_thresh: float = 0.5, opts: Optional[Sequence[str]] = None) -> List[str]:
    """Load the config and a detector checkpoint (of either engine), draw predictions for every
    input image into ``output_dir``.

    Raises:
        UserError: bad config or paths, or ``weights`` that are not a whole detector.
    """
    from resdet.config import load_config
    from resdet.detection.weights_file import read_detection_weights
    from resdet.engine import select_device
    from resdet.engine.events import setup_logging
    from resdet.tvdet.build import build_model

    setup_logging(None)
    cfg = load_config(config_file, list(opts or []) + ["MODEL.WEIGHTS", weights])
    from resdet.data.custom import register_custom_datasets  # DATASETS.CUSTOM names (issue 12)
    register_custom_datasets(cfg)
    if "://" not in str(weights) and not os.path.isfile(str(weights)):
        raise UserError(f"--weights {weights} does not exist; pass a model_final.pth written by "
                        "tools/train_net.py (either engine).")
    weights_file = read_detection_weights(weights)
    if not weights_file.is_detector:
        raise UserError(f"--weights {weights} is not a detector checkpoint; pass a "
                        "model_final.pth written by tools/train_net.py (either engine).")
    files = list_images(inputs)
    device = select_device(cfg)
    model = build_model(cfg, weights_file=weights_file, purpose="evaluate").to(device)
    written = predict_images(cfg, model, files, output_dir, score_thresh, device)
    logger.info("Wrote %d images to %s", len(written), output_dir)
    return written
