"""The ``Dataset`` every loader returns: one contiguous float32 tensor per split, values in
[0, 1], int64 labels; validation splits and stochastic binarisation."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch

from deepbelief.errors import DataError, check_int

#: The usual model-selection split: the last 10,000 training images.
MNIST_N_VALID = 10_000


# --------------------------------------------------------------------------- Dataset


class Split(NamedTuple):
    """One part of a dataset: ``x`` float32 ``(n, n_features)`` in [0, 1], ``y`` int64 ``(n,)``."""

    x: torch.Tensor
    y: torch.Tensor


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled image dataset, one contiguous tensor per split.

    Attributes:
        x_train: float32 ``(n_train, n_features)``, values in [0, 1].
        y_train: int64 ``(n_train,)``, values in ``[0, n_classes)``.
        x_test: float32 ``(n_test, n_features)``.
        y_test: int64 ``(n_test,)``.
        name: registry name, e.g. ``"mnist"`` or ``"mnist-binarized"``.
        image_shape: ``(height, width)``; ``height * width == n_features``.
        n_valid: default size of the validation set cut from the end of the training set
            by :meth:`split_validation` (10,000 for MNIST, 297 for digits).
        n_classes: number of classes.
        source: where the data was read from (a folder, or the library it came with).
    """

    x_train: torch.Tensor = field(repr=False)
    y_train: torch.Tensor = field(repr=False)
    x_test: torch.Tensor = field(repr=False)
    y_test: torch.Tensor = field(repr=False)
    name: str
    image_shape: tuple[int, int] = (28, 28)
    n_valid: int = MNIST_N_VALID
    n_classes: int = 10
    source: str = ""

    def __post_init__(self) -> None:
        n_features = math.prod(self.image_shape)
        for part in ("train", "test"):
            x, y = getattr(self, f"x_{part}"), getattr(self, f"y_{part}")
            if not isinstance(x, torch.Tensor) or x.dtype != torch.float32 or x.dim() != 2:
                raise DataError(f"x_{part} must be a 2-D float32 tensor, got {_describe_tensor(x)}")
            if x.shape[1] != n_features:
                raise DataError(
                    f"x_{part} must have {n_features} columns for image_shape {self.image_shape}, got {x.shape[1]}"
                )
            if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.shape != (x.shape[0],):
                raise DataError(f"y_{part} must be an int64 tensor of shape ({x.shape[0]},), got {_describe_tensor(y)}")
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.n_classes):
                raise DataError(
                    f"y_{part} must lie in [0, {self.n_classes - 1}], got values in [{int(y.min())}, {int(y.max())}]"
                )
        if not 0 <= self.n_valid < self.x_train.shape[0]:
            raise DataError(f"n_valid must be in [0, {self.x_train.shape[0] - 1}] (n_train - 1), got {self.n_valid}")

    @property
    def n_features(self) -> int:
        """Number of pixels per image."""
        return int(self.x_train.shape[1])

    @property
    def train(self) -> Split:
        """The whole training set ``(x_train, y_train)``."""
        return Split(self.x_train, self.y_train)

    @property
    def test(self) -> Split:
        """The test set ``(x_test, y_test)``."""
        return Split(self.x_test, self.y_test)

    def split_validation(self, n_valid: int | None = None) -> tuple[Split, Split]:
        """Cut the last ``n_valid`` training examples off as a validation set.

        Args:
            n_valid: size of the validation set; ``None`` uses :attr:`n_valid` (the last
                10,000 images for MNIST, the usual model-selection split).

        Returns:
            ``(train, valid)``: ``train.x`` is ``(n_train - n_valid, n_features)`` and
            ``valid.x`` is ``(n_valid, n_features)``. Both are views of ``x_train``, still
            contiguous; the test set is untouched.
        """
        n_train = int(self.x_train.shape[0])
        n = check_int("n_valid", self.n_valid if n_valid is None else n_valid, minimum=1, maximum=n_train - 1)
        cut = n_train - n
        return (
            Split(self.x_train[:cut], self.y_train[:cut]),
            Split(self.x_train[cut:], self.y_train[cut:]),
        )

    def binarized(self, seed: int = 0) -> Dataset:
        """Return a copy whose images are stochastically binarised once (see :func:`binarize`).

        One generator seeded with ``seed`` draws the training set, then the test set, so
        the two never share noise. Labels are shared, not copied.
        """
        seed = check_int("seed", seed, minimum=0)
        generator = torch.Generator(device=self.x_train.device).manual_seed(seed)
        name = self.name if self.name.endswith("-binarized") else f"{self.name}-binarized"
        return dataclasses.replace(
            self,
            x_train=binarize(self.x_train, generator=generator),
            x_test=binarize(self.x_test, generator=generator),
            name=name,
        )

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, train={tuple(self.x_train.shape)}, test={tuple(self.x_test.shape)}, "
            f"image_shape={self.image_shape}, n_valid={self.n_valid}, n_classes={self.n_classes}, "
            f"source={self.source!r})"
        )


def _describe_tensor(t: Any) -> str:
    if isinstance(t, torch.Tensor):
        return f"{t.dtype} tensor of shape {tuple(t.shape)}"
    return type(t).__name__


def _images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(n, h, w)`` -> contiguous float32 ``(n, h * w)`` in [0, 1]."""
    flat = torch.from_numpy(np.ascontiguousarray(images).reshape(images.shape[0], -1))
    return flat.to(torch.float32).div_(255.0)


# --------------------------------------------------------------------------- binarisation


def binarize(x: torch.Tensor, seed: int = 0, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Stochastic binarisation: each entry becomes 1 with probability equal to its intensity.

    ``b_ij ~ Bernoulli(x_ij)``, drawn once and then kept fixed, as in Salakhutdinov &
    Murray (2008), "On the quantitative analysis of deep belief networks": the binarised
    set is a sample from the intensities read as probabilities, the standard benchmark for
    density models with binary visible units.

    Args:
        x: float tensor of any shape, e.g. ``(n, n_features)``, values in [0, 1]. Not modified.
        seed: seeds a fresh ``torch.Generator`` on ``x``'s device when ``generator`` is None.
        generator: an explicit generator to draw from (and advance) instead.

    Returns:
        A tensor with ``x``'s shape, dtype and device holding only 0.0 and 1.0. The same
        seed on the same device gives the same result.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise DataError(f"x must be a floating-point torch tensor of intensities in [0, 1], got {_describe_tensor(x)}")
    if x.numel():
        lo, hi = float(x.min()), float(x.max())
        if not (0.0 <= lo and hi <= 1.0):  # also catches NaN
            raise DataError(f"x must lie in [0, 1] to be read as probabilities, got values in [{lo:g}, {hi:g}]")
    if generator is None:
        seed = check_int("seed", seed, minimum=0)
        generator = torch.Generator(device=x.device).manual_seed(seed)
    return torch.bernoulli(x, generator=generator)
