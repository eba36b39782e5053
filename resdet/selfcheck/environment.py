"""What this installation has: Python, torch and its CUDA stack, GPUs, Detectron2, the COCO
scorers, and which builtin datasets are on disk. Each finding is one :class:`Finding`; a failure
carries one sentence saying what to do (as ``python -m detectron2.utils.collect_env`` reports,
plus the advice).
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional

# Dense (no sparsity) bfloat16 tensor-core peak, TFLOP/s, from the vendors' data sheets. Used
# only to state a measured images/s as a fraction of what the GPU can do; a GPU not listed gets
# no fraction. Matched by substring of torch.cuda.get_device_name(), the first match wins.
PEAK_BF16_TFLOPS: Dict[str, float] = {
    "GB200": 2500.0,
    "B200": 2250.0,
    "H200": 989.4,
    "H100 SXM": 989.4,
    "H100 80GB HBM3": 989.4,  # the SXM part's device name
    "H100 NVL": 835.5,
    "H100 PCIe": 756.5,
    "H100": 756.5,  # other H100 names: the PCIe figure, the lower one
    "GH200": 989.4,
    "A100": 312.0,
    "A800": 312.0,
    "L40S": 362.1,
    "L40": 181.0,
    "L4": 121.0,
    "A10G": 70.0,
    "A10": 125.0,
    "RTX 4090": 165.2,
    "RTX 3090": 71.0,
}


@dataclass
class Finding:
    """One row of the environment table.

    Attributes:
        name: what was looked at ("torch", "GPU 0", "dataset coco_2017_val", ...).
        value: what was found, in words.
        status: "ok", "info" (nothing wrong, nothing to do), "warn" (works, but see advice) or
            "fail" (a part of resdet will not work here).
        advice: one sentence saying what to do; empty for "ok".
    """

    name: str
    value: str
    status: str = "ok"
    advice: str = ""

    def as_dict(self) -> dict:
        """The finding as a JSON-ready dict."""
        return asdict(self)


def peak_bf16_tflops(device_name: str) -> Optional[float]:
    """The dense bf16 peak of a GPU by its name, in TFLOP/s, or None when it is not in the table."""
    for key, value in PEAK_BF16_TFLOPS.items():
        if key.lower() in device_name.lower():
            return value
    return None


def _version(module: str) -> Optional[str]:
    try:
        mod = importlib.import_module(module)
    except Exception:
        return None
    return str(getattr(mod, "__version__", "installed"))


def _python() -> Finding:
    v = platform.python_version()
    if sys.version_info < (3, 10):
        return Finding("Python", v, "fail", "resdet needs Python >= 3.10; make the virtual "
                       "environment with a newer python3.")
    return Finding("Python", f"{v} ({sys.executable})")


def _torch() -> List[Finding]:
    import torch

    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only build"
    out = [Finding("torch", f"{torch.__version__} ({build})")]
    if torch.version.cuda:
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        out.append(Finding("cuDNN", str(cudnn) if cudnn else "not available",
                           "ok" if cudnn else "warn",
                           "" if cudnn else "torch cannot load cuDNN: reinstall torch from the "
                           "package registry (its CUDA wheels carry cuDNN)."))
        try:
            nccl = ".".join(str(x) for x in torch.cuda.nccl.version())
            out.append(Finding("NCCL", nccl))
        except Exception as e:  # NCCL is optional on a one-GPU machine
            out.append(Finding("NCCL", f"not available ({e})", "warn",
                               "several GPUs would fall back to gloo, which is slow: install a "
                               "torch build with NCCL."))
    try:
        import torchvision
        from torchvision.ops import nms

        nms(torch.zeros(1, 4), torch.zeros(1), 0.5)
        out.append(Finding("torchvision", torchvision.__version__))
    except Exception as e:
        out.append(Finding("torchvision", f"broken ({type(e).__name__}: {e})", "fail",
                           "torchvision's C++ operators do not load beside this torch: install "
                           "the torch and torchvision versions made for each other (README)."))
    return out


def _gpus() -> List[Finding]:
    import torch

    if not torch.cuda.is_available():
        why = ("torch is a CPU-only build" if not torch.version.cuda
               else "torch.cuda.is_available() is False")
        return [Finding("GPUs", f"none visible ({why})", "info",
                        "GPU items are skipped; on a GPU machine check nvidia-smi and "
                        "CUDA_VISIBLE_DEVICES.")]
    out = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        peak = peak_bf16_tflops(p.name)
        peak_text = f"{peak:g} bf16 TFLOP/s peak" if peak else "peak not in resdet's table"
        out.append(Finding(f"GPU {i}", f"{p.name}, {p.total_memory / 2**30:.0f} GiB, compute "
                           f"capability {p.major}.{p.minor}, {peak_text}"))
    try:
        x = torch.ones(64, 64, device="cuda")
        float((x @ x).sum())
    except Exception as e:
        out.append(Finding("CUDA", f"a matmul on cuda:0 failed ({type(e).__name__}: {e})", "fail",
                           "the driver and torch's CUDA build do not work together: update the "
                           "NVIDIA driver or install a torch build for its CUDA version."))
    return out


def _detectron2() -> List[Finding]:
    import torch

    if importlib.util.find_spec("detectron2") is None:
        return [Finding("Detectron2", "not installed", "info",
                        "the torchvision engine runs every config; to check the Detectron2 engine "
                        "too, build Detectron2 from source (README, 'Detectron2 (optional)').")]
    try:
        import detectron2
        from detectron2 import _C
    except Exception as e:
        return [Finding("Detectron2", f"does not import ({type(e).__name__}: {e})", "fail",
                        "rebuild it in this environment: pip install --no-build-isolation -e "
                        "<detectron2 source> (README).")]
    cuda = str(_C.get_cuda_version())
    built_with_cuda = getattr(_C, "has_cuda", lambda: cuda not in ("", "0", "None"))()
    ops = f"with CUDA {cuda}" if built_with_cuda else "for the CPU only"
    value = f"{detectron2.__version__}, C++ ops built {ops}"
    if torch.cuda.is_available() and not built_with_cuda:
        return [Finding("Detectron2", value, "fail",
                        "GPUs are visible but Detectron2's operators were built without CUDA: "
                        "rebuild with FORCE_CUDA=1 pip install --no-build-isolation -e <source>.")]
    return [Finding("Detectron2", value)]


def _libraries() -> List[Finding]:
    out = []
    for module, pip_name, needed in (("faster_coco_eval", "faster-coco-eval", True),
                                     ("pycocotools", "pycocotools", True),
                                     ("fvcore", "fvcore", True),
                                     ("cv2", "opencv-python-headless", True),
                                     ("tensorboard", "tensorboard", False)):
        v = _version(module)
        if v is not None:
            out.append(Finding(pip_name, v))
        elif needed:
            out.append(Finding(pip_name, "missing", "fail",
                               f"pip install {pip_name} (a dependency: pip install -e . "
                               "installs it)."))
        else:
            out.append(Finding(pip_name, "not installed (optional)", "info",
                               f"pip install {pip_name} to get TensorBoard event files."))
    return out


def _datasets() -> List[Finding]:
    from resdet.data import catalog

    root = catalog.dataset_root()
    source = ("$DETECTRON2_DATASETS" if os.environ.get("DETECTRON2_DATASETS")
              else "default, $DETECTRON2_DATASETS unset")
    out = [Finding("datasets root", f"{os.path.abspath(root)} ({source})",
                   "ok" if os.path.isdir(root) else "info",
                   "" if os.path.isdir(root) else "no datasets folder yet: the generated sets are "
                   "made there on first use; real ones go where datasets/README.md says.")]
    present, absent = [], []
    for name in catalog.list_datasets():
        if name.startswith(("shapes_", "synthetic_")):
            continue  # generated on first use
        try:  # a dataset whose metadata names files, all of them there
            meta = catalog.get_metadata(name)
            on_disk = any(isinstance(meta.get(k), str) and meta[k] for k in catalog.PATH_KEYS) \
                and catalog.missing_path(name) is None
        except Exception:
            on_disk = False
        (present if on_disk else absent).append(name)
    out.append(Finding("builtin datasets on disk", ", ".join(present) or "none",
                       "ok" if present else "info",
                       "" if present else "train on the generated shapes/synthetic_imagenet sets, "
                       "or put COCO/VOC/ImageNet/CIFAR-10 where datasets/README.md says."))
    return out


def collect_environment() -> List[Finding]:
    """Every finding about this installation, in table order.

    Returns:
        the findings; none raises: a part that cannot be inspected is itself a finding.
    """
    findings = [_python()]
    for part in (_torch, _gpus, _detectron2, _libraries, _datasets):
        try:
            findings.extend(part())
        except Exception as e:  # the report must finish whatever one part does
            findings.append(Finding(part.__name__.strip("_"), f"could not be inspected "
                                    f"({type(e).__name__}: {e})", "fail",
                                    "run again with --debug and report the traceback."))
    return findings
