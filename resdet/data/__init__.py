"""Datasets: the catalog of builtin names, loaders in the official layouts, image reading.

Importing the package registers every builtin name (:mod:`resdet.data.builtin`).
"""

from resdet.data.annotations import filter_empty_annotations
from resdet.data.catalog import (
    dataset_root,
    get_dataset_dicts,
    get_metadata,
    list_datasets,
    register,
)
from resdet.data.image_io import read_image

__all__ = [
    "dataset_root",
    "filter_empty_annotations",
    "get_dataset_dicts",
    "get_metadata",
    "list_datasets",
    "read_image",
    "register",
]

from resdet.data import builtin as _builtin  # noqa: E402,F401  (registers the builtin names)
