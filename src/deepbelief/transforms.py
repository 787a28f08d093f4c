"""Input transforms for real-valued data, fitted once and kept with the model.

Gaussian visible units model each component with a variance sigma_i^2 that is bounded
(units.Gaussian clamps log sigma^2), so the data must be on a known scale: the usual
practice (Hinton's practical guide 2010, section 13.2; Krizhevsky 2009 for natural image
patches) is to standardise every component to zero mean and unit variance, or to whiten
the data so that the RBM does not spend its hidden units on the strong pairwise
correlations of neighbouring pixels.

- ``Standardize``: x' = (x - mean) / std, per component.
- ``Whiten``: x' = (x - mean) U diag(1/sqrt(lambda + eps)) [U^T], PCA (optionally keeping
  ``n_components``) or ZCA (rotated back, so x' stays an image and filters look local).
- ``row_center``: both can first subtract each row's own mean (the "DC component" of an
  image patch, which carries the patch's brightness, not its structure).

A fitted transform is plain data: ``to_dict()`` gives JSON (stored in a model file's
metadata as ``input_transform``, see ``io.save_model``) and ``transform_from_dict`` rebuilds
it, so new data is transformed exactly like the training data. Shapes: x (n, d).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from deepbelief.errors import ConfigError, DataError, as_data, check_choice, check_float, check_int


def _rows(x: Tensor, row_center: bool) -> Tensor:
    return x - x.mean(1, keepdim=True) if row_center else x


class Standardize:
    """Per-component standardisation x' = (x - mean) / std.

    Args:
        min_std: components whose standard deviation is below this (constant border
            pixels of MNIST, for instance) are divided by ``min_std`` instead, so they stay
            near 0 rather than being blown up to unit variance.
        row_center: subtract each row's mean first (see the module docstring).
    """

    kind = "standardize"

    def __init__(self, *, min_std: float = 1e-2, row_center: bool = False):
        self.min_std = check_float("min_std", min_std, minimum=0.0, strict_min=True)
        self.row_center = bool(row_center)
        self.mean: Tensor | None = None
        self.std: Tensor | None = None

    def fit(self, x) -> "Standardize":
        x = _rows(as_data("x", x, dtype=torch.float64), self.row_center)
        if x.shape[0] < 2:
            raise DataError(f"x must have at least 2 rows to estimate a variance, got {x.shape[0]}")
        self.mean = x.mean(0)
        self.std = x.std(0).clamp_min(self.min_std)
        return self

    def _check(self, x) -> Tensor:
        if self.mean is None:
            raise ConfigError(f"{type(self).__name__} must be fitted (call fit) before it transforms data")
        t = x if isinstance(x, Tensor) else as_data("x", x)
        if t.dim() != 2 or t.shape[1] != self.mean.shape[0]:
            raise DataError(f"x must have shape (n, {self.mean.shape[0]}), got {tuple(t.shape)}")
        return t

    def __call__(self, x) -> Tensor:
        """Transform ``x`` (n, d) on its own device and dtype; the input is not modified."""
        x = self._check(x)
        mu, sd = self.mean.to(x.device, x.dtype), self.std.to(x.device, x.dtype)
        return (_rows(x, self.row_center) - mu) / sd

    def inverse(self, y: Tensor) -> Tensor:
        """Map transformed data back to the input space (up to the removed row means)."""
        self._check(y)
        return y * self.std.to(y.device, y.dtype) + self.mean.to(y.device, y.dtype)

    def linear_part(self) -> Tensor:
        """The matrix A (d, d') with x' = (x - .) @ A: maps filters on x' back onto x."""
        return torch.diag(1.0 / self.std)

    def to_dict(self) -> dict:
        if self.mean is None:
            raise ConfigError("Standardize must be fitted (call fit) before it is saved")
        return {"type": self.kind, "mean": self.mean.tolist(), "std": self.std.tolist(),
                "min_std": self.min_std, "row_center": self.row_center}

    @classmethod
    def from_dict(cls, d: dict) -> "Standardize":
        t = cls(min_std=d.get("min_std", 1e-2), row_center=d.get("row_center", False))
        t.mean = torch.tensor(d["mean"], dtype=torch.float64)
        t.std = torch.tensor(d["std"], dtype=torch.float64)
        if t.mean.shape != t.std.shape or t.mean.dim() != 1:
            raise ConfigError(f"standardize transform needs mean and std of one length, got "
                              f"{tuple(t.mean.shape)} and {tuple(t.std.shape)}")
        return t


class Whiten(Standardize):
    """PCA or ZCA whitening: x' = (x - mean) U diag((lambda + eps)^-1/2) [U^T].

    ``lambda``, ``U`` are the eigenvalues and eigenvectors of the data covariance. ``eps``
    (relative to the mean eigenvalue) regularises the small eigenvalues: it stops pixel
    noise from being amplified into unit-variance directions. One scalar then rescales the
    result so that the components' variances average 1; with eps = 0 the covariance of x'
    is the identity.
    ``method="zca"`` rotates back (x' has d components and looks like an image, Bell &
    Sejnowski 1997); ``method="pca"`` keeps the ``n_components`` leading components.
    """

    kind = "whiten"

    def __init__(self, *, method: str = "zca", eps: float = 0.1, n_components: int | None = None,
                 row_center: bool = False):
        super().__init__(row_center=row_center)
        self.method = check_choice("method", method, {"zca", "pca"})
        self.eps = check_float("eps", eps, minimum=0.0)
        if n_components is not None and method == "zca":
            raise ConfigError(f"n_components applies to method='pca' only, got n_components={n_components} "
                              "with method='zca'")
        self.n_components = None if n_components is None else check_int("n_components", n_components, minimum=1)
        self.matrix: Tensor | None = None

    def fit(self, x) -> "Whiten":
        x = _rows(as_data("x", x, dtype=torch.float64), self.row_center)
        n, d = x.shape
        if n < 2:
            raise DataError(f"x must have at least 2 rows to estimate a covariance, got {n}")
        k = self.n_components or d
        if k > d:
            raise ConfigError(f"n_components must be <= the number of features ({d}), got {k}")
        self.mean = x.mean(0)
        xc = x - self.mean
        cov = xc.T @ xc / (n - 1)
        lam, u = torch.linalg.eigh(cov)  # ascending
        lam, u = lam.flip(0).clamp_min(0.0), u.flip(1)
        if self.eps == 0.0 and float(lam[k - 1]) <= 1e-12 * float(lam[0]):
            raise DataError("the data covariance is singular; whiten with eps > 0 or fewer n_components")
        # eps is relative to the mean eigenvalue, so it means the same on any data scale
        scale = 1.0 / torch.sqrt(lam[:k] + self.eps * float(lam.mean()))
        m = u[:, :k] * scale  # (d, k)
        m = m @ u[:, :k].T if self.method == "zca" else m
        # regularised whitening leaves the components with variance < 1: one scalar brings
        # the average back to 1, the scale Gaussian units with log_var ~ 0 expect
        m = m / (xc @ m).std(0).pow(2).mean().sqrt()
        self.matrix = m
        self.std = torch.ones(d, dtype=torch.float64)  # unused; keeps the Standardize checks
        return self

    def __call__(self, x) -> Tensor:
        x = self._check(x)
        mu, m = self.mean.to(x.device, x.dtype), self.matrix.to(x.device, x.dtype)
        return (_rows(x, self.row_center) - mu) @ m

    def inverse(self, y: Tensor) -> Tensor:
        if self.matrix is None:
            raise ConfigError("Whiten must be fitted (call fit) before it transforms data")
        pinv = torch.linalg.pinv(self.matrix).to(y.device, y.dtype)
        return y @ pinv + self.mean.to(y.device, y.dtype)

    def linear_part(self) -> Tensor:
        return self.matrix

    def to_dict(self) -> dict:
        if self.matrix is None:
            raise ConfigError("Whiten must be fitted (call fit) before it is saved")
        return {"type": self.kind, "method": self.method, "eps": self.eps, "n_components": self.n_components,
                "row_center": self.row_center, "mean": self.mean.tolist(), "matrix": self.matrix.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "Whiten":
        t = cls(method=d.get("method", "zca"), eps=d.get("eps", 0.1), n_components=d.get("n_components"),
                row_center=d.get("row_center", False))
        t.mean = torch.tensor(d["mean"], dtype=torch.float64)
        t.matrix = torch.tensor(d["matrix"], dtype=torch.float64)
        if t.matrix.dim() != 2 or t.matrix.shape[0] != t.mean.shape[0]:
            raise ConfigError(f"whiten transform needs a (d, k) matrix for a mean of length {t.mean.shape[0]}, "
                              f"got {tuple(t.matrix.shape)}")
        t.std = torch.ones_like(t.mean)
        return t


TRANSFORMS = {"standardize": Standardize, "whiten": Whiten}


def make_transform(name: str, **options) -> Standardize:
    """Build an unfitted transform by name: ``standardize``, ``zca`` or ``pca``."""
    check_choice("transform", name, {"standardize", "zca", "pca"})
    if name == "standardize":
        return Standardize(**options)
    return Whiten(method=name, **options)


def transform_from_dict(d: dict | None):
    """Rebuild a fitted transform from ``to_dict()`` output (None -> None)."""
    if d is None:
        return None
    if not isinstance(d, dict) or d.get("type") not in TRANSFORMS:
        raise ConfigError(f"input_transform must be a dict with type in {sorted(TRANSFORMS)}, got {d!r:.80}")
    try:
        return TRANSFORMS[d["type"]].from_dict(d)
    except KeyError as exc:
        raise ConfigError(f"input_transform of type {d['type']!r} is missing key {exc}") from None


def log_jacobian(d: dict | None) -> tuple[float, str | None]:
    """log |det| of the linear part of the input transform stored as ``d`` (a model file's
    ``input_transform``), so that log p(x) = log p(x') + it
    (change of variables); and a note when the transform is not invertible (row-centring
    drops the constant direction, PCA keeps fewer components), in which case the density
    is reported in the transformed space (jacobian 0)."""
    t = transform_from_dict(d)
    if t is None:
        return 0.0, None
    a = t.linear_part()
    if t.row_center or a.shape[0] != a.shape[1]:
        why = "row-centred" if t.row_center else f"{a.shape[1]} of {a.shape[0]} PCA components"
        return 0.0, (f"the input transform is not invertible ({why}): the log-likelihood is the density "
                     "of the transformed data, not comparable with raw-pixel densities")
    if t.kind == "standardize":  # log p(x) = log p(z) - sum log sd
        return -float(sum(math.log(s) for s in t.std.tolist())), None
    return float(torch.linalg.slogdet(a.double())[1]), None  # x' = (x - m) A
