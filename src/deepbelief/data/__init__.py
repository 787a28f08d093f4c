"""Datasets: an IDX reader, MNIST and friends, and the small embedded default.

Every loader returns a :class:`Dataset`: one contiguous float32 tensor per split with
values in [0, 1], shape ``(n_samples, n_features)``, and int64 labels.

Where MNIST comes from, in this order (:func:`load_mnist`):

1. the ``data_dir`` argument (``--data-dir`` on the command line): the folder itself or
   its ``mnist/`` subfolder;
2. the environment variable ``DEEPBELIEF_DATA``: the folder itself or its ``mnist/``
   subfolder;
3. the user cache, ``$XDG_CACHE_HOME/deepbelief/mnist`` (``~/.cache/deepbelief/mnist``
   when ``XDG_CACHE_HOME`` is unset);
4. a download from the public mirrors in :data:`MNIST_MIRRORS` into that cache.

A folder qualifies when it holds the four standard IDX files, gzip-compressed or not
(``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
``t10k-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte[.gz]``). Every MNIST file, local
or downloaded, is checked against the SHA-256 of its *decompressed* bytes, because the
gzip wrappers served by different mirrors differ while the content does not.
"""

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
from deepbelief.data.sources import (
    DATA_ENV_VAR,
    DOWNLOAD_TIMEOUT_S,
    FASHION_MNIST_SYSTEM_DIR,
    MAX_DOWNLOAD_BYTES,
    MNIST_FILES,
    MNIST_MIRRORS,
    MNIST_SHA256,
    default_cache_dir,
    download_mnist,
    load_fashion_mnist,
    load_idx_folder,
    load_mnist,
)

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
