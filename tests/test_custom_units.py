"""A unit type defined here, outside the library, works everywhere once it subclasses Units.

``Spin`` units take the values {-1, +1} (Ising spins): p(u | x) is proportional to
exp(u (x + b)), so E[u | x] = tanh(x + b) and the free energy of a layer is
-sum log(2 cosh(x + b)). Nothing in deepbelief knows this type; defining the class
registers it. Every check below has an oracle: brute-force sums over the 2^n spin states
written out here (not exact.py's), autograd, or a closed form.
"""

import itertools

import numpy as np
import pytest
import torch

from deepbelief import exact
from deepbelief.ais import ais_log_partition
from deepbelief.dbn import DBN
from deepbelief.errors import ConfigError, DataError
from deepbelief.finetune import FastBackprop, FinetuneConfig, finetune, unroll
from deepbelief.interop import rbm_layer
from deepbelief.io import load_model, save_model
from deepbelief.rbm import RBM
from deepbelief.recipes import Recipe
from deepbelief.stacking import pretrain_stack
from deepbelief.training import RBMTrainConfig, make_generator, train_rbm
from deepbelief.units import Units, kinds, units_from_config


class Spin(Units):
    """Ising spins u in {-1, +1}: p(u | x) proportional to exp(u (x + b))."""

    kind = "spin"
    roles = ("visible", "hidden")
    activation = "tanh"  # E[u | z] = tanh(z): a new activation for the unrolled net
    activate = staticmethod(torch.tanh)

    def mean(self, x):
        return torch.tanh(x + self.bias)

    def sample(self, x, gen):
        p = torch.sigmoid(2.0 * (x + self.bias))  # p(u = +1 | x) = e^z / (e^z + e^-z)
        u = torch.rand(p.shape, generator=gen, device=p.device, dtype=p.dtype)
        return 2.0 * (u < p).to(p.dtype) - 1.0

    def free_energy(self, x):
        z = x + self.bias
        return -torch.logaddexp(z, -z).sum(-1)  # -sum log(e^z + e^-z)

    def base_rate_bias(self, data, eps=1e-3):
        # the factorised model with E[u] = m has b = atanh(m)
        return torch.atanh(data.mean(0).to(self.bias.dtype).clamp(-1 + eps, 1 - eps))

    def unit_values(self):
        return [-1.0, 1.0]

    def check_data(self, name, x):
        if x.numel() and (float(x.min()) < -1.0 or float(x.max()) > 1.0):
            raise DataError(f"{name} must lie in [-1, 1] for spin units, got [{float(x.min()):g}, {float(x.max()):g}]")


# -- oracles written out by hand ------------------------------------------------------
def spins(n):
    return torch.tensor(list(itertools.product([-1.0, 1.0], repeat=n)), dtype=torch.float64)


def energy(rbm, v, h):
    """E(v, h) = -b.v - c.h - v W h in float64."""
    W, b, c = (t.detach().double() for t in (rbm.W, rbm.visible.bias, rbm.hidden.bias))
    return -(v @ b) - (h @ c) - ((v @ W) * h).sum(-1)


def hand_log_z(rbm):
    vs, hs = spins(rbm.n_visible), spins(rbm.n_hidden)
    e = torch.stack([energy(rbm, vs, h.expand(vs.shape[0], -1)) for h in hs])
    return float(torch.logsumexp(-e.flatten(), 0))


def hand_log_p(rbm, v):
    """log p(v) = log sum_h exp(-E(v, h)) - log Z."""
    hs = spins(rbm.n_hidden)
    e = torch.stack([energy(rbm, v, h.expand(v.shape[0], -1)) for h in hs], 1)
    return torch.logsumexp(-e, 1) - hand_log_z(rbm)


def random_rbm(nv, nh, seed, std=0.5):
    g = make_generator(seed)
    r = RBM(Spin(nv), Spin(nh), weight_std=std, generator=g)
    with torch.no_grad():
        r.visible.bias.copy_(0.3 * torch.randn(nv, generator=g))
        r.hidden.bias.copy_(0.3 * torch.randn(nh, generator=g))
    return r


def correlated_spins(n_rows, seed):
    """Rows of 6 spins in two blocks of 3 that agree within a block with probability 0.9."""
    g = torch.Generator().manual_seed(seed)
    blocks = torch.where(torch.rand(n_rows, 2, generator=g) < 0.6, 1.0, -1.0).repeat_interleave(3, 1)
    flip = torch.where(torch.rand(n_rows, 6, generator=g) < 0.1, -1.0, 1.0)
    return blocks * flip


# -- the type itself ------------------------------------------------------------------
def test_subclassing_registers_the_type_for_every_choice_list():
    assert "spin" in kinds("visible") and "spin" in kinds("hidden")
    u = units_from_config({"type": "spin", "n": 3})
    assert isinstance(u, Spin) and u.n == 3
    with pytest.raises(ConfigError, match="already registered"):
        type("OtherSpin", (Units,), {"kind": "spin"})


def test_mean_and_free_energy_match_enumeration():
    u = Spin(3).double()
    with torch.no_grad():
        u.bias.copy_(torch.tensor([0.2, -0.5, 1.0]))
    x = torch.tensor([[0.3, 0.1, -2.0], [1.5, -0.7, 0.0]], dtype=torch.float64)
    s = spins(3)  # (8, 3)
    logits = (x + u.bias.detach()) @ s.T  # (2, 8): u . (x + b)
    assert torch.allclose(u.free_energy(x), -torch.logsumexp(logits, 1), atol=1e-12)
    assert torch.allclose(u.mean(x), torch.softmax(logits, 1) @ s, atol=1e-12)


def test_free_energy_gradient_matches_autograd():
    r = random_rbm(4, 3, seed=0).double()
    v = spins(4)[[0, 5, 9, 15]]
    grads = r.free_energy_grad(v)
    auto = torch.autograd.grad(r.free_energy(v).sum(), [r.W, r.visible.bias, r.hidden.bias])
    for name, a in zip(["W", "visible.bias", "hidden.bias"], auto):
        assert torch.allclose(grads[name], a, atol=1e-10), name


# -- exact enumeration and AIS ----------------------------------------------------------
@pytest.mark.parametrize("over", ["visible", "hidden", "auto"])
def test_exact_log_partition_matches_hand_enumeration(over):
    r = random_rbm(5, 3, seed=1)
    assert exact.log_partition(r, over=over) == pytest.approx(hand_log_z(r), abs=1e-9)
    v = spins(5)[[1, 7, 30]]
    assert torch.allclose(exact.log_prob(r, v), hand_log_p(r, v), atol=1e-9)


def test_ais_log_z_matches_exact():
    r = random_rbm(6, 4, seed=2)
    data = correlated_spins(200, seed=0)
    res = ais_log_partition(r, n_runs=200, betas=2000, over="visible", base_data=data, generator=make_generator(0))
    assert res.log_z == pytest.approx(hand_log_z(r), abs=0.05)
    # the base model is the factorised spin model fitted to the data, tanh(b_A) = mean,
    # times the hidden layer alone: log Z_A = sum log 2 cosh(b_A) + sum log 2 cosh(c)
    b_a = torch.atanh(data.double().mean(0).clamp(-0.999, 0.999))
    c = r.hidden.bias.detach().double()
    assert res.log_z_base == pytest.approx(float(torch.log(2 * torch.cosh(torch.cat([b_a, c]))).sum()), abs=1e-6)


# -- training, stacking, unrolling -------------------------------------------------------
def test_train_rbm_beats_the_best_factorised_model_by_exact_likelihood():
    data = correlated_spins(300, seed=1)
    g = make_generator(3)
    rbm = RBM(Spin(6), Spin(2), weight_std=0.1, generator=g)
    train_rbm(rbm, data, RBMTrainConfig(epochs=0), generator=g)
    # epoch 0 sets the visible biases to the base rates: tanh(b) = data mean
    assert torch.allclose(torch.tanh(rbm.visible.bias.detach()), data.mean(0), atol=1e-5)
    m = data.double().mean(0)
    indep = float(((1 + data.double()) / 2 * torch.log((1 + m) / 2)
                   + (1 - data.double()) / 2 * torch.log((1 - m) / 2)).sum(1).mean())
    train_rbm(rbm, data, RBMTrainConfig(epochs=30, batch_size=10, lr=0.05), generator=g)
    trained = float(exact.log_prob(rbm, data).mean())
    assert trained == pytest.approx(float(hand_log_p(rbm, data.double()).mean()), abs=1e-9)
    assert trained > indep + 0.5  # the blocks' correlations are learned (independent model: no)


def stack_of_spins():
    data = correlated_spins(200, seed=2)
    g = make_generator(4)
    layers = [{"type": "spin", "n": 6}, {"type": "spin", "n": 4}, {"type": "spin", "n": 2}]
    stack = pretrain_stack(data, layers, RBMTrainConfig(epochs=3, batch_size=20, lr=0.05), generator=g)
    return stack, data, g


def test_pretrain_stack_passes_tanh_means_up_and_dbn_log_prob_matches_enumeration():
    stack, data, _ = stack_of_spins()
    assert all(isinstance(u, Spin) for r in stack.rbms for u in (r.visible, r.hidden))
    r0, r1 = stack.rbms
    hand = torch.tanh(torch.tanh(data @ r0.W + r0.hidden.bias) @ r1.W + r1.hidden.bias)
    assert torch.allclose(stack.transform(data), hand, atol=1e-6)
    # p(v) = sum_h1 p(v | h1) p_top(h1), p(v | h1) a product of independent spins
    v = data[:5].double()
    h1 = spins(4)
    top_lp = hand_log_p(r1, h1)  # (16,)
    z = h1 @ r0.W.detach().double().T + r0.visible.bias.detach().double()  # (16, 6)
    cond = v @ z.T - torch.logaddexp(z, -z).sum(1)  # (5, 16): log p(v | h1)
    assert torch.allclose(exact.dbn_log_prob(stack, v), torch.logsumexp(cond + top_lp, 1), atol=1e-9)


def test_unroll_uses_the_units_activation_and_finetune_trains_it():
    stack, data, g = stack_of_spins()
    net = unroll(stack, 2, generator=g)
    assert net.activations == ["tanh", "tanh"] and not FastBackprop.supports(net)
    assert torch.allclose(net.features(data), stack.transform(data), atol=1e-6)
    assert torch.allclose(rbm_layer(stack.rbms[0])(data), stack.rbms[0].mean_hidden(data), atol=1e-6)
    y = (data[:, 0] > 0).long()  # a label the first block carries
    hist = finetune(net, data, y, FinetuneConfig(epochs=8, batch_size=20, lr=0.1, top_only_epochs=2), generator=g)
    assert hist[-1]["loss"] < hist[0]["loss"]


# -- model files, estimator, recipes and the CLI -------------------------------------------
def test_model_files_round_trip(tmp_path):
    stack, data, g = stack_of_spins()
    net = unroll(stack, 2, generator=g)
    for name, model in [("rbm", stack.rbms[0]), ("dbn", stack), ("net", net)]:
        save_model(tmp_path / f"{name}.safetensors", model)
        back = load_model(tmp_path / f"{name}.safetensors")
        assert type(back) is type(model) and back.config() == model.config()
        for (k, a), (k2, b) in zip(model.state_dict().items(), back.state_dict().items()):
            assert k == k2 and torch.equal(a, b)
    back = load_model(tmp_path / "dbn.safetensors")
    assert isinstance(back, DBN) and isinstance(back.rbms[1].hidden, Spin)
    assert torch.equal(back.transform(data), stack.transform(data))
    assert torch.equal(load_model(tmp_path / "net.safetensors")(data), net(data))


def test_rbm_transformer_fits_spin_units():
    from deepbelief.estimators import DBNTransformer, RBMTransformer

    X = correlated_spins(100, seed=3).numpy().astype(np.float64)  # outside [0, 1]: no Bernoulli check
    est = RBMTransformer(n_components=3, visible="spin", hidden="spin", n_iter=3, batch_size=10,
                         random_state=0).fit(X)
    assert isinstance(est.rbm_.visible, Spin) and isinstance(est.rbm_.hidden, Spin)
    hand = np.tanh(X @ est.components_.T + est.intercept_hidden_)
    np.testing.assert_allclose(est.transform(X), hand, atol=1e-10)
    dbn = DBNTransformer(hidden_layer_sizes=(4, 2), visible="spin", n_iter=2, batch_size=10, random_state=0).fit(X)
    assert isinstance(dbn.dbn_.rbms[0].visible, Spin)


def test_recipe_and_cli_offer_the_type(tmp_path, capsys):
    Recipe(visible="spin", hidden="spin").validate()
    with pytest.raises(ConfigError, match="'spin'"):  # the choice list names it
        Recipe(hidden="nope").validate()
    from deepbelief.cli import main

    out = tmp_path / "m.safetensors"
    rc = main(["train", "--visible", "spin", "--hidden", "spin", "--layers", "8", "--epochs", "1",
               "--finetune-epochs", "1", "--device", "cpu", "--quiet", "-o", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert load_model(out).activations == ["tanh"]  # the fine-tuned classifier
    dbn = load_model(tmp_path / "m.dbn.safetensors")
    assert isinstance(dbn.rbms[0].visible, Spin) and isinstance(dbn.rbms[0].hidden, Spin)
