"""The paper's detection baselines (He et al. 2015, Sec. 4.3): Faster R-CNN, VGG-16 vs ResNet-101.

Table 7 (PASCAL VOC, mAP@.5 in percent; the 07 test result trains on VOC 2007 trainval + 2012
trainval, "07+12"; the 12 test result trains on 07 trainval+test + 12 trainval, "07++12"):
VGG-16 73.2 / 70.4, ResNet-101 76.4 / 73.8. Table 8 (COCO val, trained on COCO train): VGG-16
mAP@.5 41.5, mAP@[.5,.95] 21.2; ResNet-101 48.4 and 27.2 -- the text's "6.0% increase ... 28%
relative improvement" of COCO's standard metric (27.2 - 21.2 = 6.0; 6.0 / 21.2 = 28%).
The paper's models are the C4 layout (conv1..res4 shared, res5 per RoI, Appendix A) for
ResNet-101 and Faster R-CNN's VGG-16, so a number is shown beside ours only for those layouts.
"""

from __future__ import annotations

from typing import Dict, Optional

# (paper dataset, arch) -> {metric: value}; metrics use the eval_results.json keys.
PAPER: Dict[tuple, Dict[str, float]] = {
    ("voc_2007_test", "vgg16"): {"AP50": 73.2},
    ("voc_2007_test", "resnet101"): {"AP50": 76.4},
    ("voc_2012_test", "vgg16"): {"AP50": 70.4},
    ("voc_2012_test", "resnet101"): {"AP50": 73.8},
    ("coco_val", "vgg16"): {"AP50": 41.5, "AP": 21.2},
    ("coco_val", "resnet101"): {"AP50": 48.4, "AP": 27.2},
}

PAPER_SOURCE = {
    "voc_2007_test": "Table 7, VOC 2007 test (trained on 07+12)",
    "voc_2012_test": "Table 7, VOC 2012 test (trained on 07++12)",
    "coco_val": "Table 8, COCO val (trained on COCO train; the paper's val is 2014's)",
}


def paper_dataset(dataset: str) -> Optional[str]:
    """The paper's evaluation set that ``dataset`` corresponds to, or None."""
    if dataset in ("voc_2007_test", "voc_2012_test"):
        return dataset
    if dataset.startswith("coco_") and dataset.endswith("_val"):
        return "coco_val"
    return None


def paper_value(dataset: str, arch: str, setting: str, metric: str) -> Optional[float]:
    """The paper's number for this dataset/backbone/metric when the setting matches, else None."""
    if setting == "FPN":  # the paper has no FPN (that came later, Lin et al. 2017)
        return None
    key = paper_dataset(dataset)
    return PAPER.get((key, arch), {}).get(metric) if key else None
