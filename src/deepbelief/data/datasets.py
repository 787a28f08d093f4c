"""The named datasets (``load_dataset``) and the embedded default, scikit-learn's 8x8 digits."""

from __future__ import annotations

import os

import numpy as np
import torch

from deepbelief.errors import ConfigError, check_float, check_int
from deepbelief.data.dataset import Dataset
from deepbelief.data.patches import load_patches_dataset
from deepbelief.data.sources import load_fashion_mnist, load_mnist

#: Names accepted by :func:`load_dataset`; the first is the default.
DATASETS: tuple[str, ...] = ("digits", "mnist", "mnist-binarized", "fashion-mnist", "patches")

# Embedded default: scikit-learn's 1,797 8x8 digits, shuffled once with default_rng(0);
# the first 1,297 are the training set (of which the last 297 validate), the rest test.
DIGITS_N_TEST = 500
DIGITS_N_VALID = 297
DIGITS_SEED = 0


def load_digits_dataset() -> Dataset:
    """The embedded default: scikit-learn's 1,797 handwritten digits of 8x8 pixels.

    The 0-16 grey levels are divided by 16. The images are shuffled once with
    ``numpy.random.default_rng(0)``; the first 1,297 form the training set and the last
    500 the test set. ``split_validation()`` keeps the last 297 training images for
    validation, leaving 1,000 to train on. Needs no file and no network.

    Returns:
        Dataset ``"digits"``: ``x_train`` float32 ``(1297, 64)``, ``x_test`` ``(500, 64)``,
        ``image_shape=(8, 8)``.
    """
    from sklearn.datasets import load_digits  # lazily: only this loader needs it

    bunch = load_digits()
    x = np.asarray(bunch.data, dtype=np.float32) / np.float32(16.0)  # (1797, 64)
    y = np.asarray(bunch.target, dtype=np.int64)  # (1797,)
    order = np.random.default_rng(DIGITS_SEED).permutation(x.shape[0])
    train, test = order[:-DIGITS_N_TEST], order[-DIGITS_N_TEST:]
    return Dataset(
        x_train=torch.from_numpy(np.ascontiguousarray(x[train])),
        y_train=torch.from_numpy(np.ascontiguousarray(y[train])),
        x_test=torch.from_numpy(np.ascontiguousarray(x[test])),
        y_test=torch.from_numpy(np.ascontiguousarray(y[test])),
        name="digits",
        image_shape=(8, 8),
        n_valid=DIGITS_N_VALID,
        n_classes=10,
        source="sklearn.datasets.load_digits",
    )


def load_dataset(
    name: str = "digits",
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = True,
    binarized: bool = False,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    min_contrast: float = 0.0,
) -> Dataset:
    """Load a dataset by its registry name, one of :data:`DATASETS`.

    * ``digits`` (default): :func:`load_digits_dataset`, embedded, 8x8.
    * ``mnist``: :func:`load_mnist`.
    * ``mnist-binarized``: MNIST binarised once with ``seed`` (0 by default), training set
      then test set from one generator (Salakhutdinov & Murray 2008).
    * ``fashion-mnist``: :func:`load_fashion_mnist` (local files only).
    * ``patches``: :func:`load_patches_dataset`, 8x8 grey natural image patches (embedded).

    Args:
        name: the dataset.
        data_dir: a folder to look in first (ignored by ``digits``).
        download: allow downloading MNIST.
        binarized: binarise any dataset as ``mnist-binarized`` is (see :meth:`Dataset.binarized`).
        seed: seed of the binarisation.
        cache_dir: cache root; None means :func:`default_cache_dir`.
        min_contrast: ``patches`` only: keep the patches whose own standard deviation
            exceeds this (:func:`load_patches_dataset`); 0 keeps all.

    Raises:
        ConfigError: unknown ``name`` (the message lists the valid ones) or bad options.
    """
    if name not in DATASETS:
        raise ConfigError(f"dataset name must be one of {', '.join(DATASETS)}; got {name!r}")
    if not isinstance(binarized, bool):
        raise ConfigError(f"binarized must be True or False, got {binarized!r}")
    seed = check_int("seed", seed, minimum=0)
    min_contrast = check_float("min_contrast", min_contrast, minimum=0.0, maximum=1.0)
    if min_contrast > 0 and name != "patches":
        raise ConfigError(f"min_contrast applies to the patches dataset only, got min_contrast={min_contrast} "
                          f"with dataset {name!r}")
    if name == "digits":
        dataset = load_digits_dataset()
    elif name == "patches":
        dataset = load_patches_dataset(min_contrast=min_contrast)
    elif name in ("mnist", "mnist-binarized"):
        dataset = load_mnist(data_dir, download=download, cache_dir=cache_dir)
    else:
        dataset = load_fashion_mnist(data_dir, cache_dir=cache_dir)
    if binarized or name == "mnist-binarized":
        dataset = dataset.binarized(seed)
    return dataset
