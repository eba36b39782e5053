#!/usr/bin/env python
"""Convert weights between layouts: any supported file -> resdet ``.pth`` or Detectron2 ``.pkl``.

Reads torchvision/timm ResNet and VGG state dicts, Detectron2 checkpoints and ``.pkl`` files,
MSRA/Caffe2 ``.pkl`` blobs, resdet checkpoints and the training checkpoints of torchvision's
reference scripts, timm, Lightning, Detectron2, MMPretrain/MMDetection, MoCo, DINO and SwAV,
loads them into ``build_classifier(--arch)`` (or the backbone when the file has no classifier
head), and writes the result. The log names the entry of the file that was used.

Examples:
    python tools/convert_weights.py --src resnet50-0676ba61.pth --arch resnet50 --out r50.pth
    python tools/convert_weights.py --src R-50.pkl --arch resnet50 --out r50.pkl --to detectron2
    python tools/convert_weights.py --src dino_checkpoint.pth --entry student --arch resnet50 \\
        --out dino_student_r50.pth
"""

from __future__ import annotations

import argparse
import logging


from resdet.checkpoint import (  # noqa: E402
    convert_to_resdet,
    load_weights,
    read_weights_file,
    resolve_weights,
    save_detectron2_pkl,
    save_resdet_weights,
)
from resdet.cli import run_main  # noqa: E402
from resdet.config.choices import SHORTCUTS
from resdet.errors import UserError
from resdet.modeling import build_backbone, build_classifier, get_arch  # noqa: E402

logger = logging.getLogger("convert_weights")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--src", required=True,
                   help="weights file, torchvision://resnet50 (etc.) or URL")
    p.add_argument("--arch", required=True, help="resdet architecture name, e.g. resnet50")
    p.add_argument("--out", required=True, help="output file")
    p.add_argument("--to", choices=("resdet", "detectron2"), default=None,
                   help="output layout (default: detectron2 for a .pkl --out, else resdet)")
    p.add_argument("--shortcut", default=None, choices=SHORTCUTS,
                   help="shortcut option the weights were trained with (default: the paper's)")
    p.add_argument("--c4-head", action="store_true",
                   help="detectron2 output: name res5 roi_heads.res5 and the rest backbone.*")
    p.add_argument("--entry", default=None,
                   help="the checkpoint entry holding the weights, instead of its trainer's "
                        "default (e.g. model, model_ema, state_dict, state_dict_ema, student)")
    p.add_argument("--prefix", default=None,
                   help="the network to take from a file holding several, by its name prefix "
                        "(e.g. module.encoder_k.)")
    p.add_argument("--sha256", default=None, help="refuse --src unless its sha256 is this")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    spec = get_arch(args.arch)  # unknown names fail here, listing the valid ones
    if args.shortcut and not spec.supports("shortcut"):
        raise UserError(f"--shortcut does not apply to {args.arch}, which has no shortcut "
                        "option; leave --shortcut out.")
    obj = read_weights_file(resolve_weights(args.src, sha256=args.sha256))
    converted = convert_to_resdet(obj, args.src, entry=args.entry, prefix=args.prefix)
    logger.info("Read %s", converted.describe(args.src))
    head = f"{spec.classifier}.weight"  # the classifier's last layer: its rows are the classes
    options = {"shortcut": args.shortcut} if args.shortcut else {}
    if head in converted.tensors:
        num_classes = converted.tensors[head].shape[0]
        model = build_classifier(args.arch, num_classes=num_classes, **options)
        what = f"classifier ({num_classes} classes)"
    else:
        model = build_backbone(args.arch, out_features=(spec.stage_names[-1],), **options)
        what = "backbone (the file has no classifier head)"
    logger.info("Building %s %s", args.arch, what)
    # strict: a converted file must not silently carry randomly initialised layers; the model
    # takes the file's class count, so any shape mismatch means another --arch or --shortcut
    load_weights(model, converted, arch=args.arch, strict=True, source=args.src)
    to = args.to or ("detectron2" if args.out.endswith(".pkl") else "resdet")
    if to == "detectron2":
        save_detectron2_pkl(model, args.out, c4_head=args.c4_head)
    else:
        save_resdet_weights(model, args.out, arch=args.arch, source=args.src)
    written = [k for k in model.state_dict() if not k.endswith("num_batches_tracked")]
    logger.info("Wrote %s (%s layout, %d tensors)", args.out, to, len(written))


if __name__ == "__main__":
    run_main(main)
