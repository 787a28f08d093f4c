"""Tests of deepbelief.data: the IDX reader, the MNIST search and download, the embedded
digits, and stochastic binarisation.

All offline: an autouse fixture refuses every network call and points the user cache at
a temporary folder. The real MNIST is read from the project's shared copy
(``../shared/data/mnist`` from the repository root) when it is there.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import socket
import time
import tracemalloc
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from deepbelief import data
from deepbelief.data import (
    DATASETS,
    MNIST_FILES,
    MNIST_SHA256,
    Dataset,
    binarize,
    load_dataset,
    load_digits_dataset,
    load_fashion_mnist,
    load_idx_folder,
    load_mnist,
    read_idx,
)
from deepbelief.errors import ConfigError, DataError

# ------------------------------------------------------------------------------ helpers

_TYPE_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B,
               np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}


def idx_bytes(arr: np.ndarray, *, type_code: int | None = None) -> bytes:
    """An independent IDX writer: magic, big-endian dims, big-endian payload."""
    arr = np.asarray(arr)
    code = _TYPE_CODES[arr.dtype] if type_code is None else type_code
    header = bytes([0, 0, code, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write(path: Path, content: bytes, *, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(content, mtime=0) if gz else content)
    return path


def synthetic_mnist(n_train: int = 12, n_test: int = 6, shape=(3, 2), seed: int = 0) -> dict[str, np.ndarray]:
    """Tiny arrays under the four MNIST file names."""
    rng = np.random.default_rng(seed)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def write_folder(folder: Path, arrays: dict[str, np.ndarray], *, gz: bool = True) -> Path:
    for stem, arr in arrays.items():
        write(folder / (stem + (".gz" if gz else "")), idx_bytes(arr), gz=gz)
    return folder


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _shared_mnist() -> Path | None:
    candidates = (
        Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist",
        Path("/work/shared/data/mnist"),
    )
    for folder in candidates:
        if all((folder / f"{stem}.gz").is_file() for stem in MNIST_FILES):
            return folder.resolve()
    return None


SHARED_MNIST = _shared_mnist()
needs_mnist = pytest.mark.skipif(
    SHARED_MNIST is None,
    reason="the MNIST copy is neither at ../shared/data/mnist (from the repository root) nor at "
    "/work/shared/data/mnist; tests never download",
)


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No network, no real user cache, no inherited DEEPBELIEF_DATA."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"a test tried to reach the network: {args!r}")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.delenv(data.DATA_ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture
def fake_mnist(monkeypatch):
    """Synthetic MNIST-named arrays whose digests replace the real ones for the test."""
    arrays = synthetic_mnist()
    monkeypatch.setattr(data.locate, "MNIST_SHA256", {stem: sha(idx_bytes(a)) for stem, a in arrays.items()})
    return arrays


@pytest.fixture
def no_download(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("download_mnist must not be called when local files exist")

    monkeypatch.setattr(data.sources, "download_mnist", fail)


# ------------------------------------------------------------------------------ IDX reader

ROUND_TRIP = [
    np.arange(5 * 4 * 3, dtype=np.uint8).reshape(5, 4, 3),
    np.array([5, 0, 4, 1, 9, 2, 1], dtype=np.uint8),
    np.array([[-128, 0, 127]], dtype=np.int8),
    np.array([[-300, 2], [7, 32000]], dtype=np.int16),
    np.array([-(2**31), 2**31 - 1, 3, 0], dtype=np.int32),
    np.array([[0.5, -1.25], [3e38, -0.0]], dtype=np.float32),
    np.array([1e-300, math.pi], dtype=np.float64).reshape(1, 1, 1, 2),
]


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("arr", ROUND_TRIP, ids=lambda a: f"{a.dtype}{a.shape}")
def test_idx_round_trip(tmp_path, arr, gz):
    out = read_idx(write(tmp_path / "a.idx", idx_bytes(arr), gz=gz))
    assert out.dtype == arr.dtype and out.dtype.isnative
    assert out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)


def test_idx_compression_detected_from_content_not_name(tmp_path):
    arr = np.arange(6, dtype=np.uint8).reshape(2, 3)
    gz_named_plain = write(tmp_path / "plain.idx", idx_bytes(arr), gz=True)
    raw_named_gz = write(tmp_path / "fake.gz", idx_bytes(arr), gz=False)
    np.testing.assert_array_equal(read_idx(gz_named_plain), arr)
    np.testing.assert_array_equal(read_idx(raw_named_gz), arr)


def test_idx_checksum_of_decompressed_bytes(tmp_path):
    content = idx_bytes(np.arange(10, dtype=np.uint8))
    path = write(tmp_path / "l.gz", content, gz=True)
    read_idx(path, sha256=sha(content))  # the digest of the content, not of the .gz
    wrong = sha(content + b"x")
    with pytest.raises(DataError) as err:
        read_idx(path, sha256=wrong)
    msg = str(err.value)
    assert str(path) in msg and wrong in msg and sha(content) in msg


def _header(type_code: int, dims: tuple[int, ...], *, ndim: int | None = None) -> bytes:
    n = len(dims) if ndim is None else ndim
    return bytes([0, 0, type_code, n]) + b"".join(d.to_bytes(4, "big") for d in dims)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize(
    "content, expected_bits",
    [
        (b"\x01\x00\x08\x01" + (3).to_bytes(4, "big") + b"abc", ["magic", "0x01 0x00"]),
        (b"PK\x03\x04", ["magic", "0x50 0x4b"]),
        (_header(0x07, (3,)) + b"abc", ["type code", "0x07"]),
        (_header(0x0A, (3,)) + b"abc", ["type code", "0x0a"]),
        (_header(0x08, (1, 1, 1, 1, 1)) + b"a", ["5 dimensions", "1 to 4"]),
        (_header(0x08, (), ndim=0), ["0 dimensions"]),
        (b"\x00\x00\x08", ["truncated", "4-byte header", "received 3"]),
        (_header(0x08, (4, 5))[:10], ["truncated", "expected 8", "received 6"]),
        (_header(0x08, (4, 5)) + bytes(17), ["truncated", "(4, 5)", "20 bytes", "received 17"]),
        (_header(0x0C, (4,)) + bytes(15), ["truncated", "16 bytes", "received 15"]),
        (_header(0x08, (65536, 65536, 2)), ["8589934592 elements", str(2**31)]),
        (_header(0x08, (2**16, 2**16, 1, 1)) + bytes(4), ["4294967296 elements"]),
    ],
    ids=["magic", "zip", "type07", "type0a", "rank5", "rank0", "short-header", "short-dims",
         "truncated", "truncated-int32", "huge", "huge4"],
)
def test_idx_malformed_raises_data_error(tmp_path, content, expected_bits, gz):
    path = write(tmp_path / "bad-idx", content, gz=gz)
    with pytest.raises(DataError) as err:
        read_idx(path)
    msg = str(err.value)
    assert str(path) in msg
    for bit in expected_bits:
        assert bit in msg, (bit, msg)


def test_idx_trailing_bytes_raw_gives_exact_count(tmp_path):
    path = write(tmp_path / "t", _header(0x08, (4, 5)) + bytes(23))
    with pytest.raises(DataError, match=r"trailing.*exactly 20 bytes, received 23") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_idx_trailing_bytes_gzip(tmp_path):
    path = write(tmp_path / "t.gz", _header(0x08, (4, 5)) + bytes(10_000), gz=True)
    with pytest.raises(DataError, match=r"trailing.*exactly 20 bytes, received more than 20") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_idx_huge_declared_size_is_not_allocated(tmp_path):
    """A gzip header declaring 2**31 bytes with a tiny payload: read what is there, no more."""
    path = write(tmp_path / "bomb.gz", _header(0x08, (2**31,)) + bytes(1000), gz=True)
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"needs exactly 2147483648 bytes, received 1000"):
            read_idx(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20


def test_idx_corrupt_gzip_and_missing_file(tmp_path):
    good = gzip.compress(idx_bytes(np.arange(5000, dtype=np.int32)), mtime=0)
    cut = write(tmp_path / "cut.gz", good[: len(good) // 2])
    flipped = bytearray(good)
    flipped[-6] ^= 0xFF  # inside the CRC-32 trailer
    bad_crc = write(tmp_path / "crc.gz", bytes(flipped))
    for path in (cut, bad_crc, tmp_path / "missing-idx"):
        with pytest.raises(DataError) as err:
            read_idx(path)
        assert str(path) in str(err.value)


# ------------------------------------------------------------------------------ real MNIST


@pytest.fixture(scope="module")
def mnist() -> Dataset:
    if SHARED_MNIST is None:
        pytest.skip("no local MNIST copy")
    return load_mnist(SHARED_MNIST, download=False)


# Class counts of the official files (LeCun et al.), an external oracle for the labels.
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@needs_mnist
def test_real_mnist_shapes_labels_and_range(mnist):
    assert mnist.name == "mnist" and mnist.image_shape == (28, 28) and mnist.n_classes == 10
    assert Path(mnist.source) == SHARED_MNIST
    assert mnist.x_train.shape == (60000, 784) and mnist.x_test.shape == (10000, 784)
    for x in (mnist.x_train, mnist.x_test):
        assert x.dtype == torch.float32 and x.is_contiguous()
        assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert mnist.y_train.dtype == torch.int64 and mnist.y_test.dtype == torch.int64
    assert torch.bincount(mnist.y_train).tolist() == MNIST_TRAIN_COUNTS
    assert torch.bincount(mnist.y_test).tolist() == MNIST_TEST_COUNTS
    assert mnist.y_train[:5].tolist() == [5, 0, 4, 1, 9] and mnist.y_test[:5].tolist() == [7, 2, 1, 0, 4]


@needs_mnist
def test_real_mnist_pixels_are_bytes_over_255(mnist):
    raw = read_idx(SHARED_MNIST / "t10k-images-idx3-ubyte.gz")  # (10000, 28, 28) uint8
    expected = torch.from_numpy(raw.reshape(10000, 784)).to(torch.float32) / 255.0
    assert torch.equal(mnist.x_test, expected)


@needs_mnist
def test_real_mnist_validation_is_last_10000(mnist):
    train, valid = mnist.split_validation()
    assert train.x.shape == (50000, 784) and valid.x.shape == (10000, 784)
    assert valid.x.data_ptr() == mnist.x_train[50000:].data_ptr() and valid.x.is_contiguous()
    assert torch.equal(valid.y, mnist.y_train[50000:]) and torch.equal(train.y, mnist.y_train[:50000])
    assert mnist.split_validation(100)[1].x.shape == (100, 784)


@needs_mnist
def test_real_mnist_corrupted_copy_fails_checksum(tmp_path, no_download):
    for stem in MNIST_FILES[:3]:
        (tmp_path / f"{stem}.gz").symlink_to(SHARED_MNIST / f"{stem}.gz")
    stem = "t10k-labels-idx1-ubyte"
    content = bytearray(gzip.decompress((SHARED_MNIST / f"{stem}.gz").read_bytes()))
    content[100] ^= 0x01  # one label 8 <-> 9 and so on: still a valid file
    corrupt = write(tmp_path / stem, bytes(content))
    with pytest.raises(DataError) as err:
        load_mnist(tmp_path, download=False)
    msg = str(err.value)
    assert "checksum mismatch" in msg and str(corrupt) in msg
    assert MNIST_SHA256[stem] in msg and sha(bytes(content)) in msg


@needs_mnist
def test_real_mnist_binarized(mnist):
    ds = load_dataset("mnist-binarized", SHARED_MNIST, download=False)
    assert ds.name == "mnist-binarized" and ds.x_train.shape == (60000, 784)
    for x in (ds.x_train, ds.x_test):
        assert x.dtype == torch.float32 and bool(((x == 0) | (x == 1)).all())
    # The fraction of ones estimates the mean intensity p_bar; Var = sum p(1-p) / N^2.
    p = mnist.x_test.double()
    se = math.sqrt(float((p * (1 - p)).sum())) / p.numel()
    assert abs(float(ds.x_test.double().mean()) - float(p.mean())) < 5 * se


# ------------------------------------------------------------------------------ folders and search order


def test_load_idx_folder(tmp_path):
    arrays = synthetic_mnist(n_train=12, n_test=6, shape=(3, 2))
    folder = write_folder(tmp_path / "digits-like", arrays, gz=False)
    (folder / "t10k-images-idx3-ubyte").rename(folder / "t10k-images.idx3-ubyte")  # dotted spelling
    ds = load_idx_folder(folder)
    assert ds.name == "digits-like" and ds.image_shape == (3, 2) and ds.n_valid == 2
    assert ds.x_train.shape == (12, 6) and ds.x_test.shape == (6, 6)
    assert ds.n_classes == int(max(arrays["train-labels-idx1-ubyte"].max(), arrays["t10k-labels-idx1-ubyte"].max())) + 1
    expected = torch.from_numpy(arrays["train-images-idx3-ubyte"].reshape(12, 6).astype(np.float32)) / 255
    assert torch.equal(ds.x_train, expected)
    assert ds.y_test.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()


def test_load_idx_folder_errors(tmp_path):
    arrays = synthetic_mnist()
    folder = write_folder(tmp_path / "f", arrays)
    with pytest.raises(DataError, match="checksum mismatch"):  # verify=True means "this is MNIST"
        load_idx_folder(folder, verify=True)
    write(folder / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.zeros(5, np.uint8)), gz=True)
    with pytest.raises(DataError, match=r"holds 5 labels but .* holds 6 images"):
        load_idx_folder(folder)
    (folder / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"missing train-labels-idx1-ubyte\[\.gz\]"):
        load_idx_folder(folder)
    with pytest.raises(DataError, match="no such folder"):
        load_idx_folder(tmp_path / "nowhere")


def test_search_order_explicit_then_env_then_cache(tmp_path, monkeypatch, fake_mnist, no_download):
    explicit = write_folder(tmp_path / "explicit", fake_mnist)
    env = write_folder(tmp_path / "env", fake_mnist, gz=False)
    cache = write_folder(tmp_path / "xdg-cache" / "deepbelief" / "mnist", fake_mnist)
    monkeypatch.setenv(data.DATA_ENV_VAR, str(env))

    ds = load_mnist(explicit, download=False)
    assert ds.source == str(explicit) and ds.x_train.shape == (12, 6)
    assert load_mnist(download=False).source == str(env)
    assert load_mnist(tmp_path / "empty", download=False).source == str(env)  # falls through
    monkeypatch.delenv(data.DATA_ENV_VAR)
    assert load_mnist(download=False).source == str(cache)
    other = write_folder(tmp_path / "other-cache" / "mnist", fake_mnist)
    assert load_mnist(download=False, cache_dir=tmp_path / "other-cache").source == str(other)


def test_search_accepts_mnist_subfolders_and_home_cache(tmp_path, monkeypatch, fake_mnist, no_download):
    sub = write_folder(tmp_path / "explicit" / "mnist", fake_mnist)
    assert load_mnist(tmp_path / "explicit", download=False).source == str(sub)
    env_sub = write_folder(tmp_path / "env" / "mnist", fake_mnist)
    monkeypatch.setenv(data.DATA_ENV_VAR, str(tmp_path / "env"))
    assert load_mnist(download=False).source == str(env_sub)
    monkeypatch.delenv(data.DATA_ENV_VAR)
    monkeypatch.delenv("XDG_CACHE_HOME")
    home_cache = write_folder(tmp_path / "home" / ".cache" / "deepbelief" / "mnist", fake_mnist)
    assert data.default_cache_dir() == tmp_path / "home" / ".cache" / "deepbelief"
    assert load_mnist(download=False).source == str(home_cache)


def test_offline_not_found_lists_every_place(tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_ENV_VAR, str(tmp_path / "env"))
    (tmp_path / "given").mkdir()
    write(tmp_path / "given" / "train-images-idx3-ubyte.gz", b"", gz=True)  # partial folder
    with pytest.raises(DataError) as err:
        load_mnist(tmp_path / "given", download=False)
    msg = str(err.value)
    cache = tmp_path / "xdg-cache" / "deepbelief" / "mnist"
    for bit in (
        "MNIST not found",
        f"data_dir: {tmp_path / 'given'} (missing train-labels-idx1-ubyte[.gz], t10k-images",
        f"data_dir: {tmp_path / 'given' / 'mnist'} (no such folder)",
        f"$DEEPBELIEF_DATA: {tmp_path / 'env'} (no such folder)",
        f"$DEEPBELIEF_DATA: {tmp_path / 'env' / 'mnist'}",
        f"user cache: {cache}",
        "download: disabled (download=False)",
        "--data-dir DIR",
        "DEEPBELIEF_DATA=DIR",
        f"copy them into {cache}",
    ):
        assert bit in msg, (bit, msg)


def test_missing_files_call_the_download_with_the_cache(tmp_path, monkeypatch, fake_mnist):
    calls = []

    def fake_download(cache_root):
        calls.append(cache_root)
        return write_folder(Path(cache_root) / "mnist", fake_mnist)

    monkeypatch.setattr(data.sources, "download_mnist", fake_download)
    ds = load_mnist(download=True)
    assert calls == [tmp_path / "xdg-cache" / "deepbelief"]
    assert ds.source == str(tmp_path / "xdg-cache" / "deepbelief" / "mnist")
    assert ds.y_train.tolist() == fake_mnist["train-labels-idx1-ubyte"].tolist()


def test_bad_arguments_raise_config_error():
    with pytest.raises(ConfigError, match="data_dir must be a folder path"):
        load_mnist(42, download=False)
    with pytest.raises(ConfigError, match="download must be True or False"):
        load_mnist(download="no")


# ------------------------------------------------------------------------------ download


class FakeNet:
    """Stands in for urllib.request.urlopen: serves bytes or raises, and records each call."""

    def __init__(self, table):
        self.table = table  # url -> bytes | Exception
        self.calls = []

    def __call__(self, request, timeout=None):
        url = getattr(request, "full_url", request)
        self.calls.append((url, timeout))
        answer = self.table.get(url, urllib.error.HTTPError(url, 404, "Not Found", {}, None))
        if isinstance(answer, Exception):
            raise answer
        return io.BytesIO(answer)


def serve(arrays, mirror=data.MNIST_MIRRORS[0]) -> dict[str, bytes]:
    return {f"{mirror}{stem}.gz": gzip.compress(idx_bytes(a)) for stem, a in arrays.items()}


def test_download_verifies_and_writes_atomically(tmp_path, monkeypatch, fake_mnist):
    net = FakeNet(serve(fake_mnist))
    monkeypatch.setattr(urllib.request, "urlopen", net)
    synced, replaced = [], []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (replaced.append((Path(a), Path(b))), real_replace(a, b))[1])

    ds = load_mnist(cache_dir=tmp_path / "c")
    folder = tmp_path / "c" / "mnist"
    assert ds.source == str(folder) and ds.x_test.shape == (6, 6)
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{s}.gz" for s in MNIST_FILES)
    assert [u for u, _ in net.calls] == [f"{data.MNIST_MIRRORS[0]}{s}.gz" for s in MNIST_FILES]
    assert all(t is not None and 0 < t <= 120 for _, t in net.calls)
    # Each file went through a temporary name in the same folder, then one rename.
    assert [dst.name for _, dst in replaced] == [f"{s}.gz" for s in MNIST_FILES]
    assert all(src.parent == folder and src.name.endswith(".part") for src, _ in replaced)
    assert len(synced) >= 4
    # A second load finds the cache and does not download.
    monkeypatch.setattr(urllib.request, "urlopen", FakeNet({}))
    assert load_mnist(cache_dir=tmp_path / "c").source == str(folder)


def test_download_falls_back_to_the_next_mirror(tmp_path, monkeypatch, fake_mnist):
    table = {f"{data.MNIST_MIRRORS[0]}{s}.gz": urllib.error.URLError("timed out") for s in MNIST_FILES}
    table.update(serve(fake_mnist, data.MNIST_MIRRORS[1]))
    net = FakeNet(table)
    monkeypatch.setattr(urllib.request, "urlopen", net)
    ds = load_mnist(cache_dir=tmp_path / "c")
    assert ds.y_test.tolist() == fake_mnist["t10k-labels-idx1-ubyte"].tolist()
    assert len(net.calls) == 8


def test_download_only_fetches_missing_files(tmp_path, monkeypatch, fake_mnist):
    folder = write_folder(tmp_path / "c" / "mnist", {k: fake_mnist[k] for k in MNIST_FILES[:2]})
    net = FakeNet(serve(fake_mnist))
    monkeypatch.setattr(urllib.request, "urlopen", net)
    assert data.download_mnist(tmp_path / "c") == folder
    assert [u.rsplit("/", 1)[1] for u, _ in net.calls] == [f"{s}.gz" for s in MNIST_FILES[2:]]


def test_download_with_wrong_checksum_leaves_nothing(tmp_path, monkeypatch, fake_mnist):
    wrong = {stem: a ^ 1 for stem, a in fake_mnist.items()}  # same shapes, other bytes
    table = serve(wrong, data.MNIST_MIRRORS[0])
    table.update(serve(wrong, data.MNIST_MIRRORS[1]))
    monkeypatch.setattr(urllib.request, "urlopen", FakeNet(table))
    with pytest.raises(DataError) as err:
        load_mnist(cache_dir=tmp_path / "c")
    msg = str(err.value)
    assert "download: failed" in msg and "checksum mismatch" in msg
    assert all(f"{m}train-images-idx3-ubyte.gz" in msg for m in data.MNIST_MIRRORS)
    assert not (tmp_path / "c").exists()  # no file and no folder the failed attempt created


def test_download_interrupted_rename_leaves_nothing(tmp_path, monkeypatch, fake_mnist):
    monkeypatch.setattr(urllib.request, "urlopen", FakeNet(serve(fake_mnist)))

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(DataError, match="No space left on device"):
        data.download_mnist(tmp_path / "c", mirrors=data.MNIST_MIRRORS[:1])
    assert not (tmp_path / "c").exists()  # no file and no folder the failed attempt created


def test_download_removes_stale_parts_and_keeps_live_ones(tmp_path, monkeypatch, fake_mnist):
    # What a SIGKILLed download leaves: temporaries no one will remove. The next download of
    # the same file removes those untouched for STALE_PART_S; a younger one may be a
    # download running beside this one, and other names are not ours.
    folder = tmp_path / "c" / "mnist"
    folder.mkdir(parents=True)
    stem = MNIST_FILES[0]
    stale, live = folder / f".{stem}.0123abcd.part", folder / f".{stem}.89abcdef.part"
    foreign = [folder / f".{stem}.notours.part", folder / f".{MNIST_FILES[1]}x.0123abcd.part", folder / "keep.part"]
    for p in (stale, live, *foreign):
        p.write_bytes(b"partial")
    old = time.time() - data.download.STALE_PART_S - 60
    for p in (stale, *foreign):
        os.utime(p, (old, old))
    monkeypatch.setattr(urllib.request, "urlopen", FakeNet(serve(fake_mnist)))
    assert data.download_mnist(tmp_path / "c") == folder
    assert not stale.exists() and live.exists() and all(p.exists() for p in foreign)
    assert data.download.remove_stale_parts(folder, stem, older_than=-1) == [live]


def test_download_refuses_oversized_responses(tmp_path, monkeypatch, fake_mnist):
    monkeypatch.setattr(urllib.request, "urlopen", FakeNet(serve(fake_mnist)))
    monkeypatch.setattr(data.download, "MAX_DOWNLOAD_BYTES", 10)
    with pytest.raises(DataError, match="larger than the 10 bytes"):
        data.download_mnist(tmp_path / "c", mirrors=data.MNIST_MIRRORS[:1])
    assert not (tmp_path / "c").exists()  # no file and no folder the failed attempt created


def test_offline_download_failure_lists_places_and_urls(tmp_path, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", FakeNet({}))
    with pytest.raises(DataError) as err:
        load_mnist()
    msg = str(err.value)
    assert "MNIST not found" in msg and "user cache:" in msg and "download: failed" in msg
    assert "HTTP Error 404" in msg and f"{data.MNIST_MIRRORS[1]}train-images-idx3-ubyte.gz" in msg


# ------------------------------------------------------------------------------ Fashion-MNIST


def test_fashion_mnist_search(tmp_path, monkeypatch):
    arrays = synthetic_mnist(seed=1)
    monkeypatch.setattr(data.sources, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "usr-share")
    system = write_folder(tmp_path / "usr-share", arrays)
    # MNIST files directly under $DEEPBELIEF_DATA must not be taken for Fashion-MNIST.
    write_folder(tmp_path / "env", synthetic_mnist(seed=2))
    monkeypatch.setenv(data.DATA_ENV_VAR, str(tmp_path / "env"))
    ds = load_dataset("fashion-mnist")
    assert ds.name == "fashion-mnist" and ds.source == str(system)
    assert ds.y_train.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    env_sub = write_folder(tmp_path / "env" / "fashion-mnist", arrays)
    assert load_fashion_mnist().source == str(env_sub)
    explicit = write_folder(tmp_path / "explicit", arrays)
    assert load_fashion_mnist(explicit).source == str(explicit)


def test_fashion_mnist_not_found(tmp_path, monkeypatch):
    monkeypatch.setattr(data.sources, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "usr-share")
    with pytest.raises(DataError) as err:
        load_fashion_mnist(tmp_path / "given")
    msg = str(err.value)
    for bit in ("Fashion-MNIST not found", str(tmp_path / "given"), "$DEEPBELIEF_DATA: not set",
                str(tmp_path / "usr-share"), "apt-get install dataset-fashion-mnist", "--data-dir"):
        assert bit in msg, (bit, msg)


# ------------------------------------------------------------------------------ digits


def test_digits_shapes_range_and_split():
    ds = load_digits_dataset()
    assert ds.name == "digits" and ds.image_shape == (8, 8) and ds.n_classes == 10
    assert ds.x_train.shape == (1297, 64) and ds.x_test.shape == (500, 64)
    assert ds.x_train.dtype == torch.float32 and ds.x_train.is_contiguous()
    for x in (ds.x_train, ds.x_test):
        assert float(x.min()) == 0.0 and float(x.max()) == 1.0
        assert torch.equal(x * 16, (x * 16).round())  # grey levels 0..16 over 16
    train, valid = ds.split_validation()
    assert train.x.shape == (1000, 64) and valid.x.shape == (297, 64)
    assert set(ds.y_train.tolist()) == set(range(10))


def test_digits_split_is_fixed_and_a_partition():
    from sklearn.datasets import load_digits

    a, b = load_digits_dataset(), load_digits_dataset()
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    bunch = load_digits()
    ours = np.concatenate([np.c_[a.x_train.numpy() * 16, a.y_train.numpy()],
                           np.c_[a.x_test.numpy() * 16, a.y_test.numpy()]])
    theirs = np.c_[bunch.data, bunch.target]
    sort = lambda m: m[np.lexsort(m.T[::-1])]  # noqa: E731
    np.testing.assert_array_equal(sort(ours), sort(theirs))
    assert not np.array_equal(ours[:, -1], theirs[:, -1])  # shuffled, not the original order


# ------------------------------------------------------------------------------ binarisation and registry


def test_binarize_is_deterministic_per_seed():
    x = torch.rand(200, 30, generator=torch.Generator().manual_seed(1))
    before = x.clone()
    b1, b2, b3 = binarize(x, seed=7), binarize(x, seed=7), binarize(x, seed=8)
    assert torch.equal(x, before)  # input untouched
    assert torch.equal(b1, b2) and not torch.equal(b1, b3)
    assert b1.shape == x.shape and b1.dtype == torch.float32
    assert bool(((b1 == 0) | (b1 == 1)).all())
    assert torch.equal(binarize(x, generator=torch.Generator().manual_seed(7)), b1)


def test_binarize_mean_matches_intensities_within_binomial_error():
    n = 20_000
    p = torch.linspace(0, 1, 21)  # (21,)
    b = binarize(p.expand(n, -1).contiguous(), seed=0)  # (n, 21)
    mean = b.double().mean(0)
    se = torch.sqrt(p.double() * (1 - p.double()) / n)
    assert bool((torch.abs(mean - p.double()) <= 5 * se + 1e-12).all()), (mean, p)
    assert float(b[:, 0].sum()) == 0 and float(b[:, -1].sum()) == n  # p = 0 and 1 are exact


@pytest.mark.parametrize(
    "x, match",
    [
        (torch.tensor([0.5, 1.5]), r"\[0, 1\].*\[0.5, 1.5\]"),
        (torch.tensor([0.5, float("nan")]), r"\[0, 1\]"),
        (torch.tensor([0, 1]), "floating-point"),
        (np.array([0.5]), "floating-point"),
    ],
)
def test_binarize_rejects_bad_input(x, match):
    with pytest.raises(DataError, match=match):
        binarize(x)


def test_dataset_binarized_uses_one_generator_for_train_then_test():
    ds = load_digits_dataset()
    bd = ds.binarized(seed=3)
    g = torch.Generator().manual_seed(3)
    assert torch.equal(bd.x_train, binarize(ds.x_train, generator=g))
    assert torch.equal(bd.x_test, binarize(ds.x_test, generator=g))
    assert bd.y_train is ds.y_train and bd.name == "digits-binarized"
    assert load_dataset(binarized=True, seed=3).name == "digits-binarized"


def test_load_dataset_registry(monkeypatch, fake_mnist, tmp_path, no_download):
    assert DATASETS[0] == "digits" and load_dataset().name == "digits"
    folder = write_folder(tmp_path / "m", fake_mnist)
    plain = load_dataset("mnist", folder, download=False)
    bin0 = load_dataset("mnist-binarized", folder, download=False)
    assert bin0.name == "mnist-binarized"
    assert torch.equal(bin0.x_train, plain.binarized(0).x_train)
    assert torch.equal(bin0.x_test, plain.binarized(0).x_test)
    assert not torch.equal(load_dataset("mnist-binarized", folder, download=False, seed=1).x_train, bin0.x_train)
    with pytest.raises(ConfigError) as err:
        load_dataset("cifar10")
    assert all(name in str(err.value) for name in DATASETS) and "'cifar10'" in str(err.value)
    with pytest.raises(ConfigError, match="seed must be >= 0"):
        load_dataset(seed=-1)


def test_dataset_is_frozen_and_validated():
    ds = load_digits_dataset()
    with pytest.raises(AttributeError):
        ds.name = "other"
    with pytest.raises(ConfigError, match="n_valid must be <= 1296"):
        ds.split_validation(1297)
    with pytest.raises(ConfigError, match="n_valid must be >= 1"):
        ds.split_validation(0)
    with pytest.raises(DataError, match="y_test must be an int64 tensor of shape"):
        Dataset(ds.x_train, ds.y_train, ds.x_test, ds.y_train, name="bad", image_shape=(8, 8))
    with pytest.raises(DataError, match=r"784 columns for image_shape \(28, 28\), got 64"):
        Dataset(ds.x_train, ds.y_train, ds.x_test, ds.y_test, name="bad")  # default 28x28
    assert "digits" in repr(ds) and "(1297, 64)" in repr(ds)


def test_failed_download_keeps_folders_that_existed_before(tmp_path, monkeypatch):
    (tmp_path / "c").mkdir()
    monkeypatch.setattr(urllib.request, "urlopen", FakeNet({}))
    with pytest.raises(DataError):
        data.download_mnist(tmp_path / "c", mirrors=data.MNIST_MIRRORS[:1])
    assert list((tmp_path / "c").iterdir()) == []  # mnist/ was created by the attempt: removed


def test_downloaded_files_follow_the_umask(tmp_path, monkeypatch, fake_mnist):
    monkeypatch.setattr(urllib.request, "urlopen", FakeNet(serve(fake_mnist)))
    old = os.umask(0o027)
    try:
        folder = data.download_mnist(tmp_path / "c", mirrors=data.MNIST_MIRRORS[:1])
    finally:
        os.umask(old)
    assert {oct(p.stat().st_mode & 0o777) for p in folder.iterdir()} == {oct(0o666 & ~0o027)}
