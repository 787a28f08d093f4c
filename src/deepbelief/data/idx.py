"""The IDX file format (LeCun's MNIST distribution): a bounded, checksummed reader.

A header may not make the reader allocate without bound, nor a small gzip file inflate
without bound; see ``read_idx``.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import zlib
from pathlib import Path

import numpy as np

from deepbelief.errors import DataError

# A header may not make the reader allocate without bound (see read_idx).
MAX_IDX_DIMS = 4
MAX_IDX_ELEMENTS = 2**31
# ... nor make a small gzip file inflate into more than this many bytes (EMNIST's largest
# file is ~0.55 GB; MNIST's training images 47 MB)
MAX_IDX_BYTES = 2**31

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
