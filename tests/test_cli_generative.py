"""The generative DBN's command line: train --recipe hot2006, evaluate, sample, finetune --resume."""

import struct

import pytest
import torch

from deepbelief.cli import main
from deepbelief.io import load_model, read_metadata


def png_size(path):
    data = open(path, "rb").read(33)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])  # (width, height)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("gen")
    out = d / "g.safetensors"
    rc = main(["train", "--recipe", "hot2006", "--dataset", "digits", "--layers", "16,16,32", "--epochs", "1",
               "--batch-size", "50", "--finetune-epochs", "0", "--quiet", "--device", "cpu", "-o", str(out)])
    assert rc == 0
    return out


def test_train_and_evaluate_report_the_free_energy_error(trained, capsys):
    meta = read_metadata(trained)
    assert meta["kind"] == "generative_dbn" and meta["recipe"]["name"] == "hot2006"
    m = load_model(trained)
    assert m.tied and m.sizes == [64, 16, 16, 32] and m.n_labels == 10
    assert main(["evaluate", str(trained), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    # the printed error is the model's own free-energy classification error on the test set
    from deepbelief.data import load_dataset

    ds = load_dataset("digits")
    err = float((m.predict(ds.x_test) != ds.y_test).float().mean())
    assert f"{100 * err:.2f}%" in text and f"{100 * meta['metrics']['test_error']:.2f}%" in text


def test_sample_grid_and_chain(trained, tmp_path):
    grid = tmp_path / "grid.png"
    assert main(["sample", str(trained), "--grid", "3", "--steps", "5", "-o", str(grid), "--device", "cpu"]) == 0
    # 10 rows x 3 columns of 8x8 tiles, 1-pixel padding, enlarged twice
    assert png_size(grid) == ((3 * 9 + 1) * 2, (10 * 9 + 1) * 2)
    chain = tmp_path / "chain.png"
    assert main(["sample", str(trained), "--label", "3", "--n", "2", "--steps", "6", "--chain-every", "2",
                 "-o", str(chain), "--device", "cpu"]) == 0
    assert png_size(chain) == ((3 * 9 + 1) * 2, (2 * 9 + 1) * 2)
    # --init reaches the sampler: the same seed from another start draws other images
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    for path, init in ((a, "biases"), (b, "top-noise")):
        assert main(["sample", str(trained), "--grid", "2", "--steps", "0", "--init", init, "-o", str(path),
                     "--device", "cpu"]) == 0
    assert a.read_bytes() != b.read_bytes()


def test_finetune_up_down_resumes_to_the_same_weights(trained, tmp_path):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    common = ["--method", "up-down", "--batch-size", "100", "--gibbs-steps", "2", "--device", "cpu", "--quiet"]
    assert main(["finetune", str(trained), "--epochs", "2", "-o", str(a)] + common) == 0
    # one epoch, then resume to two: bit-identical to the straight run
    assert main(["finetune", str(trained), "--epochs", "1", "-o", str(b)] + common) == 0
    assert main(["finetune", str(trained), "--epochs", "2", "-o", str(b), "--resume"] + common) == 0
    ma, mb = load_model(a), load_model(b)
    assert not ma.tied
    for (k, x), y in zip(ma.state_dict().items(), mb.state_dict().values()):
        assert torch.equal(x, y), k
    assert read_metadata(a)["updown"]["epochs"] == 2


def test_user_errors_are_one_line(trained, tmp_path, capsys):
    assert main(["sample", str(trained), "--label", "12", "--steps", "1", "-o", str(tmp_path / "x.png")]) == 2
    assert "--label must be in [0, 9], got 12" in capsys.readouterr().err
    assert main(["finetune", str(trained), "--method", "backprop"]) == 2
    assert "--method must be one of ['up-down'], got 'backprop'" in capsys.readouterr().err
    # the one resume rule: no checkpoint yet means nothing to continue, so it says so and starts
    out, ck = tmp_path / "u.safetensors", tmp_path / "none.safetensors"
    assert main(["finetune", str(trained), "--resume", "--epochs", "0", "--checkpoint", str(ck), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "nothing to continue" in printed and "no checkpoint written" in printed and not ck.exists()
    assert main(["finetune", str(trained), "--checkpoint", str(out), "-o", str(out)]) == 2
    assert "same path" in capsys.readouterr().err


def test_plot_samples_draws_a_generative_dbns_class_conditional_samples(trained, tmp_path, capsys):
    # the same chains as `sample --grid` (same seed, same steps): the same image
    plot, grid = tmp_path / "plot.png", tmp_path / "grid.png"
    assert main(["plot", "samples", str(trained), "--n", "20", "--steps", "4", "-o", str(plot), "--device", "cpu"]) == 0
    assert "20 class-conditional samples (one row per class, 2 each)" in capsys.readouterr().out
    assert main(["sample", str(trained), "--grid", "2", "--steps", "4", "-o", str(grid), "--device", "cpu"]) == 0
    assert plot.read_bytes() == grid.read_bytes()


def test_finetune_flags_reach_the_up_down_config(trained, tmp_path):
    out = tmp_path / "p.safetensors"
    assert main(["finetune", str(trained), "--epochs", "2", "--lr", "0.02", "--lr-final", "0.01", "--persistent",
                 "--batch-size", "100", "--gibbs-steps", "2", "-o", str(out), "--device", "cpu", "--quiet"]) == 0
    ud = read_metadata(out)["updown"]
    assert (ud["lr"], ud["lr_final"], ud["persistent"], ud["epochs"]) == (0.02, 0.01, True, 2)
