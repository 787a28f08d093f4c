"""Image tiles of filters and samples, written as PNG with no plotting library.

``write_png`` is a minimal PNG encoder (8-bit greyscale, zlib) so that ``show-filters`` and
``sample`` work on a bare install; curves (``plot_metrics``) import matplotlib lazily.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from deepbelief.errors import ConfigError, DataError
from deepbelief.io import atomic_write_bytes


def tile_images(images, shape: tuple[int, int], *, ncols: int | None = None, pad: int = 1,
                normalize: str = "each") -> np.ndarray:
    """Arrange (n, h*w) images into one uint8 grid, shape (rows*(h+pad)+pad, cols*(w+pad)+pad).

    ``normalize``: ``each`` scales every tile to its own [min, max] (filters), ``none``
    clips values to [0, 1] (pixel intensities and samples).
    """
    x = images.detach().cpu().double().numpy() if isinstance(images, torch.Tensor) else np.asarray(images, float)
    h, w = shape
    if x.ndim != 2 or x.shape[1] != h * w:
        raise DataError(f"images must have shape (n, {h * w}) for tiles of {h}x{w}, got {x.shape}")
    n = x.shape[0]
    if n == 0:
        raise DataError("images must hold at least one image, got 0")
    if normalize == "each":
        lo = x.min(1, keepdims=True)
        hi = x.max(1, keepdims=True)
        x = (x - lo) / np.where(hi > lo, hi - lo, 1.0)
    elif normalize == "none":
        x = np.clip(x, 0.0, 1.0)
    else:
        raise ConfigError(f"normalize must be 'each' or 'none', got {normalize!r}")
    ncols = ncols or int(np.ceil(np.sqrt(n)))
    nrows = int(np.ceil(n / ncols))
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad), 0.5)
    for i in range(n):
        r, c = divmod(i, ncols)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = \
            x[i].reshape(h, w)
    return (grid * 255 + 0.5).astype(np.uint8)


def png_bytes(gray: np.ndarray, scale: int = 1) -> bytes:
    """Encode a 2-D uint8 array as a greyscale PNG, optionally enlarged ``scale`` times."""
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise DataError(f"png image must be a 2-D uint8 array, got shape {gray.shape} dtype {gray.dtype}")
    if scale > 1:
        gray = np.kron(gray, np.ones((scale, scale), dtype=np.uint8))
    h, w = gray.shape
    raw = b"".join(b"\x00" + gray[i].tobytes() for i in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def save_tiles(path, images, shape, *, ncols=None, normalize="each", scale: int = 2) -> Path:
    """Tile ``images`` and write them atomically as a PNG file; returns the path."""
    path = Path(path)
    atomic_write_bytes(path, png_bytes(tile_images(images, shape, ncols=ncols, normalize=normalize), scale))
    return path


def image_shape_for(n_pixels: int) -> tuple[int, int]:
    """Guess a square image shape for ``n_pixels`` (784 -> 28x28, 64 -> 8x8)."""
    side = int(round(n_pixels ** 0.5))
    if side * side != n_pixels:
        raise DataError(f"cannot show {n_pixels} inputs as square images; pass the image shape explicitly")
    return side, side


def plot_metrics(path, rows: list[dict], metrics: list[str] | None = None, *, title: str = "") -> Path:
    """One panel per metric, one line per (phase, layer), written as a PNG."""
    from deepbelief.metrics_log import curves_from_rows

    if not rows:
        raise ConfigError("the metrics file holds no rows to plot")
    skip = {"phase", "layer", "epoch", "seconds", "lr", "momentum", "best_epoch"}
    names = metrics or [k for k in dict.fromkeys(k for r in rows for k in r) if k not in skip]
    missing = [m for m in names if not any(m in r for r in rows)]
    if missing:
        raise ConfigError(f"--metrics names {missing} that are not in the file")
    plt = _pyplot()
    ncols = min(3, len(names))
    nrows = -(-len(names) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.4 * ncols, 3.4 * nrows), dpi=110, squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for ax, m in zip(axes.flat, names):
        for label, ys in curves_from_rows(rows, m).items():
            ax.plot(range(1, len(ys) + 1), ys, label=label, marker="o", markersize=2.5)
        ax.set_title(m)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return figure_png(path, fig)


def _pyplot():
    """matplotlib.pyplot with the file-only Agg backend, or a ConfigError saying how to install it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - depends on the environment
        raise ConfigError("plotting needs matplotlib: pip install 'deepbelief[plot]'") from None
    return plt


def figure_png(path, fig) -> Path:
    """Write a matplotlib figure atomically as PNG and close it."""
    import io as _io

    buf = _io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    _pyplot().close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)
