"""8x8 natural-image patches for real-valued (Gaussian) visible units."""

from __future__ import annotations


import numpy as np
import torch

from deepbelief.errors import DataError, check_float, check_int
from deepbelief.data.dataset import Dataset

# Natural image patches from the two photographs scikit-learn ships (china.jpg, flower.jpg,
# 427x640 each), cut into 32x32 blocks coloured like a checkerboard: training patches lie
# inside "white" blocks, test patches inside "black" ones, so no test pixel was ever seen
# in training while both sets sample the whole of both scenes.
PATCHES_SIZE = 8
PATCHES_N_TRAIN = 40_000
PATCHES_N_TEST = 10_000
PATCHES_N_VALID = 5_000
PATCHES_BLOCK = 32


def select_contrast(x, min_std: float):
    """The rows of ``x`` (patches) whose own standard deviation (the unbiased one, over
    the row's components, computed in float64) exceeds ``min_std``; all of ``x`` when
    ``min_std`` is 0. Works on torch tensors and numpy arrays and returns the same kind."""
    min_std = check_float("min_contrast", min_std, minimum=0.0)
    if min_std <= 0:
        return x
    if isinstance(x, np.ndarray):
        return x[x.astype(np.float64).std(1, ddof=1) > min_std]
    x = torch.as_tensor(x)
    return x[x.double().std(1) > min_std]


# candidate patches drawn per kept patch before load_patches_dataset gives up on min_contrast
PATCHES_MAX_DRAWS_PER_PATCH = 200


def load_patches_dataset(size: int = PATCHES_SIZE, *, n_train: int = PATCHES_N_TRAIN,
                         n_test: int = PATCHES_N_TEST, seed: int = 0, min_contrast: float = 0.0) -> Dataset:
    """Grey natural image patches cut from ``sklearn.datasets.load_sample_images``.

    The photographs are converted to grey (ITU-R 601 luma, 0.299 R + 0.587 G + 0.114 B)
    in [0, 1]. Patch positions are drawn uniformly with ``numpy.random.default_rng(seed)``,
    half from each photograph; training patches lie entirely inside the "white" 32x32
    blocks of a checkerboard over the photograph, test patches inside the "black" ones. The
    label is the photograph (0 china, 1 flower). No file or network is needed (the JPEGs ship with scikit-learn, read with
    Pillow). For Gaussian RBMs standardise or whiten them first (``deepbelief.transforms``).

    ``min_contrast`` > 0 keeps only patches whose own standard deviation (grey levels in
    [0, 1], see :func:`select_contrast`) exceeds it, in training and test set alike: about
    60% of the patches are flat (sky, walls) at 0.03, and Gaussian RBMs model the rest far
    better (docs/3-units.md, "Natural image patches"). Candidate patches are then drawn in
    rounds from the same generator, per photograph, until ``n_train`` / ``n_test`` have
    passed, so the sizes, and the half-and-half split between the photographs, hold; if a
    photograph yields too few (after ``PATCHES_MAX_DRAWS_PER_PATCH`` candidates per patch
    asked for) a ``DataError`` names ``min_contrast``. ``min_contrast=0`` gives exactly the
    patches of earlier versions.

    Returns:
        Dataset ``"patches"``: ``x_train`` float32 ``(n_train, size*size)``, ``x_test``
        ``(n_test, size*size)``, ``image_shape=(size, size)``, ``n_valid=n_train // 8``.
    """
    size = check_int("size", size, minimum=2, maximum=64)
    n_train = check_int("n_train", n_train, minimum=2)
    n_test = check_int("n_test", n_test, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    min_contrast = check_float("min_contrast", min_contrast, minimum=0.0, maximum=1.0)
    grey = _grey_photographs()
    rng = np.random.default_rng(seed)
    out = {}
    for part, n in (("train", n_train), ("test", n_test)):
        xs, ys = [], []
        for label, img in enumerate(grey):
            h, w = img.shape
            blk = max(PATCHES_BLOCK, 2 * size)
            bi, bj = np.meshgrid(np.arange(h // blk), np.arange(w // blk), indexing="ij")
            keep = (bi + bj) % 2 == (0 if part == "train" else 1)  # checkerboard of blocks
            bi, bj = bi[keep], bj[keep]
            m = n // len(grey) + (1 if label < n % len(grey) else 0)

            def draw(k):
                which = rng.integers(0, bi.size, size=k)
                r = bi[which] * blk + rng.integers(0, blk - size + 1, size=k)
                c = bj[which] * blk + rng.integers(0, blk - size + 1, size=k)
                d = np.arange(size)
                # (k, size, size) by fancy indexing: no Python loop over patches
                patches = img[r[:, None, None] + d[None, :, None], c[:, None, None] + d[None, None, :]]
                return patches.reshape(k, size * size)

            patches = draw(m) if min_contrast == 0.0 else _draw_contrasted(draw, m, min_contrast, part, label)
            xs.append(patches)
            ys.append(np.full(m, label, dtype=np.int64))
        order = rng.permutation(n)
        out[part] = (np.concatenate(xs)[order].astype(np.float32), np.concatenate(ys)[order])
    return Dataset(
        x_train=torch.from_numpy(np.ascontiguousarray(out["train"][0])),
        y_train=torch.from_numpy(np.ascontiguousarray(out["train"][1])),
        x_test=torch.from_numpy(np.ascontiguousarray(out["test"][0])),
        y_test=torch.from_numpy(np.ascontiguousarray(out["test"][1])),
        name="patches",
        image_shape=(size, size),
        n_valid=max(1, n_train // 8),
        n_classes=2,
        source="sklearn.datasets.load_sample_images",
    )


def _grey_photographs() -> list[np.ndarray]:
    """scikit-learn's two sample photographs in grey (ITU-R 601 luma), values in [0, 1]."""
    try:
        from sklearn.datasets import load_sample_images
    except ImportError as exc:  # pragma: no cover - sklearn is a dependency
        raise DataError(f"the patches dataset needs scikit-learn's sample images: {exc}") from None
    try:
        images = load_sample_images().images
    except ImportError as exc:  # pragma: no cover - Pillow missing
        raise DataError(f"the patches dataset needs Pillow to read scikit-learn's JPEGs: {exc}") from None
    return [np.asarray(im, dtype=np.float64) @ np.array([0.299, 0.587, 0.114]) / 255.0 for im in images]


def _draw_contrasted(draw, m: int, min_contrast: float, part: str, label: int) -> np.ndarray:
    """``m`` patches whose std exceeds ``min_contrast``, from rounds of ``draw(k)`` candidates
    sized by the acceptance rate so far (``load_patches_dataset``)."""
    kept, n_kept, drawn = [], 0, 0
    while n_kept < m:
        if drawn >= PATCHES_MAX_DRAWS_PER_PATCH * m:
            raise DataError(
                f"min_contrast={min_contrast} keeps only {n_kept} of {drawn} candidate {part} patches "
                f"of photograph {label} ({m} wanted); lower min_contrast or n_{part}")
        rate = max(n_kept / drawn, 0.01) if drawn else 0.5
        k = min(int((m - n_kept) / rate * 1.1) + 64, PATCHES_MAX_DRAWS_PER_PATCH * m - drawn)
        cand = select_contrast(draw(k), min_contrast)
        drawn += k
        kept.append(cand[: m - n_kept])
        n_kept += len(kept[-1])
    return np.concatenate(kept)
