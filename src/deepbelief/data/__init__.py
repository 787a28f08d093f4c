"""Datasets: the IDX reader (idx.py), the ``Dataset`` type (dataset.py), where MNIST and
Fashion-MNIST come from (sources.py, the loaders; locate.py: an explicit folder,
``$DEEPBELIEF_DATA``, the user cache; download.py: a checksum-verified download), the
named datasets and the embedded 8x8 digits (datasets.py), and natural-image patches (patches.py). Every public name is importable
from ``deepbelief.data``."""

from deepbelief.data.dataset import MNIST_N_VALID, Dataset, Split, binarize
from deepbelief.data.datasets import (
    DATASETS,
    DIGITS_N_TEST,
    DIGITS_N_VALID,
    DIGITS_SEED,
    load_dataset,
    load_digits_dataset,
)
from deepbelief.data.idx import MAX_IDX_BYTES, MAX_IDX_DIMS, MAX_IDX_ELEMENTS, read_idx
from deepbelief.data.patches import (
    PATCHES_N_TEST,
    PATCHES_N_TRAIN,
    PATCHES_N_VALID,
    PATCHES_SIZE,
    load_patches_dataset,
    select_contrast,
)
from deepbelief.data.download import DOWNLOAD_TIMEOUT_S, MAX_DOWNLOAD_BYTES, MNIST_MIRRORS, download_mnist
from deepbelief.data.locate import DATA_ENV_VAR, MNIST_FILES, MNIST_SHA256, default_cache_dir
from deepbelief.data.sources import FASHION_MNIST_SYSTEM_DIR, load_fashion_mnist, load_idx_folder, load_mnist

__all__ = [
    "DATASETS",
    "DATA_ENV_VAR",
    "DIGITS_N_TEST",
    "DIGITS_N_VALID",
    "DIGITS_SEED",
    "DOWNLOAD_TIMEOUT_S",
    "Dataset",
    "FASHION_MNIST_SYSTEM_DIR",
    "MAX_DOWNLOAD_BYTES",
    "MAX_IDX_BYTES",
    "MAX_IDX_DIMS",
    "MAX_IDX_ELEMENTS",
    "MNIST_FILES",
    "MNIST_MIRRORS",
    "MNIST_N_VALID",
    "MNIST_SHA256",
    "PATCHES_N_TEST",
    "PATCHES_N_TRAIN",
    "PATCHES_N_VALID",
    "PATCHES_SIZE",
    "Split",
    "binarize",
    "default_cache_dir",
    "download_mnist",
    "load_dataset",
    "load_digits_dataset",
    "load_fashion_mnist",
    "load_idx_folder",
    "load_mnist",
    "load_patches_dataset",
    "read_idx",
    "select_contrast",
]
