"""Input transforms, the natural image patch dataset, Gaussian-RBM training stability and
the real-valued CLI path."""

import json

import pytest
import torch

from deepbelief.errors import ConfigError, DataError
from deepbelief.transforms import Standardize, Whiten, make_transform, transform_from_dict


def correlated(n=4000, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    return torch.randn(n, d, generator=g, dtype=torch.float64) @ a + torch.arange(d, dtype=torch.float64)


def test_standardize_zero_mean_unit_variance_and_round_trip():
    x = correlated()
    x_copy = x.clone()
    t = Standardize().fit(x)
    y = t(x)
    assert torch.equal(x, x_copy)  # input not modified
    assert torch.allclose(y.mean(0), torch.zeros(5, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(y.std(0), torch.ones(5, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(t.inverse(y), x, atol=1e-10)
    t2 = transform_from_dict(json.loads(json.dumps(t.to_dict())))
    assert torch.allclose(t2(x), y)


@pytest.mark.parametrize("method", ["zca", "pca"])
def test_whitening_gives_identity_covariance(method):
    x = correlated()
    t = make_transform(method, eps=0.0).fit(x)
    y = t(x)
    cov = torch.cov(y.T)
    assert torch.allclose(cov, torch.eye(5, dtype=torch.float64), atol=1e-8)
    if method == "zca":  # ZCA is the symmetric whitening matrix
        assert torch.allclose(t.matrix, t.matrix.T, atol=1e-10)
    assert torch.allclose(t.inverse(y), x, atol=1e-8)
    t2 = transform_from_dict(json.loads(json.dumps(t.to_dict())))
    assert torch.allclose(t2(x), y)


def test_regularised_whitening_has_unit_average_variance_and_row_centering():
    x = correlated()
    t = Whiten(eps=0.5, row_center=True).fit(x)
    y = t(x)
    assert float(y.var(0).mean()) == pytest.approx(1.0, abs=1e-8)
    # row centering: adding a constant to a row does not change its transform
    assert torch.allclose(t(x[:10] + 3.0), y[:10], atol=1e-8)


def test_transform_errors_name_the_problem():
    with pytest.raises(ConfigError, match="fitted"):
        Standardize()(torch.zeros(2, 3))
    t = Standardize().fit(correlated())
    with pytest.raises(DataError, match=r"\(n, 5\)"):
        t(torch.zeros(2, 4))
    with pytest.raises(ConfigError, match="transform"):
        make_transform("fancy")
    with pytest.raises(ConfigError, match="n_components"):
        Whiten(method="zca", n_components=3)
    with pytest.raises(ConfigError, match="input_transform"):
        transform_from_dict({"type": "nope"})


def test_patches_dataset_is_deterministic_and_split_by_region():
    from deepbelief.data import load_patches_dataset

    a = load_patches_dataset(8, n_train=600, n_test=200, seed=3)
    b = load_patches_dataset(8, n_train=600, n_test=200, seed=3)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.x_test, b.x_test)
    assert a.x_train.shape == (600, 64) and a.x_test.shape == (200, 64) and a.image_shape == (8, 8)
    assert float(a.x_train.min()) >= 0 and float(a.x_train.max()) <= 1
    assert set(a.y_train.tolist()) == {0, 1}
    # natural images: neighbouring pixels are strongly correlated
    img = a.x_train.reshape(-1, 8, 8)
    c = torch.corrcoef(torch.stack([img[:, :, :-1].flatten(), img[:, :, 1:].flatten()]))[0, 1]
    assert float(c) > 0.8
    # no test patch equals a training patch (they come from disjoint blocks)
    d = torch.cdist(a.x_test, a.x_train).min()
    assert float(d) > 0
    with pytest.raises(ConfigError, match="size"):
        load_patches_dataset(1)


def test_gaussian_rbm_learned_variance_training_is_stable_over_20_seeds():
    """20 seeds of CD-1 with learned variances on standardised patches, with an
    aggressive learning rate, never produce NaN/inf and keep log sigma^2 in its bounds."""
    from deepbelief.data import load_patches_dataset
    from deepbelief.rbm import RBM
    from deepbelief.training import RBMTrainConfig, train_rbm
    from deepbelief.units import Gaussian

    ds = load_patches_dataset(6, n_train=200, n_test=10, seed=0)
    x = Standardize(row_center=True).fit(ds.x_train)(ds.x_train).float()
    lo, hi = -0.2, 0.2  # tight, so that the clamp is exercised
    hit = 0
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        r = RBM(Gaussian(36, log_var_min=lo, log_var_max=hi, var_lr_scale=1.0), 16, weight_std=0.1, generator=g)
        train_rbm(r, x, RBMTrainConfig(epochs=2, batch_size=20, lr=0.1, monitor_size=50), generator=g)
        lv = r.visible.log_var.detach()
        assert all(bool(torch.isfinite(p).all()) for p in r.parameters())
        assert float(lv.min()) >= lo - 1e-6 and float(lv.max()) <= hi + 1e-6  # float32 rounding
        hit += int(bool(((lv - lo).abs() < 1e-6).any() or ((lv - hi).abs() < 1e-6).any()))
    assert hit > 0  # the bounds were actually exercised, not vacuous


def test_cli_gaussian_nrelu_train_evaluate_show_filters(tmp_path, capsys):
    from deepbelief.cli import main
    from deepbelief.io import load_model, read_metadata

    out = tmp_path / "m.safetensors"
    rc = main(["train", "--visible", "gaussian", "--hidden", "nrelu", "--layers", "20", "--epochs", "1",
               "--lr", "0.01", "--finetune-epochs", "1", "--transform", "zca", "--quiet", "-o", str(out),
               "--device", "cpu"])
    assert rc == 0
    meta = read_metadata(out)
    assert meta["input_transform"]["type"] == "whiten"
    dbn = load_model(out.with_name("m.dbn.safetensors"))
    assert dbn.rbms[0].visible.kind == "gaussian" and dbn.rbms[0].hidden.kind == "nrelu"
    assert main(["evaluate", str(out)]) == 0
    png = tmp_path / "f.png"
    assert main(["show-filters", str(out.with_name("m.dbn.safetensors")), "-o", str(png), "--n", "20"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the shown filters are A W / sigma^2 (input space); check against a hand computation
    from deepbelief.filters import input_space_filters

    r = dbn.rbms[0]
    w = input_space_filters(dbn, r.W.detach().T, meta)
    a = transform_from_dict(meta["input_transform"]).linear_part().float()
    assert torch.allclose(w, (a @ (r.W.detach() * r.visible.inv_var().detach()[:, None])).T, atol=1e-5)


@pytest.mark.parametrize("first", ["nrelu", "stepped_sigmoid"])
def test_stack_with_real_valued_hidden_layer_saves_loads_and_unrolls(tmp_path, first):
    """A stack whose first hidden layer is NReLU / stepped sigmoid (so the second RBM has
    those as visible units) trains, round-trips through save/load bit-exactly, and the
    unrolled network's features equal the stack's deterministic up-pass."""
    from deepbelief.finetune import unroll
    from deepbelief.io import load_model, save_model
    from deepbelief.stacking import pretrain_stack
    from deepbelief.training import RBMTrainConfig

    g = torch.Generator().manual_seed(0)
    x = (torch.rand(200, 16, generator=g) < 0.3).float()
    cfg = RBMTrainConfig(epochs=2, batch_size=20, lr=0.01, monitor_size=50)
    spec = {"type": first, "n": 8, **({"copies": 6} if first == "stepped_sigmoid" else {})}
    dbn = pretrain_stack(x, [16, spec, 5], cfg, generator=g)
    assert dbn.rbms[1].visible.kind == first
    assert all(bool(torch.isfinite(p).all()) for p in dbn.parameters())
    save_model(tmp_path / "s.safetensors", dbn)
    back = load_model(tmp_path / "s.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(dbn.state_dict().values(), back.state_dict().values()))
    net = unroll(back, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        # NReLU unrolls to relu, exactly its mean; a stepped sigmoid unrolls to softplus, the
        # N -> infinity limit of its exact mean: within the midpoint-rule error (< 0.011 for
        # inputs well below N, as here with small weights) per layer
        tol = 1e-5 if first == "nrelu" else 0.02
        assert torch.allclose(net.features(x), dbn.transform(x), atol=tol)
