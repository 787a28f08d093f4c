"""Where MNIST and Fashion-MNIST come from: folders, the environment, the cache, a verified download.

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

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from deepbelief.data import locate
from deepbelief.data.dataset import Dataset, _images_to_tensor
from deepbelief.data.download import download_mnist
from deepbelief.data.idx import read_idx
from deepbelief.data.locate import as_path, default_cache_dir, find_files, fix_hint, not_found, search, search_places
from deepbelief.errors import ConfigError, DataError

#: Where Debian's ``dataset-fashion-mnist`` package installs the files.
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")


# --------------------------------------------------------------------------- loaders


def _load_files(
    files: dict[str, Path],
    *,
    name: str,
    source: str,
    verify: bool,
    n_classes: int | None,
) -> Dataset:
    """Read the four IDX files and assemble a Dataset (checksums when ``verify``).

    ``n_classes`` None means max label + 1; the validation set is the last sixth of the
    training set, which is MNIST's usual split (the last 10,000 of 60,000 images).
    """
    arrays = {stem: read_idx(path, sha256=locate.MNIST_SHA256[stem] if verify else None)
              for stem, path in files.items()}
    parts = {}
    for part, prefix in (("train", "train"), ("test", "t10k")):
        img_path, lab_path = files[f"{prefix}-images-idx3-ubyte"], files[f"{prefix}-labels-idx1-ubyte"]
        images, labels = arrays[f"{prefix}-images-idx3-ubyte"], arrays[f"{prefix}-labels-idx1-ubyte"]
        if images.dtype != np.uint8 or images.ndim != 3:
            raise DataError(
                f"IDX images {str(img_path)!r} must be unsigned bytes of shape (n, height, width), "
                f"got {images.dtype} of shape {images.shape}"
            )
        if labels.dtype.kind not in "iu" or labels.ndim != 1:
            raise DataError(
                f"IDX labels {str(lab_path)!r} must be integers of shape (n,), got {labels.dtype} of shape {labels.shape}"
            )
        if labels.shape[0] != images.shape[0]:
            raise DataError(
                f"{str(lab_path)!r} holds {labels.shape[0]} labels but {str(img_path)!r} holds "
                f"{images.shape[0]} images: expected one label per image"
            )
        if labels.size and labels.min() < 0:
            raise DataError(f"IDX labels {str(lab_path)!r} must be >= 0, got {labels.min()}")
        parts[part] = (images, labels)
    if parts["train"][0].shape[1:] != parts["test"][0].shape[1:]:
        raise DataError(
            f"training and test images differ in size: {parts['train'][0].shape[1:]} "
            f"vs {parts['test'][0].shape[1:]}"
        )
    if n_classes is None:
        n_classes = 1 + max(int(labels.max()) if labels.size else 0 for _, labels in parts.values())
    n_train = parts["train"][0].shape[0]
    if n_train == 0:
        raise DataError(f"IDX images {str(files['train-images-idx3-ubyte'])!r} hold no image: expected at least 1")
    return Dataset(
        x_train=_images_to_tensor(parts["train"][0]),
        y_train=torch.from_numpy(parts["train"][1].astype(np.int64)),
        x_test=_images_to_tensor(parts["test"][0]),
        y_test=torch.from_numpy(parts["test"][1].astype(np.int64)),
        name=name,
        image_shape=tuple(int(s) for s in parts["train"][0].shape[1:]),
        n_valid=n_train // 6,
        n_classes=n_classes,
        source=source,
    )


def load_idx_folder(path: str | os.PathLike, verify: bool = False, *, name: str | None = None) -> Dataset:
    """Load any folder holding the four standard IDX files as a Dataset.

    The files are ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each optionally ``.gz``.
    Images must be unsigned bytes ``(n, height, width)``; they are scaled to [0, 1].

    Args:
        path: the folder.
        verify: check every file against the MNIST checksums (:data:`MNIST_SHA256`);
            only meaningful when the folder is meant to hold MNIST itself.
        name: the dataset's name; defaults to the folder's name.

    Returns:
        A Dataset with ``n_classes = max label + 1`` and ``n_valid = n_train // 6``
        (10,000 for the 60,000 images of MNIST and Fashion-MNIST).
    """
    folder = as_path("path", path)
    if not folder.is_dir():
        raise DataError(f"path must be a folder holding IDX files, got {str(folder)!r} (no such folder)")
    files, missing = find_files(folder)
    if missing:
        raise DataError(f"IDX folder {str(folder)!r} is missing {', '.join(missing)}")
    return _load_files(
        files, name=name or folder.name, source=str(folder), verify=bool(verify), n_classes=None
    )


def load_mnist(
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> Dataset:
    """Load MNIST: 60,000 training and 10,000 test images of 28x28 pixels, 10 classes.

    Looks in ``data_dir`` (or its ``mnist/`` subfolder), then ``$DEEPBELIEF_DATA`` (or
    its ``mnist/`` subfolder), then ``<cache_dir>/mnist``, and finally downloads into the
    latter (see :func:`download_mnist`). Every file's decompressed bytes are checked
    against :data:`MNIST_SHA256`.

    Args:
        data_dir: a folder to look in first.
        download: allow the network as a last resort; False never touches it.
        cache_dir: cache root; None means :func:`default_cache_dir`.
        min_contrast: ``patches`` only: keep the patches whose own standard deviation
            exceeds this (:func:`load_patches_dataset`); 0 keeps all.

    Returns:
        Dataset ``"mnist"``: ``x_train`` float32 ``(60000, 784)`` in [0, 1], ``y_train``
        int64 ``(60000,)``, ``x_test`` ``(10000, 784)``, ``y_test`` ``(10000,)``;
        ``split_validation()`` keeps the last 10,000 training images for validation.

    Raises:
        DataError: a checksum mismatch (naming the file and both digests), a malformed
            file, or no files anywhere (listing every place looked and how to fix it).
    """
    if not isinstance(download, bool):
        raise ConfigError(f"download must be True or False, got {download!r}")
    cache_root = default_cache_dir() if cache_dir is None else as_path("cache_dir", cache_dir)
    files, report = search(search_places("mnist", data_dir, cache_root, env_top_level=True))
    if files is None:
        hint = fix_hint("mnist", cache_root, "; or allow the download (download=True)")
        if not download:
            raise not_found("MNIST", report + ["download: disabled (download=False)"], hint)
        try:
            folder = download_mnist(cache_root)
        except DataError as exc:
            raise not_found("MNIST", report + [f"download: failed ({exc})"], hint) from exc
        files, missing = find_files(folder)
        if missing:  # a replaced download_mnist that did not deliver
            raise not_found("MNIST", report + [f"download: {folder} (missing {', '.join(missing)})"], hint)
    source = str(next(iter(files.values())).parent)
    return _load_files(files, name="mnist", source=source, verify=True, n_classes=10)


def load_fashion_mnist(
    data_dir: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
) -> Dataset:
    """Load Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): MNIST's format, ten kinds of clothing.

    Looks in ``data_dir`` (or its ``fashion-mnist/`` subfolder), then
    ``$DEEPBELIEF_DATA/fashion-mnist``, ``<cache_dir>/fashion-mnist`` and
    ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``). Nothing is
    downloaded and no checksum is checked.

    Returns:
        Dataset ``"fashion-mnist"``, shaped as MNIST's (see :func:`load_mnist`).
    """
    cache_root = default_cache_dir() if cache_dir is None else as_path("cache_dir", cache_dir)
    places = search_places("fashion-mnist", data_dir, cache_root, env_top_level=False)
    places.append(("system", FASHION_MNIST_SYSTEM_DIR))
    files, report = search(places)
    if files is None:
        hint = fix_hint("fashion-mnist", cache_root) + (
            "; on Debian or Ubuntu, `apt-get install dataset-fashion-mnist`; the files are also "
            "at https://github.com/zalandoresearch/fashion-mnist"
        )
        raise not_found("Fashion-MNIST", report, hint)
    source = str(next(iter(files.values())).parent)
    return _load_files(files, name="fashion-mnist", source=source, verify=False, n_classes=10)
