"""The bad-input catalogue: every public entry point (Python API and command line) refuses
malformed input with the library's error type, a message that names the parameter and
the value received, and no file left behind (not even a partial one).

Each case is (id, call, expected error type, substrings the message must contain). The
substrings are the parameter's name and the received value as the user wrote it.
"""

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from deepbelief import (DBN, RBM, ConfigError, DataError, DeepClassifier, FinetuneConfig, ModelFileError,
                        RBMTrainConfig, finetune, load_model, make_generator, pretrain_stack, save_model,
                        train_rbm, unroll)
from deepbelief.cli import main
from deepbelief.data import binarize, load_dataset, load_idx_folder, read_idx
from deepbelief.errors import resolve_device
from deepbelief.plotting import save_tiles
from deepbelief.units import Softmax


def gen(seed=0):
    return make_generator(seed)


def x16(n=40, seed=0):
    return (torch.rand(n, 16, generator=torch.Generator().manual_seed(seed)) < 0.5).float()


def rbm16():
    return RBM(16, 8, generator=gen())


def net16():
    return unroll(DBN([rbm16()]), 3, generator=gen())


def y3(n=40):
    return torch.arange(n) % 3


def with_(x, i, j, value):
    x = x.clone()
    x[i, j] = value
    return x


def train(data, **cfg):
    base = dict(epochs=1, batch_size=10)
    base.update(cfg)
    return lambda: train_rbm(rbm16(), data, RBMTrainConfig(**base), generator=gen())


def idx_bytes(array: np.ndarray, type_code=0x08) -> bytes:
    head = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return head + array.astype(">u1" if type_code == 0x08 else array.dtype).tobytes()


GOOD_IDX = idx_bytes(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))


def write(name, data: bytes):
    Path(name).write_bytes(data)
    return name


# Cases that need files create them inside the test's working folder *before* the call
# (``prepare``); the no-leftover check compares the folder before and after the call.
CASES = [
    # -- RBM and unit types ---------------------------------------------------------------
    ("unknown unit type", lambda: RBM("bogus", 4), ConfigError, ["visible", "bogus"]),
    ("unit type name without size", lambda: RBM({"type": "gaussian"}, 4), ConfigError, ["visible", "'n'"]),
    ("zero units", lambda: RBM(16, 0), ConfigError, ["hidden", "n_units", "0"]),
    ("non-integer layer size", lambda: RBM(6.5, 4), ConfigError, ["visible", "6.5"]),
    ("unknown unit option", lambda: RBM({"type": "gaussian", "n": 3, "colour": 1}, 4), ConfigError,
     ["visible", "colour"]),
    ("negative weight_std", lambda: RBM(6, 4, weight_std=-1.0), ConfigError, ["weight_std", "-1"]),
    # -- train_rbm: the data ----------------------------------------------------------------
    ("wrong number of features", train(torch.rand(40, 10)), DataError, ["data", "16", "10"]),
    ("text dtype", train(np.array([["a"] * 16] * 40)), DataError, ["data", "dtype", "<U1"]),
    ("bool tensor", train(torch.ones(40, 16, dtype=torch.bool)), DataError, ["data", "torch.bool"]),
    ("NaN in data", train(with_(x16(), 3, 4, float("nan"))), DataError, ["data", "1 NaN/inf"]),
    ("inf in data", train(with_(x16(), 0, 0, float("inf"))), DataError, ["data", "NaN/inf"]),
    ("outside [0, 1] for Bernoulli", train(with_(x16(), 1, 1, 1.5)), DataError, ["data", "[0, 1]", "1.5"]),
    ("negative for Bernoulli", train(with_(x16(), 1, 1, -0.25)), DataError, ["data", "-0.25"]),
    ("empty data", train(torch.zeros(0, 16)), DataError, ["data", "got 0"]),
    ("complex data", train(torch.zeros(40, 16, dtype=torch.complex64)), DataError, ["data", "complex64"]),
    ("negative for NReLU units",
     lambda: train_rbm(RBM({"type": "nrelu", "n": 16}, 4, generator=gen()), with_(x16(), 2, 2, -3.0),
                       RBMTrainConfig(epochs=1, batch_size=10), generator=gen()), DataError, ["data", "-3"]),
    ("transform with wrong width", lambda: DBN([rbm16()]).transform(torch.rand(3, 15)), DataError,
     ["x", "16", "15"]),
    ("1-D data", train(torch.rand(16)), DataError, ["data", "2-D", "(16,)"]),
    ("ragged list", train([[0.0] * 16, [0.0] * 15]), DataError, ["data"]),
    ("valid with wrong features",
     lambda: train_rbm(rbm16(), x16(), RBMTrainConfig(epochs=1, batch_size=10), generator=gen(),
                       valid=torch.rand(5, 12)), DataError, ["valid", "12"]),
    # -- train_rbm: the hyper-parameters -------------------------------------------------------
    ("non-integer epochs", train(x16(), epochs=2.5), ConfigError, ["epochs", "2.5"]),
    ("string batch size", train(x16(), batch_size="10"), ConfigError, ["batch_size", "'10'"]),
    ("negative learning rate", train(x16(), lr=-0.1), ConfigError, ["lr", "-0.1"]),
    ("NaN learning rate", train(x16(), lr=float("nan")), ConfigError, ["lr", "nan"]),
    ("batch larger than data", train(x16(), batch_size=500), ConfigError, ["batch_size", "500", "40"]),
    ("unknown sampler", train(x16(), method="cdd"), ConfigError, ["method", "cdd"]),
    ("zero Gibbs steps", train(x16(), k=0), ConfigError, ["k", "0"]),
    ("momentum above 1", train(x16(), momentum=1.5), ConfigError, ["momentum", "1.5"]),
    ("sparsity target above 1", train(x16(), sparsity_target=2.0), ConfigError, ["sparsity_target", "2.0"]),
    ("unknown option name", lambda: RBMTrainConfig.from_dict({"learning_rate": 0.1}), ConfigError,
     ["learning_rate"]),
    ("generator not a Generator",
     lambda: train_rbm(rbm16(), x16(), RBMTrainConfig(epochs=1, batch_size=10), generator=42), ConfigError,
     ["generator", "42"]),
    ("zero checkpoint interval",
     lambda: train_rbm(rbm16(), x16(), RBMTrainConfig(epochs=1, batch_size=10), generator=gen(),
                       checkpoint_every=0), ConfigError, ["checkpoint_every", "0"]),
    ("resume without a checkpoint",
     lambda: train_rbm(rbm16(), x16(), RBMTrainConfig(epochs=1, batch_size=10), generator=gen(), resume=True),
     ConfigError, ["resume", "checkpoint=None"]),
    ("checkpoint_dir under a file",
     lambda: (write("plain", b""), pretrain_stack(x16(), [16, 4], generator=gen(), checkpoint_dir="plain/ck")),
     ConfigError, ["checkpoint_dir", "plain/ck"]),
    ("negative seed", lambda: make_generator(-1), ConfigError, ["seed", "-1"]),
    ("unknown device", lambda: resolve_device("tpu"), ConfigError, ["device", "tpu"]),
    # -- greedy stacking ----------------------------------------------------------------------------
    ("one layer only", lambda: pretrain_stack(x16(), [16], generator=gen()), ConfigError, ["layers", "[16]"]),
    ("negative layer size", lambda: pretrain_stack(x16(), [16, -3], generator=gen()), ConfigError,
     ["layers[1]", "-3"]),
    ("fractional layer size", lambda: pretrain_stack(x16(), [16, 2.5], generator=gen()), ConfigError,
     ["layers[1]", "2.5"]),
    ("config count mismatch",
     lambda: pretrain_stack(x16(), [16, 8, 4], [RBMTrainConfig()], generator=gen()), ConfigError,
     ["configs", "2", "1"]),
    ("stack data of wrong width",
     lambda: pretrain_stack(torch.rand(40, 9), [16, 8], RBMTrainConfig(epochs=1, batch_size=10),
                            generator=gen()), DataError, ["data", "9"]),
    ("layers that do not fit", lambda: DBN([RBM(6, 4), RBM(5, 3)]), ConfigError, ["layer 1", "5", "4"]),
    # -- unrolling, fine-tuning and prediction ----------------------------------------------------
    ("labels outside the classes", lambda: finetune(net16(), x16(), y3() + 8, generator=gen()), DataError,
     ["y", "[0, 2]", "10"]),
    ("negative labels", lambda: finetune(net16(), x16(), y3() - 1, generator=gen()), DataError, ["y", "-1"]),
    ("fractional labels", lambda: finetune(net16(), x16(), y3() + 0.5, generator=gen()), DataError,
     ["y", "0.5"]),
    ("NaN labels", lambda: finetune(net16(), x16(), torch.full((40,), float("nan")), generator=gen()), DataError,
     ["y", "nan"]),
    ("text labels", lambda: finetune(net16(), x16(), np.array(["a"] * 40), generator=gen()), DataError,
     ["y", "<U1"]),
    ("label count mismatch", lambda: finetune(net16(), x16(), y3(39), generator=gen()), DataError,
     ["y", "40", "39"]),
    ("fine-tuning batch too large",
     lambda: finetune(net16(), x16(), y3(), FinetuneConfig(batch_size=41), generator=gen()), ConfigError,
     ["batch_size", "41"]),
    ("fine-tuning negative lr", lambda: finetune(net16(), x16(), y3(), FinetuneConfig(lr=-1.0), generator=gen()),
     ConfigError, ["lr", "-1"]),
    ("dropout of 1", lambda: finetune(net16(), x16(), y3(), FinetuneConfig(dropout=1.0), generator=gen()),
     ConfigError, ["dropout", "1.0"]),
    ("fine-tuning a non-classifier", lambda: finetune(torch.nn.Linear(16, 3), x16(), y3(), generator=gen()),
     ConfigError, ["net", "Linear"]),
    ("predict with wrong width", lambda: net16().predict(torch.rand(4, 5)), DataError, ["x", "16", "5"]),
    ("predict with NaN", lambda: net16().predict(with_(x16(), 0, 0, float("nan"))), DataError, ["x", "NaN"]),
    ("unroll softmax hidden units", lambda: unroll([RBM(16, Softmax(4))], 3), ConfigError, ["softmax"]),
    ("one class", lambda: unroll(DBN([rbm16()]), 1), ConfigError, ["n_classes", "1"]),
    ("unknown activation", lambda: DeepClassifier([4, 3], ["tanhh"], 2), ConfigError, ["activation", "tanhh"]),
    # -- data sets and IDX files -------------------------------------------------------------------------
    ("unknown dataset", lambda: load_dataset("imagenet"), ConfigError, ["dataset", "imagenet"]),
    ("data_dir not a path", lambda: load_dataset("mnist", data_dir=123, download=False), ConfigError,
     ["data_dir", "123"]),
    ("missing IDX folder", lambda: load_idx_folder("no_such_folder"), DataError, ["path", "no_such_folder"]),
    ("IDX bad magic", lambda: read_idx(write("bad.idx", b"\x01\x02" + GOOD_IDX[2:])), DataError,
     ["bad.idx", "magic", "0x01 0x02"]),
    ("IDX unknown type code", lambda: read_idx(write("t.idx", GOOD_IDX[:2] + b"\x07" + GOOD_IDX[3:])), DataError,
     ["t.idx", "type code", "0x07"]),
    ("IDX zero dimensions", lambda: read_idx(write("d.idx", GOOD_IDX[:3] + b"\x00")), DataError,
     ["d.idx", "0 dimensions"]),
    ("IDX too many dimensions", lambda: read_idx(write("d9.idx", GOOD_IDX[:3] + b"\x09" + b"\x00" * 40)),
     DataError, ["d9.idx", "9 dimensions"]),
    ("IDX truncated payload", lambda: read_idx(write("short.idx", GOOD_IDX[:-5])), DataError,
     ["short.idx", "truncated", "24", "19"]),
    ("IDX truncated header", lambda: read_idx(write("h.idx", GOOD_IDX[:6])), DataError, ["h.idx", "truncated"]),
    ("IDX trailing bytes", lambda: read_idx(write("long.idx", GOOD_IDX + b"xyz")), DataError,
     ["long.idx", "trailing", "27"]),
    ("IDX header declaring a huge array",
     lambda: read_idx(write("huge.idx", bytes([0, 0, 8, 3]) + struct.pack(">3I", 2**31, 2**16, 2**16))),
     DataError, ["huge.idx", "2147483648"]),
    ("IDX gzip stream corrupt", lambda: read_idx(write("c.idx.gz", gzip.compress(GOOD_IDX)[:-12])), DataError,
     ["c.idx.gz"]),
    ("IDX checksum mismatch", lambda: read_idx(write("sum.idx", GOOD_IDX), sha256="00" * 32), DataError,
     ["sum.idx", "checksum", "0000"]),
    ("binarize outside [0, 1]", lambda: binarize(torch.full((2, 2), 1.5)), DataError, ["x", "1.5"]),
    # -- model files ---------------------------------------------------------------------------------------
    ("missing model file", lambda: load_model("nothing.safetensors"), ModelFileError, ["nothing.safetensors"]),
    ("empty model file", lambda: load_model(write("empty.safetensors", b"")), ModelFileError,
     ["empty.safetensors", "0 bytes"]),
    ("text file as model", lambda: load_model(write("notes.safetensors", b"hello world, not a model")),
     ModelFileError, ["notes.safetensors"]),
    ("model path not a path", lambda: load_model(123), ConfigError, ["path", "123"]),
    ("saving a non-model", lambda: save_model("m.safetensors", {"W": 1}), ConfigError, ["model", "dict"]),
    ("unroll an empty stack", lambda: unroll([], 3), ConfigError, ["dbn", "[]"]),
    # -- output paths -------------------------------------------------------------------------------------
    ("save into a missing folder", lambda: save_model("nope/m.safetensors", rbm16()), ConfigError,
     ["nope/m.safetensors", "does not exist"]),
    ("save over a folder", lambda: (os.mkdir("adir"), save_model("adir", rbm16())), ConfigError,
     ["adir", "folder"]),
    ("save under a file", lambda: (write("f", b""), save_model("f/m.safetensors", rbm16())), ConfigError,
     ["f/m.safetensors"]),
    ("tiles into a missing folder", lambda: save_tiles("nope/t.png", torch.rand(4, 16), (4, 4)), ConfigError,
     ["nope/t.png"]),
    ("tiles of the wrong shape", lambda: save_tiles("t.png", torch.rand(4, 15), (4, 4)), DataError,
     ["images", "(4, 15)"]),
]


def _files(folder: Path) -> set:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_a_clear_error_and_leaves_no_file(case, tmp_path, monkeypatch):
    name, call, error, needles = case
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DEEPBELIEF_DATA", str(tmp_path / "no-data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "no-cache"))
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    for needle in needles:
        assert needle in message, f"{name}: {needle!r} missing from {message!r}"
    # nothing but the inputs the case itself wrote: no output, no temporary file
    leftovers = {f for f in _files(tmp_path) if not f.endswith((".idx", ".gz", "empty.safetensors", "notes.safetensors"))
                 and f not in ("adir", "f", "plain")}
    assert leftovers == set(), f"{name} left {leftovers}"


def test_catalogue_is_at_least_thirty_cases():
    assert len(CASES) >= 30 and len({c[0] for c in CASES}) == len(CASES)


# -- the command line: one line "error: ...", exit status 2, no traceback, no file ----------
CLI_CASES = [
    ("unknown recipe", ["train", "--recipe", "nope"], ["recipe", "nope"]),
    ("negative epochs", ["train", "--epochs", "-1"], ["epochs", "-1"]),
    ("negative learning rate", ["train", "--lr", "-0.5"], ["lr", "-0.5"]),
    ("unknown method", ["train", "--method", "xyz"], ["method", "xyz"]),
    ("unknown hidden units", ["train", "--hidden", "softmax"], ["hidden", "softmax"]),
    ("unknown dataset", ["train", "--dataset", "nope", "--epochs", "1"], ["dataset", "nope"]),
    ("unknown device", ["train", "--device", "tpu"], ["device", "tpu"]),
    ("batch larger than data", ["train", "--batch-size", "5000", "--layers", "4", "--epochs", "1",
                                "--finetune-epochs", "0"], ["batch_size", "5000"]),
    ("negative seed", ["train", "--seed", "-1", "--layers", "4", "--epochs", "1"], ["seed", "-1"]),
    ("output in a missing folder", ["train", "-o", "missing/m.safetensors"], ["--output", "missing/m.safetensors"]),
    ("metrics in a missing folder", ["train", "--metrics-json", "missing/m.json"], ["--metrics-json", "missing"]),
    ("resume without a folder", ["train", "--resume"], ["--resume", "--checkpoint-dir"]),
    ("zero checkpoint interval", ["train", "--checkpoint-every", "0", "--checkpoint-dir", "ck"],
     ["checkpoint_every", "0"]),
    ("missing config file", ["train", "--config", "none.toml"], ["config", "none.toml"]),
    ("evaluate a missing model", ["evaluate", "none.safetensors"], ["none.safetensors", "does not exist"]),
    ("filters of a missing model", ["show-filters", "none.safetensors"], ["none.safetensors"]),
]


@pytest.mark.parametrize("case", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input(case, tmp_path, monkeypatch, capsys):
    name, argv, needles = case
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    for needle in needles:
        assert needle in err, f"{name}: {needle!r} missing from {err!r}"
    assert _files(tmp_path) - {"ck"} == set()


@pytest.mark.parametrize("argv,needle", [
    (["train", "--layers", "abc"], "--layers"),
    (["train", "--epochs", "2.5"], "--epochs"),
    (["nonsense"], "nonsense"),
])
def test_cli_argument_syntax_errors(argv, needle, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2 and needle in capsys.readouterr().err
    assert _files(tmp_path) == set()


def test_cli_unknown_config_key_and_bad_filter_count(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("c.toml").write_text("learning_rate = 3\n")
    assert main(["train", "--config", "c.toml"]) == 2
    assert "learning_rate" in capsys.readouterr().err
    save_model("m.safetensors", rbm16())
    assert main(["show-filters", "m.safetensors", "--n", "0"]) == 2
    assert "--n" in capsys.readouterr().err
    assert main(["show-filters", "m.safetensors", "-o", "missing/f.png"]) == 2
    assert "missing/f.png" in capsys.readouterr().err
    assert _files(tmp_path) == {"c.toml", "m.safetensors"}


def test_inputs_are_not_modified():
    x = x16()
    before = x.clone()
    train_rbm(rbm16(), x, RBMTrainConfig(epochs=1, batch_size=10), generator=gen())
    assert torch.equal(x, before)


# -- model files: no checksum, NaN/inf weights; output modes ----------------------------------------
def _rbm_file_without(path, drop_key="sha256", poison=None):
    """An RBM file as save_model writes it, minus its checksum key or with a poisoned tensor
    (then re-checksummed, so that only the poison is wrong)."""
    import json

    from safetensors.torch import save

    from deepbelief.io import META_KEY, save_tensors

    r = rbm16()
    state = {k: v.clone() for k, v in r.state_dict().items()}
    meta = {"kind": "rbm", "config": r.config()}
    if poison is not None:
        name, value = poison
        state[name].view(-1)[3] = value
        save_tensors(path, state, meta)
        return path
    save_tensors(path, state, meta)
    from deepbelief.io import load_tensors

    tensors, full = load_tensors(path)
    full.pop(drop_key)
    Path(path).write_bytes(save(tensors, metadata={META_KEY: json.dumps(full)}))
    return path


MODEL_FILE_CASES = [
    ("no sha256 key", lambda: load_model(_rbm_file_without("m.safetensors")), ["m.safetensors", "sha256"]),
    ("NaN weight loaded", lambda: load_model(_rbm_file_without("m.safetensors", poison=("W", float("nan")))),
     ["m.safetensors", "'W'", "NaN/inf"]),
    ("inf bias loaded", lambda: load_model(_rbm_file_without("m.safetensors", poison=("hidden.bias", float("inf")))),
     ["'hidden.bias'", "NaN/inf"]),
    ("-inf weight loaded", lambda: load_model(_rbm_file_without("m.safetensors", poison=("W", float("-inf")))),
     ["'W'"]),
]


@pytest.mark.parametrize("case", MODEL_FILE_CASES, ids=[c[0] for c in MODEL_FILE_CASES])
def test_unchecked_or_non_finite_model_files_are_refused(case, tmp_path, monkeypatch):
    name, call, needles = case
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelFileError) as info:
        call()
    for needle in needles:
        assert needle in str(info.value), f"{name}: {needle!r} missing from {info.value}"


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_save_model_refuses_non_finite_weights_and_writes_nothing(value, tmp_path):
    r = rbm16()
    with torch.no_grad():
        r.W[2, 1] = value
    with pytest.raises(ModelFileError, match="tensor 'W' holds 1 NaN/inf"):
        save_model(tmp_path / "m.safetensors", r)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [["evaluate"], ["show-filters", "-o", "f.png"]])
def test_cli_refuses_non_finite_models(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _rbm_file_without("m.safetensors", poison=("W", float("nan")))
    assert main([command[0], "m.safetensors", *command[1:]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "NaN/inf" in err and "Traceback" not in err
    assert not Path("f.png").exists()


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_follow_the_umask(umask, tmp_path):
    from deepbelief.io import atomic_write_bytes

    old = os.umask(umask)
    try:
        save_model(tmp_path / "m.safetensors", rbm16())
        atomic_write_bytes(tmp_path / "x.json", b"{}")
    finally:
        os.umask(old)
    for name in ("m.safetensors", "x.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask


def test_overwriting_keeps_the_existing_files_mode(tmp_path):
    from deepbelief.io import atomic_write_bytes

    path = tmp_path / "x.json"
    path.write_bytes(b"old")
    path.chmod(0o640)
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new" and path.stat().st_mode & 0o777 == 0o640


def test_every_file_we_write_carries_a_checksum(tmp_path):
    from deepbelief import checkpoint as ck
    from deepbelief.io import read_metadata

    save_model(tmp_path / "m.safetensors", rbm16())
    ck.save_checkpoint(tmp_path / "c.safetensors", kind="x", tensors={"a": torch.ones(2)}, meta={})
    for name in ("m.safetensors", "c.safetensors"):
        from deepbelief.io import load_tensors

        assert len(load_tensors(tmp_path / name)[1]["sha256"]) == 64
    assert read_metadata(tmp_path / "m.safetensors")["kind"] == "rbm"


def test_stale_temporaries_of_our_naming_are_removed_and_nothing_else(tmp_path):
    from deepbelief.io import remove_stale_temporaries

    stale = [tmp_path / ".layer0.ckpt.safetensors.ab_3x9z1.tmp", tmp_path / ".run.json.k2j4h5g6.tmp"]
    keep = [tmp_path / "notes.tmp", tmp_path / ".hidden", tmp_path / ".x.short.tmp", tmp_path / "run.json"]
    for p in stale + keep:
        p.write_bytes(b"x")
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted(stale)
    assert sorted(tmp_path.iterdir()) == sorted(keep)


# -- the command line's number and list parsers: refuse what they cannot read -----------------------
@pytest.mark.parametrize("argv,needles", [
    (["train", "--layers", "-5"], ["--layers", "'-5'"]),
    (["train", "--layers", "5,-6"], ["--layers", "'5,-6'"]),
    (["train", "--layers", "5,,6"], ["--layers", "empty entry"]),
    (["train", "--layers", "1e3"], ["--layers", "'1e3'"]),
    (["train", "--layers", "0"], ["--layers", "0 is below 1"]),
    (["train", "--layers", "500;500"], ["--layers", "'500;500'"]),
    (["train", "--layers", ""], ["--layers", "empty entry"]),
    (["train", "--layers", "5.5"], ["--layers", "'5.5'"]),
    (["show-filters", "m.safetensors", "--shape", "28,-28"], ["--shape", "'28,-28'"]),
    (["sample", "m.safetensors", "--shape", "x"], ["--shape", "'x'"]),
    (["finetune", "m.safetensors", "--gibbs-steps", "3,-6"], ["--gibbs-steps", "'3,-6'"]),
    (["plot", "curves", "m.csv", "--metrics", "loss,,recon"], ["--metrics", "empty entry"]),
    (["plot", "filters", "m.safetensors", "--shape", "0,5"], ["--shape", "0 is below 1"]),
    (["train", "--epochs", "ten"], ["--epochs", "'ten'"]),
    (["train", "--lr", "0.1.2"], ["--lr", "'0.1.2'"]),
])
def test_cli_list_and_number_parsers_refuse_what_they_cannot_read(argv, needles, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and "Traceback" not in err
    for needle in needles:
        assert needle in err, f"{needle!r} missing from {err!r}"
    assert _files(tmp_path) == set()


# -- command-line cases that used to end in a traceback: one line, exit status 2 ----------------------
def _toml(text):
    return lambda: Path("c.toml").write_text(text)


def _classifier16():
    save_model("m.safetensors", net16())  # 16 inputs; its data set defaults to the 64-pixel digits


PREPARED_CLI_CASES = [
    ("TOML layers is a number", _toml("layers = 100\n"), ["train", "--config", "c.toml"], ["layers", "100"]),
    ("TOML layer size is text", _toml('layers = [100, "x"]\n'), ["train", "--config", "c.toml"], ["layers[1]", "'x'"]),
    ("TOML layer size is zero", _toml("layers = [100, 0]\n"), ["train", "--config", "c.toml"], ["layers[1]", "0"]),
    ("TOML finetune is a number", _toml("finetune = 3\n"), ["train", "--config", "c.toml"], ["finetune", "3"]),
    ("TOML rbm is a number", _toml("rbm = 5\n"), ["train", "--config", "c.toml"], ["rbm", "5"]),
    ("TOML overrides not tables", _toml("layer_overrides = [1]\n"), ["train", "--config", "c.toml"],
     ["layer_overrides", "[1]"]),
    ("TOML generative is text", _toml('generative = "yes"\n'), ["train", "--config", "c.toml"],
     ["generative", "'yes'"]),
    ("TOML not TOML", _toml("layers = [\n"), ["train", "--config", "c.toml"], ["c.toml", "not valid TOML"]),
    ("config is a folder", lambda: os.mkdir("c.toml"), ["train", "--config", "c.toml"], ["c.toml", "is a folder"]),
    ("model is a folder", lambda: os.mkdir("m.safetensors"), ["evaluate", "m.safetensors"],
     ["m.safetensors", "is a folder"]),
    ("plotted model is a folder", lambda: os.mkdir("m.safetensors"), ["plot", "samples", "m.safetensors"],
     ["m.safetensors", "is a folder"]),
    ("metrics CSV is a folder", lambda: os.mkdir("m.csv"), ["plot", "curves", "m.csv"], ["m.csv", "is a folder"]),
    ("checkpoint dir is a file", lambda: write("ck", b""), ["train", "--checkpoint-dir", "ck", "--layers", "4"],
     ["checkpoint_dir", "'ck'", "is a file"]),
    ("output folder is a file", lambda: write("f", b""), ["train", "-o", "f/m.safetensors"], ["'f'", "is a file"]),
    ("data set of another image size", _classifier16, ["evaluate", "m.safetensors"],
     ["--dataset", "64", "16", "m.safetensors"]),
    ("a stack has no test error", lambda: save_model("m.safetensors", DBN([RBM(64, 8, generator=gen()), RBM(8, 4, generator=gen())])),
     ["evaluate", "m.safetensors"], ["'dbn'", "--loglik"]),
    ("layers too large for memory", lambda: None, ["train", "--layers", "100000000000"],
     ["layers", "100000000000", "GB", "memory"]),
    ("two huge layers", lambda: None, ["train", "--layers", "2000000,2000000"], ["layers", "GB"]),
    ("a seed beyond 64 bits", lambda: None, ["train", "--seed", "99999999999999999999"],
     ["seed", "99999999999999999999"]),
]


@pytest.mark.parametrize("case", PREPARED_CLI_CASES, ids=[c[0] for c in PREPARED_CLI_CASES])
def test_cli_errors_are_one_line_with_status_2(case, tmp_path, monkeypatch, capsys):
    name, prepare, argv, needles = case
    monkeypatch.chdir(tmp_path)
    prepare()
    before = _files(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    for needle in needles:
        assert needle in err, f"{name}: {needle!r} missing from {err!r}"
    assert _files(tmp_path) == before


def test_debug_shows_the_traceback_instead(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("c.toml").write_text("layers = 100\n")
    with pytest.raises(ConfigError, match="layers"):
        main(["--debug", "train", "--config", "c.toml"])
    with pytest.raises(ConfigError, match="layers"):
        main(["train", "--config", "c.toml", "--debug"])
