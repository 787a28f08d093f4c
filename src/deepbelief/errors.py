"""The library's error types and the small validators every public entry point uses.

Every message names the parameter, what was expected and what was received, so a user
can fix the call without reading the source (STYLE.md, habit 6).
"""

from __future__ import annotations

import math
from typing import Any

import torch


class DeepBeliefError(Exception):
    """Base class of every error the library raises on purpose."""


class ConfigError(DeepBeliefError, ValueError):
    """A hyper-parameter, option or argument is out of its allowed range or of the wrong type."""


class DataError(DeepBeliefError, ValueError):
    """Input data is malformed: wrong shape, dtype, range, non-finite values, corrupt files."""


class ModelFileError(DeepBeliefError):
    """A model or checkpoint file is missing, corrupt, tampered with or of another version."""


class DivergenceError(DeepBeliefError, FloatingPointError):
    """Training produced non-finite parameters or an exploding reconstruction error."""


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_int(name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``value`` as an int, or raise ConfigError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int,)) and not (
        hasattr(value, "__index__") and not isinstance(value, float)
    ):
        raise ConfigError(f"{name} must be an integer, got {_show(value)} ({type(value).__name__})")
    return _in_range(name, int(value), minimum, maximum)


def check_float(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    strict_min: bool = False,
) -> float:
    """Return ``value`` as a finite float in range, or raise ConfigError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number, got {_show(value)} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be finite, got {value}")
    return _in_range(name, value, minimum, maximum, strict_min)


def _in_range(name: str, value, minimum, maximum, strict_min: bool = False):
    """``value`` if minimum <= value <= maximum (minimum < value with ``strict_min``)."""
    if minimum is not None and (value <= minimum if strict_min else value < minimum):
        raise ConfigError(f"{name} must be {'>' if strict_min else '>='} {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be <= {maximum}, got {value}")
    return value


def memory_limit_bytes(device: torch.device | str | None = None) -> int:
    """What one allocation may use at most: the device's total memory (this machine's
    physical RAM for the CPU). A tensor larger than that can never be allocated, so a
    request for one is refused before trying instead of failing deep inside PyTorch."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda" and torch.cuda.is_available():
        return int(torch.cuda.get_device_properties(dev).total_memory)
    try:
        import os

        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return 1 << 40


def _gb(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:,.1f} GB"


def check_memory(name: str, n_elements: int, what: str, *, device=None, copies: int = 1,
                 bytes_per: int = 4) -> None:
    """Raise ConfigError if ``copies`` float32 tensors of ``n_elements`` cannot fit in the
    device's memory (``memory_limit_bytes``); the message gives the estimate. Tensors on
    PyTorch's ``meta`` device cost nothing and are not checked."""
    dev = torch.device(device) if device is not None else torch.empty(0).device
    if dev.type == "meta":
        return
    need = int(n_elements) * bytes_per * copies
    have = memory_limit_bytes(dev)
    if need > have:
        times = f" x {copies} copies" if copies > 1 else ""
        raise ConfigError(
            f"{name} is too large for this machine: {what} need about {_gb(need)} "
            f"({int(n_elements):,} values x {bytes_per} bytes{times}), but {dev.type} memory is {_gb(have)}"
        )


def not_a_file(path) -> str:
    """Why ``path`` cannot be read as a file, for messages: "is a folder, not a file",
    "is not a regular file" or "does not exist"."""
    from pathlib import Path

    p = Path(path)
    if p.is_dir():
        return "is a folder, not a file"
    if p.exists():
        return "is not a regular file"
    return "does not exist"


def check_fields(cls, d: dict, what: str) -> dict:
    """``d`` if every key is a field of the dataclass ``cls``, else a ``ConfigError`` naming
    the unknown keys and the valid ones (``what``: e.g. "RBM training option")."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"unknown {what}(s) {unknown}; valid: {sorted(names)}")
    return d


def check_choice(name: str, value: Any, choices) -> str:
    """Raise ConfigError unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"{name} must be one of {sorted(choices)}, got {_show(value)}")
    return value


def as_data(
    name: str,
    x: Any,
    *,
    n_features: int | None = None,
    unit_interval: bool = False,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    min_rows: int = 1,
) -> torch.Tensor:
    """Validate a 2-D data matrix and return it as a contiguous tensor.

    Accepts torch tensors and anything ``numpy.asarray`` understands. Checks: 2-D, at least
    ``min_rows`` rows, ``n_features`` columns, real numeric dtype, all finite and, for
    Bernoulli visibles, inside [0, 1]. The input is never modified.
    """
    if isinstance(x, torch.Tensor):
        t = x
    else:
        import numpy as np

        try:
            arr = np.asarray(x)
        except Exception as exc:  # ragged lists and the like
            raise DataError(f"{name} must be a 2-D numeric array, could not convert: {exc}") from None
        if arr.dtype == object or arr.dtype.kind not in "biuf":
            raise DataError(f"{name} must have a real numeric dtype, got dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.dtype == torch.bool or t.is_complex() or not (t.is_floating_point() or t.dtype in (
        torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)):
        raise DataError(f"{name} must have a real numeric dtype, got {t.dtype}")
    if t.dim() != 2:
        raise DataError(f"{name} must be 2-D (n_samples, n_features), got shape {tuple(t.shape)}")
    if t.shape[0] < min_rows:
        raise DataError(f"{name} must have at least {min_rows} row(s), got {t.shape[0]}")
    if n_features is not None and t.shape[1] != n_features:
        raise DataError(f"{name} must have {n_features} features (columns), got {t.shape[1]}")
    t = t.to(device=device if device is not None else t.device, dtype=dtype)
    if t.is_floating_point():
        finite = torch.isfinite(t)
        if not bool(finite.all()):
            bad = int((~finite).sum())
            raise DataError(f"{name} must be finite, got {bad} NaN/inf value(s)")
    if unit_interval and t.numel():
        lo, hi = float(t.min()), float(t.max())
        if lo < 0.0 or hi > 1.0:
            raise DataError(
                f"{name} must lie in [0, 1] for Bernoulli visible units, got values in [{lo:g}, {hi:g}]"
            )
    return t.contiguous()


def as_labels(name: str, y: Any, *, n_classes: int, n_rows: int | None = None, device=None) -> torch.Tensor:
    """Validate integer class labels in ``[0, n_classes)`` and return an int64 tensor."""
    if isinstance(y, torch.Tensor):
        t = y
    else:
        import numpy as np

        arr = np.asarray(y)
        if arr.dtype.kind not in "biuf":
            raise DataError(f"{name} must hold integer class labels, got dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.is_complex():
        raise DataError(f"{name} must hold integer class labels, got dtype {t.dtype}")
    if t.is_floating_point():
        frac = (t != t.round()) | ~torch.isfinite(t)
        if bool(frac.any()):
            raise DataError(f"{name} must hold integer class labels, got non-integer value(s) such as "
                            f"{float(t[frac][0]):g}")
    if t.dim() != 1:
        raise DataError(f"{name} must be 1-D (n_samples,), got shape {tuple(t.shape)}")
    if n_rows is not None and t.shape[0] != n_rows:
        raise DataError(f"{name} must have {n_rows} entries (one per sample), got {t.shape[0]}")
    t = t.to(torch.int64)
    if t.numel():
        lo, hi = int(t.min()), int(t.max())
        if lo < 0 or hi >= n_classes:
            raise DataError(f"{name} must lie in [0, {n_classes - 1}], got values in [{lo}, {hi}]")
    return t.to(device) if device is not None else t


def check_generator(name: str, gen: Any, device: torch.device | str | None = None) -> torch.Generator:
    """Raise ConfigError unless ``gen`` is a torch.Generator (on ``device``'s type, if given)."""
    if not isinstance(gen, torch.Generator):
        raise ConfigError(
            f"{name} must be a torch.Generator (e.g. deepbelief.make_generator(seed, device)), got {_show(gen)}"
        )
    if device is not None and torch.device(device).type != gen.device.type:
        raise ConfigError(f"{name} must live on the model's device {torch.device(device)}, got one on {gen.device}")
    return gen


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Map ``auto|cpu|cuda|cuda:N`` to a torch.device, with a clear error if CUDA is absent."""
    if isinstance(device, torch.device):
        return device
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, str):
        raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {_show(device)}")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} was asked for but CUDA is not available; use --device cpu or auto")
        return torch.device(device)
    if device == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {_show(device)}")
