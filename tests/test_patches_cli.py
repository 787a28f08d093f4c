"""Contrast selection of natural image patches, the whitening options of ``deepbelief
train`` and their round trip through config files and model metadata."""

import argparse

import numpy as np
import pytest
import torch

from deepbelief.errors import ConfigError, DataError

GOOD_FLAGS = ["--dataset", "patches", "--min-contrast", "0.03", "--visible", "gaussian", "--hidden", "bernoulli",
              "--transform", "zca", "--whiten-eps", "1.0", "--row-center", "--layers", "100", "--lr", "0.01",
              "--weight-decay", "1e-4", "--sparsity-target", "0.05", "--sparsity-cost", "0.5",
              "--batch-size", "100", "--finetune-epochs", "0"]


def test_select_contrast_keeps_exactly_the_rows_above_the_threshold():
    from deepbelief.data import load_patches_dataset, select_contrast

    raw = load_patches_dataset(8, n_train=3000, n_test=10, seed=1).x_train.numpy()
    rng = np.random.default_rng(0)
    synth = rng.random((500, 16)) * rng.random((500, 1)) * 0.2  # a spread of row stds around 0.03
    for x in (raw, synth):
        for c in (0.01, 0.03, 0.05):
            sd = x.astype(np.float64).std(1, ddof=1)
            want = x[sd > c]
            assert 0 < len(want) < len(x)  # the threshold actually splits the rows
            got = select_contrast(x, c)
            assert isinstance(got, np.ndarray) and np.array_equal(got, want)
            got_t = select_contrast(torch.from_numpy(x), c)
            assert isinstance(got_t, torch.Tensor) and np.array_equal(got_t.numpy(), want)
    assert select_contrast(raw, 0.0) is raw  # 0 keeps all


@pytest.mark.parametrize("bad", [-0.01, float("nan"), float("inf"), "0.03", True, 2.0])
def test_bad_min_contrast_is_an_error_naming_it(bad):
    from deepbelief.data import load_dataset, load_patches_dataset, select_contrast

    calls = [lambda: load_patches_dataset(8, n_train=10, n_test=2, min_contrast=bad),
             lambda: load_dataset("patches", min_contrast=bad)]
    if bad != 2.0:  # grey levels lie in [0, 1]: only the patch loaders cap the threshold at 1
        calls.append(lambda: select_contrast(np.zeros((3, 4)), bad))
    for call in calls:
        with pytest.raises(ConfigError, match="min_contrast"):
            call()


def test_min_contrast_is_for_patches_only_and_an_impossible_threshold_is_reported():
    from deepbelief.data import load_dataset, load_patches_dataset
    from deepbelief.recipes import Recipe

    with pytest.raises(ConfigError, match="min_contrast.*patches"):
        load_dataset("digits", min_contrast=0.03)
    with pytest.raises(ConfigError, match="min_contrast.*patches"):
        Recipe(min_contrast=0.03).validate()
    with pytest.raises(DataError, match="min_contrast=0.9"):  # no 8x8 patch of a photo is that contrasty
        load_patches_dataset(8, n_train=4, n_test=2, min_contrast=0.9)


def test_contrast_selected_patches_keep_the_sizes_the_split_and_the_default():
    from deepbelief.data import load_patches_dataset

    base = load_patches_dataset(8, n_train=2000, n_test=600, seed=2)
    same = load_patches_dataset(8, n_train=2000, n_test=600, seed=2, min_contrast=0.0)
    assert torch.equal(base.x_train, same.x_train) and torch.equal(base.x_test, same.x_test)
    frac = float((base.x_train.double().std(1) > 0.03).double().mean())
    assert 0.2 < frac < 0.7  # most patches are flat: the selection has to draw extra candidates
    ds = load_patches_dataset(8, n_train=2000, n_test=600, seed=2, min_contrast=0.03)
    assert ds.x_train.shape == (2000, 64) and ds.x_test.shape == (600, 64)
    # float32 storage may round a std just above the threshold down by ~1e-8
    assert float(ds.x_train.double().std(1).min()) > 0.03 - 1e-6
    assert float(ds.x_test.double().std(1).min()) > 0.03 - 1e-6
    assert int(ds.y_train.sum()) == 1000 and int(ds.y_test.sum()) == 300  # half from each photograph
    again = load_patches_dataset(8, n_train=2000, n_test=600, seed=2, min_contrast=0.03)
    assert torch.equal(ds.x_train, again.x_train) and torch.equal(ds.x_test, again.x_test)
    # the kept training patches still come from the training blocks of the checkerboard:
    # none of them occurs among a large draw of test patches (disjoint pixels)
    te = {r.tobytes() for r in load_patches_dataset(8, n_train=2, n_test=20000, seed=5).x_test.numpy()}
    assert not any(r.tobytes() in te for r in ds.x_train.numpy())


def test_cli_trains_patches_with_the_benchmark_settings_and_records_them(tmp_path, capsys):
    from deepbelief.cli import main
    from deepbelief.cli.evaluate import _dataset_for
    from deepbelief.data import load_patches_dataset
    from deepbelief.io import load_model, read_metadata
    from deepbelief.transforms import Whiten, transform_from_dict

    out = tmp_path / "p.safetensors"
    assert main(["train", *GOOD_FLAGS, "--epochs", "1", "--quiet", "--device", "cpu", "-o", str(out)]) == 0
    meta = read_metadata(out)
    assert meta["recipe"]["min_contrast"] == 0.03
    assert meta["recipe"]["whiten_eps"] == 1.0 and meta["recipe"]["row_center"] is True
    assert meta["recipe"]["rbm"]["sparsity_target"] == 0.05 and meta["recipe"]["rbm"]["weight_decay"] == 1e-4
    t = meta["input_transform"]
    assert (t["type"], t["method"], t["eps"], t["row_center"]) == ("whiten", "zca", 1.0, True)
    # the stored transform is the benchmark's, fitted to the contrast-selected training rows
    ds = load_patches_dataset(min_contrast=0.03)
    x_tr = ds.x_train[: len(ds.x_train) - meta["recipe"]["n_valid"]]
    ref = Whiten(method="zca", eps=1.0, row_center=True).fit(x_tr)
    assert torch.allclose(transform_from_dict(t).matrix, ref.matrix, atol=1e-5)
    rbm = load_model(out).rbms[0]
    assert rbm.visible.kind == "gaussian" and rbm.W.shape == (64, 100)
    # evaluate / loglik load the model's own data set with the same selection
    ev = _dataset_for(meta, argparse.Namespace(dataset=None, data_dir=None))
    assert torch.equal(ev.x_test, ds.x_test)
    png = tmp_path / "f.png"
    assert main(["show-filters", str(out), "-o", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_new_flags_round_trip_through_toml(tmp_path):
    from deepbelief.cli import main
    from deepbelief.config import load_toml
    from deepbelief.recipes import Recipe

    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    assert main(["train", *GOOD_FLAGS, "--epochs", "30", "--save-config", str(a)]) == 0
    d = load_toml(a)
    assert (d["min_contrast"], d["whiten_eps"], d["row_center"], d["input_transform"]) == (0.03, 1.0, True, "zca")
    assert (d["rbm"]["lr"], d["rbm"]["sparsity_cost"], d["rbm"]["epochs"]) == (0.01, 0.5, 30)
    assert main(["train", "--config", str(a), "--save-config", str(b)]) == 0
    assert a.read_text() == b.read_text()
    r = Recipe.from_dict(d)
    assert (r.min_contrast, r.whiten_eps, r.row_center, r.rbm.sparsity_target) == (0.03, 1.0, True, 0.05)
    # a flag beside --config overrides it
    assert main(["train", "--config", str(a), "--no-row-center", "--whiten-eps", "0.5", "--save-config", str(b)]) == 0
    assert (load_toml(b)["row_center"], load_toml(b)["whiten_eps"]) == (False, 0.5)


def test_cli_bad_values_name_the_option(tmp_path, capsys):
    from deepbelief.cli import main

    for flags, name in ((["--dataset", "patches", "--min-contrast", "-1"], "min_contrast"),
                        (["--min-contrast", "0.03"], "min_contrast"),  # digits
                        (["--transform", "zca", "--whiten-eps", "-0.5"], "whiten_eps")):
        assert main(["train", *flags, "--save-config", str(tmp_path / "x.toml")]) == 2
        assert name in capsys.readouterr().err


def test_loglik_change_of_variables_for_each_input_transform():
    """`evaluate --loglik` adds log|det A| of the input transform: checked against the
    densities of a Gaussian before and after the transform; a row-centred (singular)
    transform is reported in the transformed space with a note, not a crash."""
    from deepbelief.transforms import log_jacobian as _log_jacobian
    from deepbelief.transforms import Standardize, Whiten

    g = torch.Generator().manual_seed(0)
    a = torch.randn(5, 5, generator=g, dtype=torch.float64)
    cov, mu = a @ a.T + torch.eye(5, dtype=torch.float64), torch.arange(5, dtype=torch.float64)
    px = torch.distributions.MultivariateNormal(mu, cov)
    x = px.sample((4000,))
    xs = px.sample((7,))
    for t in (Standardize(), Whiten(method="zca", eps=0.0), Whiten(method="zca", eps=1.0), Whiten(method="pca")):
        t.fit(x)
        A = t.linear_part().double()
        py = torch.distributions.MultivariateNormal((mu - t.mean) @ A, A.T @ cov @ A)  # y = (x - m) A
        jac, note = _log_jacobian(t.to_dict())
        assert note is None
        assert torch.allclose(py.log_prob(t(xs)) + jac, px.log_prob(xs), atol=1e-8)
    jac, note = _log_jacobian(Whiten(method="zca", eps=1.0, row_center=True).fit(x).to_dict())
    assert jac == 0.0 and "not invertible" in note
    assert _log_jacobian(None) == (0.0, None)
