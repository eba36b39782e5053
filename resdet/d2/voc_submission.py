"""Write VOC evaluation-server submission files for a split without public labels (VOC2012 test).

Files follow the devkit's ``comp4_det_test_<class>.txt`` format ("comp4": trained on data beyond
VOC, as the paper's 07++12 models with ImageNet pretraining): one line per detection,
``<image id> <score> <xmin> <ymin> <xmax> <ymax>`` in 1-based pixel coordinates, which undoes the
0-based shift of Detectron2's VOC loader (``xmin - 1``).
"""

from __future__ import annotations

import itertools
import logging
import os
from collections import defaultdict
from typing import Dict, List

from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

logger = logging.getLogger(__name__)


class VOCSubmissionWriter(DatasetEvaluator):
    """A Detectron2 evaluator that only writes submission files; ``evaluate`` returns ``{}``.

    Args:
        dataset_name: a VOC dataset in Detectron2's MetadataCatalog (``thing_classes``).
        output_dir: where ``comp4_det_test_<class>.txt`` files go.
    """

    def __init__(self, dataset_name: str, output_dir: str):
        self._classes = list(MetadataCatalog.get(dataset_name).thing_classes)
        self._output_dir = output_dir
        self._lines: Dict[int, List[str]] = defaultdict(list)

    def reset(self) -> None:
        self._lines = defaultdict(list)

    def process(self, inputs, outputs) -> None:
        for inp, out in zip(inputs, outputs):
            image_id = inp["image_id"]
            instances = out["instances"].to("cpu")
            boxes = instances.pred_boxes.tensor.numpy()
            scores = instances.scores.tolist()
            classes = instances.pred_classes.tolist()
            for box, score, cls in zip(boxes, scores, classes):
                xmin, ymin, xmax, ymax = box
                self._lines[cls].append(
                    f"{image_id} {score:.6f} {xmin + 1:.1f} {ymin + 1:.1f} {xmax:.1f} {ymax:.1f}"
                )

    def evaluate(self) -> dict:
        gathered = comm.gather(self._lines, dst=0)
        if not comm.is_main_process():
            return {}
        lines = defaultdict(list)
        for part in gathered:
            for cls, cls_lines in part.items():
                lines[cls].extend(cls_lines)
        os.makedirs(self._output_dir, exist_ok=True)
        for cls, name in enumerate(self._classes):
            path = os.path.join(self._output_dir, f"comp4_det_test_{name}.txt")
            with open(path, "w", encoding="utf-8") as f:
                f.write("".join(line + "\n" for line in lines.get(cls, [])))
        count = sum(len(v) for v in itertools.chain(lines.values()))
        logger.info("Wrote %d detections for the VOC evaluation server to %s (no public labels, "
                    "so no metrics here).", count, self._output_dir)
        return {}
