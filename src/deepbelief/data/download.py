"""A verified download of MNIST into the user cache (sources.load_mnist's last resort)."""

from __future__ import annotations

import http.client
import os
import re
import time
import urllib.request
from pathlib import Path

from deepbelief.data import locate
from deepbelief.data.idx import read_idx
from deepbelief.data.locate import MNIST_FILES, as_path, default_cache_dir, find_files
from deepbelief.errors import DataError
from deepbelief.io import Temporary, fsync_folder, output_mode

#: Public mirrors serving ``<name>.gz`` for each of :data:`MNIST_FILES`, tried in turn.
MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

# The largest response accepted from a mirror (the training images are ~9.9 MB gzipped).
MAX_DOWNLOAD_BYTES = 64 * 2**20
DOWNLOAD_TIMEOUT_S = 30.0

# A ``.part`` file untouched for this long belongs to no live download (a live one writes to
# it after every MiB received, and a read that stalls for ``timeout`` seconds ends it), so a
# new download removes it: a download killed by SIGKILL or a power cut cannot remove its own.
STALE_PART_S = 3600.0


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
    Temporary files that a killed download could not remove (SIGKILL, a power cut) are
    removed by the next download of the same file once they are :data:`STALE_PART_S`
    seconds old.

    Args:
        cache_dir: cache root; None means :func:`default_cache_dir`.
        mirrors: base URLs, each ending in ``/``.
        timeout: seconds to wait on each connection or read.

    Raises:
        DataError: if some file could not be fetched from any mirror; the message gives
            every URL tried and why it failed.
    """
    root = default_cache_dir() if cache_dir is None else as_path("cache_dir", cache_dir)
    folder = root / "mnist"
    created = [f for f in (folder, *folder.parents) if not f.exists()]  # deepest first
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the cache folder {str(folder)!r}: {exc}") from exc
    found, _ = find_files(folder)
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


def remove_stale_parts(folder: Path, stem: str, older_than: float = STALE_PART_S) -> list[Path]:
    """Delete ``folder``'s temporary files of ``stem``'s download not modified for
    ``older_than`` seconds (left by a killed download); younger ones may belong to a
    download running beside this one and are kept. Returns what was removed."""
    pattern = re.compile(rf"^\.{re.escape(stem)}\.[0-9a-f]{{8}}\.part$")
    now, removed = time.time(), []
    for p in sorted(folder.glob(f".{stem}.*.part")):
        try:
            if pattern.match(p.name) and p.is_file() and now - p.stat().st_mtime > older_than:
                p.unlink()
                removed.append(p)
        except OSError:
            pass
    return removed


def _download_one(stem: str, folder: Path, mirrors: tuple[str, ...], timeout: float) -> Path:
    dest = folder / (stem + ".gz")
    remove_stale_parts(folder, stem)
    failures = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + stem + ".gz"
        tmp = Temporary(folder, f".{stem}.", ".part")
        try:
            fd = tmp.create()
            os.fchmod(fd, output_mode(dest))  # follow the umask, as the renamed file will keep it
            with os.fdopen(fd, "wb") as out:
                _fetch(url, out, timeout)
                out.flush()
                os.fsync(out.fileno())
            read_idx(tmp.path, sha256=locate.MNIST_SHA256[stem])
            os.replace(tmp.path, dest)
            fsync_folder(folder)
            return dest
        except (OSError, ValueError, http.client.HTTPException) as exc:  # DataError is a ValueError
            failures.append(f"{url}: {exc}")
        finally:
            tmp.remove()
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
