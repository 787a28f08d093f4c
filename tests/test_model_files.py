"""Safe model files: safetensors + versioned JSON, never unpickled, every corruption
caught with an error that names the file and the problem."""

import json
import pickle
import struct
import zipfile
from pathlib import Path

import pytest
import torch

from deepbelief import DBN, RBM, ModelFileError, load_model, make_generator, save_model
from deepbelief.finetune import unroll
from deepbelief.io import FORMAT_VERSION, META_KEY, save_tensors
from deepbelief.units import Gaussian, SteppedSigmoid


def rbm(seed=0, nv=6, nh=4):
    return RBM(nv, nh, generator=make_generator(seed))


def split(blob: bytes):
    n = struct.unpack("<Q", blob[:8])[0]
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def join(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data


def edit_meta(path: Path, fn) -> None:
    header, data = split(path.read_bytes())
    meta = json.loads(header["__metadata__"][META_KEY])
    fn(meta)
    header["__metadata__"][META_KEY] = json.dumps(meta)
    path.write_bytes(join(header, data))


@pytest.mark.parametrize("make", [
    lambda: rbm(),
    lambda: RBM(Gaussian(5), SteppedSigmoid(3), generator=make_generator(1)),
    lambda: DBN([rbm(2, 6, 4), rbm(3, 4, 3)]),
    lambda: unroll(DBN([rbm(4)]), 3, generator=make_generator(5)),
])
def test_round_trip_is_exact(tmp_path, make):
    model = make()
    save_model(tmp_path / "m.safetensors", model, note="hello")
    back = load_model(tmp_path / "m.safetensors")
    assert type(back) is type(model) and back.config() == model.config()
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v)


class _Marker:
    """Unpickling this object would create a file: the proof that nothing was run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_pickle_payload_renamed_is_rejected_without_running(tmp_path, protocol):
    marker = tmp_path / "pwned"
    target = tmp_path / "model.safetensors"
    target.write_bytes(pickle.dumps({"W": _Marker(marker)}, protocol=protocol))
    pickle.loads(pickle.dumps(_Marker(tmp_path / "control"), protocol=protocol))  # the payload does work...
    assert (tmp_path / "control").exists()
    with pytest.raises(ModelFileError, match="model.safetensors"):
        load_model(target)
    assert not marker.exists()  # ...but loading never ran it


def test_torch_save_zip_payload_is_rejected_without_running(tmp_path):
    marker = tmp_path / "pwned"
    target = tmp_path / "model.safetensors"
    torch.save({"W": _Marker(marker)}, target)
    assert zipfile.is_zipfile(target)
    with pytest.raises(ModelFileError, match="pickle/zip payload"):
        load_model(target)
    assert not marker.exists()


def test_pickle_after_a_plausible_length_prefix_is_rejected(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Marker(marker), protocol=2)
    target = tmp_path / "m.safetensors"
    target.write_bytes(struct.pack("<Q", len(payload)) + payload)
    with pytest.raises(ModelFileError, match="not a valid safetensors"):
        load_model(target)
    assert not marker.exists()


def test_truncated_files_at_every_length_are_rejected(tmp_path):
    src = tmp_path / "m.safetensors"
    save_model(src, rbm())
    blob = src.read_bytes()
    cut = tmp_path / "cut.safetensors"
    for n in sorted({0, 1, 7, 8, 9, 20, len(blob) // 2, len(blob) - 1} | set(range(len(blob) - 40, len(blob), 7))):
        cut.write_bytes(blob[:n])
        with pytest.raises(ModelFileError, match="cut.safetensors"):
            load_model(cut)


def test_a_flipped_byte_in_the_weights_fails_the_checksum(tmp_path):
    path = tmp_path / "m.safetensors"
    save_model(path, rbm())
    blob = bytearray(path.read_bytes())
    blob[-3] ^= 0x10
    path.write_bytes(bytes(blob))
    with pytest.raises(ModelFileError, match=r"m.safetensors.*checksum.*tampered"):
        load_model(path)


def test_an_edited_config_fails_the_checksum(tmp_path):
    path = tmp_path / "m.safetensors"
    save_model(path, rbm())
    edit_meta(path, lambda m: m["config"].update(weight_std=5.0))
    with pytest.raises(ModelFileError, match="checksum"):
        load_model(path)


def test_wrong_format_version(tmp_path):
    path = tmp_path / "m.safetensors"
    save_tensors(path, rbm().state_dict(), {"kind": "rbm", "config": rbm().config(), "format_version": 99})
    with pytest.raises(ModelFileError, match=rf"m.safetensors.*format_version 99.*version {FORMAT_VERSION}"):
        load_model(path)


def test_not_a_deepbelief_file(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"W": torch.zeros(2, 2)}, str(path))
    with pytest.raises(ModelFileError, match="other.safetensors.*no deepbelief metadata"):
        load_model(path)


def _save_raw(path, tensors, cfg, kind="rbm"):
    save_tensors(path, tensors, {"kind": kind, "config": cfg})


def test_missing_tensor(tmp_path):
    r = rbm()
    state = dict(r.state_dict())
    del state["hidden.bias"]
    _save_raw(tmp_path / "m.safetensors", state, r.config())
    with pytest.raises(ModelFileError, match=r"m.safetensors.*missing tensors \['hidden.bias'\]"):
        load_model(tmp_path / "m.safetensors")


def test_extra_tensor(tmp_path):
    r = rbm()
    _save_raw(tmp_path / "m.safetensors", {**r.state_dict(), "backdoor": torch.zeros(3)}, r.config())
    with pytest.raises(ModelFileError, match=r"unexpected tensors \['backdoor'\]"):
        load_model(tmp_path / "m.safetensors")


def test_mismatched_shape(tmp_path):
    r = rbm()
    _save_raw(tmp_path / "m.safetensors", {**r.state_dict(), "W": torch.zeros(6, 5)}, r.config())
    with pytest.raises(ModelFileError, match=r"tensor 'W' has shape \(6, 5\), expected \(6, 4\)"):
        load_model(tmp_path / "m.safetensors")


def test_integer_tensor_where_float_expected(tmp_path):
    r = rbm()
    _save_raw(tmp_path / "m.safetensors", {**r.state_dict(), "W": torch.zeros(6, 4, dtype=torch.int32)}, r.config())
    with pytest.raises(ModelFileError, match="'W' has dtype torch.int32"):
        load_model(tmp_path / "m.safetensors")


def test_unknown_kind(tmp_path):
    _save_raw(tmp_path / "m.safetensors", rbm().state_dict(), rbm().config(), kind="trojan")
    with pytest.raises(ModelFileError, match="unknown model kind 'trojan'"):
        load_model(tmp_path / "m.safetensors")


@pytest.mark.parametrize("cfg", [
    {"visible": {"type": "bernoulli", "n": 10**12}, "hidden": {"type": "bernoulli", "n": 10**12}},
    {"visible": {"type": "bernoulli", "n": -4}, "hidden": 4},
    {"visible": {"type": "nope", "n": 6}, "hidden": 4},
    {"hidden": 4},
    "not a dict",
])
def test_invalid_or_huge_config_is_refused_without_allocating(tmp_path, cfg):
    # a 10^12 x 10^12 weight matrix would need 4 zettabytes: it must be refused from the
    # file's own tensors, never allocated
    _save_raw(tmp_path / "m.safetensors", rbm().state_dict(), cfg)
    with pytest.raises(ModelFileError, match="m.safetensors"):
        load_model(tmp_path / "m.safetensors")


def test_checkpoint_of_another_kind_is_refused(tmp_path):
    from deepbelief import checkpoint as ck

    save_model(tmp_path / "m.safetensors", rbm())
    with pytest.raises(ModelFileError, match="is a 'rbm' file, expected a 'finetune_checkpoint' file"):
        ck.load_checkpoint(tmp_path / "m.safetensors", kind="finetune_checkpoint")


def test_interrupted_write_keeps_the_old_file(tmp_path, monkeypatch):
    import os

    path = tmp_path / "m.safetensors"
    save_model(path, rbm(0))
    before = path.read_bytes()

    def boom(*a, **k):
        raise KeyboardInterrupt  # as if the process were stopped between write and rename

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        save_model(path, rbm(1))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]  # no temporary file left
    monkeypatch.undo()
    assert torch.equal(load_model(path).W, rbm(0).W)
