"""Datasets: the catalog of builtin names, loaders in the official layouts, image reading."""

from resdet.data.catalog import (
    dataset_root,
    get_dataset_dicts,
    get_metadata,
    list_datasets,
    register,
)
from resdet.data.detection_checks import filter_empty_annotations
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

# Registers imagenet_{train,val}, cifar10_{train,test}, synthetic_imagenet{,_val}.
from resdet.data import classification as _classification  # noqa: E402,F401
