"""resdet: the ResNet paper's networks, recipes and detection experiments (Detectron2 plugin)."""

from setuptools import find_packages, setup

setup(
    name="resdet",
    version="0.1.0",
    description=(
        "Deep Residual Learning for Image Recognition (He et al., 2015) end to end: networks, "
        "ImageNet/CIFAR recipes, and Faster R-CNN on Detectron2 or torchvision."
    ),
    packages=find_packages(include=["resdet", "resdet.*"]),
    # ImageNet-1k's 1000 WordNet ids: the classes of torchvision/timm weights at evaluation
    package_data={"resdet.data": ["imagenet1k_wnids.txt"]},
    python_requires=">=3.10",  # torchvision>=0.29 needs it
    install_requires=[
        # torchvision>=0.29's registry wheels bring torch's CUDA build, which also runs on a CPU.
        "torch>=2.4",
        "torchvision>=0.29",
        "fvcore>=0.1.5",
        "pycocotools>=2.0.7",
        "faster-coco-eval>=1.6",
        "opencv-python-headless>=4.8",
        "numpy",
        "tqdm",
        "matplotlib",
        "pyyaml",
        "scipy",  # the ImageNet devkit's meta.mat (flat val layout), as torchvision reads it
    ],
    extras_require={
        "dev": ["pytest>=7", "pytest-timeout", "ruff>=0.5"],
        # Event files of the resdet engine (pretraining, the torchvision engine) for TensorBoard.
        "tensorboard": ["tensorboard>=2.10"],
        # tools/export_model.py's ONNX format and its check against the eager model.
        "export": ["onnx>=1.14", "onnxruntime>=1.16"],
    },
)
