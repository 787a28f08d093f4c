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

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.client
import math
import os
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from deepbelief.errors import ConfigError, DataError, check_float, check_int
from deepbelief.io import output_mode

__all__ = [
    "DATASETS",
    "DATA_ENV_VAR",
    "MNIST_FILES",
    "MNIST_MIRRORS",
    "MNIST_SHA256",
    "Dataset",
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

#: Names accepted by :func:`load_dataset`; the first is the default.
DATASETS: tuple[str, ...] = ("digits", "mnist", "mnist-binarized", "fashion-mnist", "patches")

#: Environment variable naming a folder of datasets (files directly, or ``mnist/`` etc.).
DATA_ENV_VAR = "DEEPBELIEF_DATA"

#: The four IDX files of MNIST and Fashion-MNIST, without the optional ``.gz`` suffix.
MNIST_FILES: tuple[str, ...] = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

#: SHA-256 of the decompressed MNIST files (identical to the official distribution).
MNIST_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

#: Public mirrors serving ``<name>.gz`` for each of :data:`MNIST_FILES`, tried in turn.
MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

#: The usual model-selection split: the last 10,000 training images.
MNIST_N_VALID = 10_000

#: Where Debian's ``dataset-fashion-mnist`` package installs the files.
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")

# Embedded default: scikit-learn's 1,797 8x8 digits, shuffled once with default_rng(0);
# the first 1,297 are the training set (of which the last 297 validate), the rest test.
DIGITS_N_TEST = 500
DIGITS_N_VALID = 297
DIGITS_SEED = 0

# A header may not make the reader allocate without bound (see read_idx).
MAX_IDX_DIMS = 4
MAX_IDX_ELEMENTS = 2**31
# ... nor make a small gzip file inflate into more than this many bytes (EMNIST's largest
# file is ~0.55 GB; MNIST's training images 47 MB)
MAX_IDX_BYTES = 2**31
# The largest response accepted from a mirror (the training images are ~9.9 MB gzipped).
MAX_DOWNLOAD_BYTES = 64 * 2**20
DOWNLOAD_TIMEOUT_S = 30.0

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 16 * 2**20
# IDX type code -> big-endian element type, as in the format's definition
# (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT").
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


# --------------------------------------------------------------------------- IDX format


def read_idx(path: str | os.PathLike, *, sha256: str | None = None) -> np.ndarray:
    """Read one IDX file (gzip-compressed or raw) into a numpy array.

    The IDX header is two zero bytes, a type code (0x08 unsigned byte, 0x09 signed byte,
    0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions, then
    one big-endian uint32 per dimension; the payload follows in C order. Compression is
    detected from the gzip magic bytes, never from the file name.

    Args:
        path: the file.
        sha256: if given, the hex SHA-256 that the *decompressed* bytes (header and
            payload) must have.

    Returns:
        An array in native byte order with the declared shape, e.g. uint8 ``(n, 28, 28)``
        for images or ``(n,)`` for labels.

    Raises:
        DataError: naming the file, for an unreadable file, a corrupt gzip stream, a bad
            magic number, an unknown type code, more than :data:`MAX_IDX_DIMS` dimensions
            or :data:`MAX_IDX_ELEMENTS` elements, a payload longer or shorter than the
            product of the dimensions, or a checksum mismatch.
    """
    path = Path(path)
    compressed = False
    try:
        with open(path, "rb") as raw:
            compressed = raw.read(2) == _GZIP_MAGIC
            raw.seek(0)
            if compressed:
                with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                    return _read_idx_stream(path, stream, None, sha256)
            return _read_idx_stream(path, raw, os.fstat(raw.fileno()).st_size, sha256)
    except DataError:
        raise
    except (OSError, EOFError, zlib.error) as exc:
        kind = "gzip-compressed IDX file" if compressed else "IDX file"
        raise DataError(f"cannot read {kind} {str(path)!r}: {exc}") from exc


def _read_idx_stream(path: Path, stream, file_size: int | None, sha256: str | None) -> np.ndarray:
    """Parse an IDX stream; ``file_size`` is the exact size of a raw file, None for gzip."""
    where = f"IDX file {str(path)!r}"
    head = _read_at_most(stream, 4)
    if len(head) < 4:
        raise DataError(f"{where} is truncated: expected a 4-byte header, received {len(head)} byte(s)")
    if head[0] != 0 or head[1] != 0:
        raise DataError(
            f"{where} has a bad magic number: expected bytes 0x00 0x00 then type and rank, "
            f"received 0x{head[0]:02x} 0x{head[1]:02x} (not an IDX file?)"
        )
    type_code, ndim = head[2], head[3]
    if type_code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02x}" for c in _IDX_DTYPES)
        raise DataError(f"{where} has unsupported type code: expected one of {known}, received 0x{type_code:02x}")
    if not 1 <= ndim <= MAX_IDX_DIMS:
        raise DataError(f"{where} declares {ndim} dimensions: expected 1 to {MAX_IDX_DIMS}")
    dims_bytes = _read_at_most(stream, 4 * ndim)
    if len(dims_bytes) < 4 * ndim:
        raise DataError(
            f"{where} is truncated in its header: expected {4 * ndim} bytes of dimensions, "
            f"received {len(dims_bytes)}"
        )
    shape = tuple(int(d) for d in np.frombuffer(dims_bytes, dtype=">u4"))
    n_elements = math.prod(shape)
    # also cap the product of the non-zero sizes: (2^32-1, 2^32-1, 0) holds no element,
    # but no array library can represent that shape
    if max(n_elements, math.prod(d for d in shape if d)) > MAX_IDX_ELEMENTS:
        raise DataError(
            f"{where} declares shape {shape} = {n_elements} elements: expected at most "
            f"{MAX_IDX_ELEMENTS} (corrupt or malicious header)"
        )
    dtype = _IDX_DTYPES[type_code]
    header_len = 4 + 4 * ndim
    expected = n_elements * dtype.itemsize
    if expected > MAX_IDX_BYTES:
        raise DataError(
            f"{where} declares shape {shape} of {dtype.itemsize}-byte values = {expected} bytes: expected at "
            f"most {MAX_IDX_BYTES} (corrupt or malicious header)"
        )
    if file_size is not None and file_size - header_len != expected:
        # A raw file's size is known before reading: refuse without allocating anything.
        raise _payload_error(where, shape, expected, file_size - header_len, exact=True)
    # Reading one byte past the declared size is enough to detect trailing data in a gzip
    # stream without letting a decompression bomb run.
    payload = _read_at_most(stream, expected + 1)
    if len(payload) != expected:
        raise _payload_error(where, shape, expected, len(payload), exact=len(payload) < expected)
    if sha256 is not None:
        digest = hashlib.sha256(head)
        digest.update(dims_bytes)
        digest.update(payload)
        got = digest.hexdigest()
        if got != sha256.lower():
            raise DataError(
                f"checksum mismatch for {str(path)!r}: expected SHA-256 {sha256.lower()} of the "
                f"decompressed bytes, received {got}; the file is corrupt or not the expected "
                "one: delete it (a download replaces it) or copy a good one in its place"
            )
    array = np.frombuffer(payload, dtype=dtype, count=n_elements).reshape(shape)
    return array if dtype.itemsize == 1 else array.astype(dtype.newbyteorder("="))


def _payload_error(where: str, shape: tuple[int, ...], expected: int, received: int, *, exact: bool) -> DataError:
    amount = f"{received}" if exact else f"more than {expected}"
    what = "truncated" if received < expected else "followed by trailing bytes"
    return DataError(
        f"{where} payload is {what}: shape {shape} needs exactly {expected} bytes, received {amount}"
    )


def _read_at_most(stream, limit: int) -> bytearray:
    """Read up to ``limit`` bytes in bounded chunks, so memory follows the data actually there."""
    buf = bytearray()
    while len(buf) < limit:
        chunk = stream.read(min(_CHUNK, limit - len(buf)))
        if not chunk:
            break
        buf += chunk
    return buf


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


# --------------------------------------------------------------------------- finding files


def default_cache_dir() -> Path:
    """The user cache folder: ``$XDG_CACHE_HOME/deepbelief``, else ``~/.cache/deepbelief``.

    A relative ``XDG_CACHE_HOME`` is ignored, as the XDG Base Directory specification asks.
    """
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "deepbelief"


def _as_path(name: str, value: Any) -> Path:
    if isinstance(value, (str, os.PathLike)) and str(value):
        return Path(value).expanduser()
    raise ConfigError(f"{name} must be a folder path (str or os.PathLike), got {value!r}")


def _file_names(stem: str) -> tuple[str, ...]:
    # Also accept the dotted spelling some redistributions use (train-images.idx3-ubyte).
    dotted = stem.replace("-idx", ".idx")
    return (stem, stem + ".gz", dotted, dotted + ".gz")


def _find_files(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """Map each of MNIST_FILES to an existing file in ``folder``; also list the missing ones."""
    found, missing = {}, []
    for stem in MNIST_FILES:
        for name in _file_names(stem):
            if (folder / name).is_file():
                found[stem] = folder / name
                break
        else:
            missing.append(stem + "[.gz]")
    return found, missing


def _search(places: list[tuple[str, Path | None]]) -> tuple[dict[str, Path] | None, list[str]]:
    """Return the files of the first complete folder among ``places``, and what was seen where."""
    report = []
    for label, folder in places:
        if folder is None:
            report.append(f"{label}: not set")
            continue
        if not folder.is_dir():
            report.append(f"{label}: {folder} (no such folder)")
            continue
        found, missing = _find_files(folder)
        if not missing:
            return found, report
        report.append(f"{label}: {folder} (missing {', '.join(missing)})")
    return None, report


def _places(subdir: str, data_dir: Any, cache_root: Path, *, env_top_level: bool) -> list[tuple[str, Path | None]]:
    """Folders to search, in order: data_dir (and its subdir), $DEEPBELIEF_DATA, the cache.

    ``env_top_level`` lets the environment folder itself hold the files; only MNIST, the
    default, may sit there, since Fashion-MNIST uses the very same file names.
    """
    places: list[tuple[str, Path | None]] = []
    if data_dir is None:
        places.append(("data_dir argument (--data-dir)", None))
    else:
        root = _as_path("data_dir", data_dir)
        places += [("data_dir", root), ("data_dir", root / subdir)]
    env = os.environ.get(DATA_ENV_VAR, "")
    if not env:
        places.append((f"${DATA_ENV_VAR}", None))
    else:
        root = Path(env).expanduser()
        if env_top_level:
            places.append((f"${DATA_ENV_VAR}", root))
        places.append((f"${DATA_ENV_VAR}", root / subdir))
    places.append(("user cache", cache_root / subdir))
    return places


def _not_found(title: str, report: list[str], hint: str) -> DataError:
    lines = "\n".join(f"  - {line}" for line in report)
    return DataError(f"{title} not found. Looked in:\n{lines}\nTo fix: {hint}")


def _fix_hint(subdir: str, cache_root: Path, extra: str = "") -> str:
    files = ", ".join(s + "[.gz]" for s in MNIST_FILES)
    return (
        f"put the four files ({files}) in a folder and pass it with --data-dir DIR "
        f"(data_dir=DIR), or set {DATA_ENV_VAR}=DIR (the files directly, or in DIR/{subdir}/), "
        f"or copy them into {cache_root / subdir}{extra}"
    )


# --------------------------------------------------------------------------- download


def download_mnist(
    cache_dir: str | os.PathLike | None = None,
    *,
    mirrors: tuple[str, ...] = MNIST_MIRRORS,
    timeout: float = DOWNLOAD_TIMEOUT_S,
) -> Path:
    """Download the MNIST files missing from ``<cache_dir>/mnist``; return that folder.

    Each file is fetched as ``<mirror><name>.gz``, trying the mirrors in turn with a
    ``timeout``-second socket timeout, into a temporary file next to its destination. The
    temporary file is flushed and fsynced, its decompressed bytes are checked against
    :data:`MNIST_SHA256`, and only then is it renamed into place with ``os.replace``; a
    failed or interrupted download therefore never leaves a partial or wrong file behind.

    Args:
        cache_dir: cache root; None means :func:`default_cache_dir`.
        min_contrast: ``patches`` only: keep the patches whose own standard deviation
            exceeds this (:func:`load_patches_dataset`); 0 keeps all.
        mirrors: base URLs, each ending in ``/``.
        timeout: seconds to wait on each connection or read.

    Raises:
        DataError: if some file could not be fetched from any mirror; the message gives
            every URL tried and why it failed.
    """
    root = default_cache_dir() if cache_dir is None else _as_path("cache_dir", cache_dir)
    folder = root / "mnist"
    created = [f for f in (folder, *folder.parents) if not f.exists()]  # deepest first
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the cache folder {str(folder)!r}: {exc}") from exc
    found, _ = _find_files(folder)
    try:
        for stem in MNIST_FILES:
            if stem not in found:
                _download_one(stem, folder, mirrors, timeout)
    except BaseException:
        _remove_empty(created)  # a failed first download leaves no empty cache folders
        raise
    return folder


def _remove_empty(folders: list[Path]) -> None:
    for f in folders:
        try:
            f.rmdir()  # only succeeds on an empty folder
        except OSError:
            return


def _download_one(stem: str, folder: Path, mirrors: tuple[str, ...], timeout: float) -> Path:
    dest = folder / (stem + ".gz")
    failures = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + stem + ".gz"
        fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{stem}.", suffix=".part")
        tmp = Path(tmp_name)
        try:
            os.fchmod(fd, output_mode(dest))  # follow the umask, as the renamed file will keep it
            with os.fdopen(fd, "wb") as out:
                _fetch(url, out, timeout)
                out.flush()
                os.fsync(out.fileno())
            read_idx(tmp, sha256=MNIST_SHA256[stem])
            os.replace(tmp, dest)
            _fsync_folder(folder)
            return dest
        except (OSError, ValueError, http.client.HTTPException) as exc:  # DataError is a ValueError
            failures.append(f"{url}: {exc}")
        finally:
            tmp.unlink(missing_ok=True)
    tried = "\n".join(f"  - {line}" for line in failures)
    raise DataError(f"could not download {stem}.gz from any mirror:\n{tried}")


def _fetch(url: str, out, timeout: float) -> None:
    """Stream ``url`` into the binary file ``out``, refusing more than MAX_DOWNLOAD_BYTES."""
    request = urllib.request.Request(url, headers={"User-Agent": "deepbelief"})
    received = 0
    with urllib.request.urlopen(request, timeout=timeout) as response:
        while chunk := response.read(2**20):
            received += len(chunk)
            if received > MAX_DOWNLOAD_BYTES:
                raise DataError(f"response is larger than the {MAX_DOWNLOAD_BYTES} bytes expected at most")
            out.write(chunk)


def _fsync_folder(folder: Path) -> None:
    """Make a rename durable; best effort (some systems cannot open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
    arrays = {stem: read_idx(path, sha256=MNIST_SHA256[stem] if verify else None) for stem, path in files.items()}
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
    folder = _as_path("path", path)
    if not folder.is_dir():
        raise DataError(f"path must be a folder holding IDX files, got {str(folder)!r} (no such folder)")
    files, missing = _find_files(folder)
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
    cache_root = default_cache_dir() if cache_dir is None else _as_path("cache_dir", cache_dir)
    files, report = _search(_places("mnist", data_dir, cache_root, env_top_level=True))
    if files is None:
        hint = _fix_hint("mnist", cache_root, "; or allow the download (download=True)")
        if not download:
            raise _not_found("MNIST", report + ["download: disabled (download=False)"], hint)
        try:
            folder = download_mnist(cache_root)
        except DataError as exc:
            raise _not_found("MNIST", report + [f"download: failed ({exc})"], hint) from exc
        files, missing = _find_files(folder)
        if missing:  # a replaced download_mnist that did not deliver
            raise _not_found("MNIST", report + [f"download: {folder} (missing {', '.join(missing)})"], hint)
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
    cache_root = default_cache_dir() if cache_dir is None else _as_path("cache_dir", cache_dir)
    places = _places("fashion-mnist", data_dir, cache_root, env_top_level=False)
    places.append(("system", FASHION_MNIST_SYSTEM_DIR))
    files, report = _search(places)
    if files is None:
        hint = _fix_hint("fashion-mnist", cache_root) + (
            "; on Debian or Ubuntu, `apt-get install dataset-fashion-mnist`; the files are also "
            "at https://github.com/zalandoresearch/fashion-mnist"
        )
        raise _not_found("Fashion-MNIST", report, hint)
    source = str(next(iter(files.values())).parent)
    return _load_files(files, name="fashion-mnist", source=source, verify=False, n_classes=10)


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
    blocks of a checkerboard over the photograph, test patches inside the "black" ones. The label is the photograph (0 china,
    1 flower). No file or network is needed (the JPEGs ship with scikit-learn, read with
    Pillow). For Gaussian RBMs standardise or whiten them first (``deepbelief.transforms``).

    ``min_contrast`` > 0 keeps only patches whose own standard deviation (grey levels in
    [0, 1], see :func:`select_contrast`) exceeds it, in training and test set alike: about
    60% of the patches are flat (sky, walls) at 0.03, and Gaussian RBMs model the rest far
    better (docs/units.md, "Natural image patches"). Candidate patches are then drawn in
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
    try:
        from sklearn.datasets import load_sample_images
    except ImportError as exc:  # pragma: no cover - sklearn is a dependency
        raise DataError(f"the patches dataset needs scikit-learn's sample images: {exc}") from None
    try:
        images = load_sample_images().images
    except ImportError as exc:  # pragma: no cover - Pillow missing
        raise DataError(f"the patches dataset needs Pillow to read scikit-learn's JPEGs: {exc}") from None
    grey = [np.asarray(im, dtype=np.float64) @ np.array([0.299, 0.587, 0.114]) / 255.0 for im in images]
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

            if min_contrast == 0.0:
                patches = draw(m)
            else:  # rounds of candidates, sized by the acceptance rate so far
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
                patches = np.concatenate(kept)
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
