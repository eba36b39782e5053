#!/usr/bin/env python
"""Train a classifier with the paper's ImageNet or CIFAR-10 recipe (pretrained backbones).

    python tools/pretrain_imagenet.py --config configs/pretrain/quickstart.yaml
    python tools/pretrain_imagenet.py --config configs/pretrain/imagenet_resnet50.yaml --num-gpus 8
    python tools/pretrain_imagenet.py --config ... --resume          # after an interruption
    python tools/pretrain_imagenet.py --config ... --eval-only MODEL.WEIGHTS out/model_final.pth \
        PRETRAIN.TEST_MODE 10crop
    # torchvision/timm ImageNet-1k weights on a val folder with some of the 1000 classes (labelled
    # by WordNet id; --class-subset scores over those classes' outputs only)
    python tools/pretrain_imagenet.py --config ... --eval-only MODEL.WEIGHTS resnet50.pth \
        MODEL.RESNETS.STRIDE_IN_1X1 False --class-subset
"""

from resdet.cli import run_main
from resdet.pretrain.train import main

if __name__ == "__main__":
    run_main(main)
