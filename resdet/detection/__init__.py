"""Engine-neutral detection: what decides a result, once, below both engine adapters.

``resdet/d2`` (Detectron2) and ``resdet/tvdet`` (torchvision) call these modules and only
translate their output into each engine's types; this package imports neither adapter. Modules
are imported where used (no eager imports here), e.g. :mod:`resdet.detection.mapper` (image
reading, per-image checks, box policy, resizing and flipping for both engines' data loaders) and
:mod:`resdet.detection.visualize` (``tools/visualize_data.py``).
"""
