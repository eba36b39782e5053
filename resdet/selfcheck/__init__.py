"""Does this installation train here, and how fast? ``tools/selfcheck.py`` in library form.

- :mod:`resdet.selfcheck.environment`: Python, torch/CUDA/cuDNN/NCCL, GPUs, Detectron2, the COCO
  scorers, datasets on disk.
- :mod:`resdet.selfcheck.smoke`: a few iterations of every training path on generated data.
- :mod:`resdet.selfcheck.bench`: the GPU rows of docs/benchmarks.md.
"""

from resdet.selfcheck.run import run_selfcheck

__all__ = ["run_selfcheck"]
