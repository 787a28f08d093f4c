"""Property-based fuzzing of the two file readers, on random and on mutated bytes.

The property: ``data.read_idx`` and ``io.load_model`` either return exactly what an
independent reference parser finds in the bytes, or raise the library's error
(DataError / ModelFileError); they never crash with another exception, hang, or allocate
what a header merely declares. Examples are derandomised (the run is the same every
time) and bounded so the file runs in seconds.
"""

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepbelief import DBN, RBM, ModelFileError, load_model, make_generator, save_model
from deepbelief.data import MAX_IDX_BYTES, MAX_IDX_DIMS, MAX_IDX_ELEMENTS, read_idx
from deepbelief.errors import DataError
from deepbelief.finetune import unroll

FUZZ = settings(max_examples=250, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def reference_idx(blob: bytes):
    """An independent reading of the IDX format: the array, or None if the bytes are invalid."""
    if len(blob) < 4 or blob[0] or blob[1] or blob[2] not in TYPES or not 1 <= blob[3] <= MAX_IDX_DIMS:
        return None
    nd = blob[3]
    if len(blob) < 4 + 4 * nd:
        return None
    shape = struct.unpack(f">{nd}I", blob[4:4 + 4 * nd])
    dt = np.dtype(TYPES[blob[2]])
    count = int(np.prod(shape, dtype=object))
    if count * dt.itemsize > MAX_IDX_BYTES or int(np.prod([d for d in shape if d], dtype=object)) > MAX_IDX_ELEMENTS or len(blob) - 4 - 4 * nd != count * dt.itemsize:
        return None
    return np.frombuffer(blob[4 + 4 * nd:], dtype=dt).reshape(shape)


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype.kind == b.dtype.kind and a.tobytes() == b.astype(a.dtype).tobytes()


@st.composite
def valid_idx(draw):
    code = draw(st.sampled_from(sorted(TYPES)))
    shape = draw(st.lists(st.integers(0, 5), min_size=1, max_size=MAX_IDX_DIMS))
    n = int(np.prod(shape)) * np.dtype(TYPES[code]).itemsize
    payload = draw(st.binary(min_size=n, max_size=n))
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + payload


@st.composite
def mutated(draw, base):
    blob = bytearray(draw(base))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "big_dim", "overwrite"]))
        if op == "flip" and blob:
            i = draw(st.integers(0, len(blob) - 1))
            blob[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del blob[draw(st.integers(0, len(blob))):]
        elif op == "insert":
            i = draw(st.integers(0, len(blob)))
            blob[i:i] = draw(st.binary(min_size=1, max_size=9))
        elif op == "delete" and blob:
            i = draw(st.integers(0, len(blob) - 1))
            del blob[i:i + draw(st.integers(1, 9))]
        elif op == "big_dim" and len(blob) >= 8:
            i = 4 + 4 * draw(st.integers(0, max(0, min(blob[3], MAX_IDX_DIMS) - 1)))
            blob[i:i + 4] = struct.pack(">I", draw(st.sampled_from([2**31 - 1, 2**32 - 1, 2**20, 65536])))
        elif op == "overwrite" and blob:
            i = draw(st.integers(0, len(blob) - 1))
            blob[i:i + 4] = draw(st.binary(min_size=4, max_size=4))
    return bytes(blob)


def check_idx(path: Path, blob: bytes, compressed: bool):
    path.write_bytes(gzip.compress(blob, mtime=0) if compressed else blob)
    try:
        got = read_idx(path)
    except DataError as exc:
        assert str(path) in str(exc)
        assert reference_idx(blob) is None
        return
    want = reference_idx(blob)
    assert want is not None, "read_idx accepted bytes the format forbids"
    assert same(got, want)


@FUZZ
@given(blob=st.binary(max_size=300))
def test_read_idx_random_bytes(tmp_path, blob):
    check_idx(tmp_path / "r.idx", blob, compressed=False)


@FUZZ
@given(blob=st.one_of(valid_idx(), mutated(valid_idx())), compressed=st.booleans())
def test_read_idx_valid_and_mutated_files(tmp_path, blob, compressed):
    check_idx(tmp_path / ("m.idx.gz" if compressed else "m.idx"), blob, compressed)


@FUZZ
@given(gz=mutated(valid_idx().map(lambda b: gzip.compress(b, mtime=0))))
def test_read_idx_mutated_gzip_streams(tmp_path, gz):
    path = tmp_path / "z.idx.gz"
    path.write_bytes(gz)
    try:
        got = read_idx(path)
    except DataError:
        return
    # accepted: the first gzip member must decompress to a valid IDX file with this content
    d = zlib.decompressobj(wbits=31)
    inner = d.decompress(gz)
    want = reference_idx(inner)
    assert want is not None and same(got, want)


def test_read_idx_header_declaring_huge_array_in_tiny_gzip_is_refused_quickly(tmp_path):
    # 2^30 uint8 elements declared (within the element cap), 10 bytes present: the reader
    # must stop at the end of the data actually there instead of allocating a GiB
    path = tmp_path / "bomb.idx.gz"
    path.write_bytes(gzip.compress(bytes([0, 0, 8, 1]) + struct.pack(">I", 2**30) + b"\x00" * 10))
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)


# -- model files -------------------------------------------------------------------------------
def _model_blobs():
    g = make_generator(0)
    out = {}
    for name, model in (("rbm", RBM(5, 3, generator=g)), ("dbn", DBN([RBM(4, 3, generator=g), RBM(3, 2, generator=g)])),
                        ("net", unroll(DBN([RBM(4, 3, generator=g)]), 2, generator=g))):
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "m.safetensors"
            save_model(p, model)
            out[name] = (p.read_bytes(), {k: v.clone() for k, v in model.state_dict().items()})
    return out


BLOBS = _model_blobs()


def check_model(path: Path, blob: bytes, original: dict | None):
    path.write_bytes(blob)
    try:
        model = load_model(path)
    except ModelFileError as exc:
        assert str(path) in str(exc)
        return
    assert original is not None, "load_model accepted random bytes"
    state = model.state_dict()
    assert sorted(state) == sorted(original) and all(torch.equal(state[k], original[k]) for k in state)


@FUZZ
@given(blob=st.binary(max_size=400))
def test_load_model_random_bytes(tmp_path, blob):
    check_model(tmp_path / "r.safetensors", blob, None)


@FUZZ
@given(which=st.sampled_from(sorted(BLOBS)), data=st.data())
def test_load_model_mutated_files(tmp_path, which, data):
    blob, original = BLOBS[which]
    bad = data.draw(mutated(st.just(blob)))
    check_model(tmp_path / "m.safetensors", bad, original)


@FUZZ
@given(which=st.sampled_from(sorted(BLOBS)), length=st.integers(0, 2**40))
def test_load_model_lying_header_length(tmp_path, which, length):
    blob, original = BLOBS[which]
    check_model(tmp_path / "m.safetensors", struct.pack("<Q", length) + blob[8:], original)


def test_read_idx_refuses_a_gzip_bomb_before_inflating_it(tmp_path):
    # 2^29 float64 values = 4 GiB declared; such zeros would compress to about 4 MB
    path = tmp_path / "bomb.idx.gz"
    path.write_bytes(gzip.compress(bytes([0, 0, 0x0E, 1]) + struct.pack(">I", 2**29) + b"\x00" * 4096))
    with pytest.raises(DataError, match=f"at most {MAX_IDX_BYTES}"):
        read_idx(path)


# -- the command line's list parser: exactly the positive integers written, or a clear refusal --------
@FUZZ
@given(st.text(alphabet="0123456789,-+. e_x", max_size=12))
def test_int_list_parses_exactly_or_refuses_naming_the_flag(text):
    import argparse
    import re

    from deepbelief.cli.args import int_list

    parts = text.split(",")
    valid = all(re.fullmatch(r"\s*[0-9]+\s*", p) for p in parts) and all(int(p) >= 1 for p in parts)
    try:
        got = int_list("--layers")(text)
    except argparse.ArgumentTypeError as exc:
        assert not valid and "--layers" in str(exc) and repr(text) in str(exc)
    else:
        assert valid and got == [int(p) for p in parts]
