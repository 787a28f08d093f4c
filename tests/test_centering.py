"""Centred RBMs (centering.py): the re-parameterisation, the update and the offsets' storage,
against exact enumeration and hand-derived formulas (float64)."""

import copy

import pytest
import torch

from deepbelief import exact
from deepbelief.centering import centred_energy, centred_biases, ordinary_biases, shift_offsets
from deepbelief.errors import ConfigError
from deepbelief.rbm import RBM


def ordinary(W, b, c):
    r = RBM(W.shape[0], W.shape[1]).double().requires_grad_(False)
    r.W.copy_(W)
    r.visible.bias.copy_(b)
    r.hidden.bias.copy_(c)
    return r


def centred_log_prob(W, bc, cc, mu, lam):
    """log p(v) of every visible state by enumerating E_c over all (v, h): (2^n_v,)."""
    vs, hs = exact.all_binary(W.shape[0]), exact.all_binary(W.shape[1])
    V = vs.repeat_interleave(hs.shape[0], 0)
    H = hs.repeat(vs.shape[0], 1)
    neg_e = -centred_energy(V, H, W, bc, cc, mu, lam).reshape(vs.shape[0], hs.shape[0])
    return torch.logsumexp(neg_e, 1) - torch.logsumexp(neg_e.reshape(-1), 0)


def params(seed=0, nv=6, nh=4):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    u = lambda *s: torch.rand(*s, generator=g, dtype=torch.float64)  # noqa: E731
    return r(nv, nh), r(nv) * 0.5, r(nh) * 0.5, u(nv), u(nh)


def test_centred_energy_is_the_ordinary_rbm():
    W, bc, cc, mu, lam = params()
    b, c = ordinary_biases(W, bc, cc, mu, lam)
    r = ordinary(W, b, c)
    vs = exact.all_binary(6)
    assert torch.allclose(centred_log_prob(W, bc, cc, mu, lam), exact.log_prob(r, vs), atol=1e-10, rtol=0)
    back = centred_biases(W, b, c, mu, lam)
    assert torch.allclose(back[0], bc, atol=1e-14) and torch.allclose(back[1], cc, atol=1e-14)


def test_offset_change_leaves_the_distribution_unchanged():
    """Moving the offsets with the paper's bias correction keeps exact log Z and log p(v)."""
    W, bc, cc, mu, lam = params(1)
    _, _, _, mu2, lam2 = params(2)
    bc2, cc2 = shift_offsets(W, bc, cc, mu, lam, mu2, lam2)
    r1, r2 = ordinary(W, *ordinary_biases(W, bc, cc, mu, lam)), ordinary(W, *ordinary_biases(W, bc2, cc2, mu2, lam2))
    assert exact.log_partition(r1) == pytest.approx(exact.log_partition(r2), abs=1e-10)
    vs = exact.all_binary(6)
    assert torch.allclose(exact.log_prob(r1, vs), exact.log_prob(r2, vs), atol=1e-10, rtol=0)
    assert torch.allclose(centred_log_prob(W, bc, cc, mu, lam), centred_log_prob(W, bc2, cc2, mu2, lam2),
                          atol=1e-10, rtol=0)
    # without the correction the distribution would change: the test can fail
    assert not torch.allclose(centred_log_prob(W, bc, cc, mu, lam), centred_log_prob(W, bc, cc, mu2, lam2),
                              atol=1e-3)
    # the RBM's offsets are bookkeeping: setting them leaves the free energies alone
    f = r1.free_energy(vs)
    r1.add_offsets_(mu2, lam2)
    assert torch.equal(r1.free_energy(vs), f)


def test_centred_step_equals_the_formula():
    """One trainer step with centring (CD-1, momentum 0, weight decay) against Melchior et
    al.'s Algorithm 1 written out by hand: offsets slide first, the gradient is taken in
    the centred parameters at the new offsets, and the result is mapped back to (W, b, c)."""
    from deepbelief.sampling import CD
    from deepbelief.training import RBMTrainConfig, RBMTrainer

    W, bc, cc, mu, lam = params(3)
    r = ordinary(W, *ordinary_biases(W, bc, cc, mu, lam)).requires_grad_(True)
    r.add_offsets_(mu, lam)
    v0 = (torch.rand(10, 6, generator=torch.Generator().manual_seed(4)) < 0.5).double()
    lr, wd, nu = 0.1, 0.01, 0.2
    cfg = RBMTrainConfig(centering=True, centering_rate=nu, weight_decay=wd, momentum=0.0, final_momentum=0.0)
    ref = copy.deepcopy(r)
    trainer = RBMTrainer(r, cfg, torch.Generator().manual_seed(7))
    trainer.step(v0, lr, 0.0)
    with torch.no_grad():
        vn, _ = CD(1).negative(ref, v0, ref.hidden_input(v0), torch.Generator().manual_seed(7))
        p0, pn = ref.mean_hidden(v0), ref.mean_hidden(vn)
        mu1 = (1 - nu) * mu + nu * v0.mean(0)
        lam1 = (1 - nu) * lam + nu * p0.mean(0)
        b_c, c_c = centred_biases(W, ref.visible.bias, ref.hidden.bias, mu1, lam1)
        gw = ((v0 - mu1).T @ (p0 - lam1)) / 10 - ((vn - mu1).T @ (pn - lam1)) / 10 - wd * W
        W1 = W + lr * gw
        b1, c1 = ordinary_biases(W1, b_c + lr * (v0.mean(0) - vn.mean(0)), c_c + lr * (p0.mean(0) - pn.mean(0)),
                                 mu1, lam1)
    assert torch.allclose(r.W, W1, atol=1e-12, rtol=0)
    assert torch.allclose(r.visible.bias, b1, atol=1e-12, rtol=0)
    assert torch.allclose(r.hidden.bias, c1, atol=1e-12, rtol=0)
    assert torch.allclose(r.visible_offset, mu1, atol=1e-14) and torch.allclose(r.hidden_offset, lam1, atol=1e-14)


def _two_modes(n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    protos = torch.tensor([[1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]], dtype=torch.float32)
    data = protos[torch.randint(0, 2, (n,), generator=g)]
    return (data + (torch.rand(n, 6, generator=g) < 0.05).float()) % 2


@pytest.mark.parametrize("method", ["cd", "pcd", "pt"])
def test_centred_training_raises_exact_log_likelihood(method):
    from deepbelief.training import RBMTrainConfig, train_rbm

    data = _two_modes()
    r = RBM(6, 4, generator=torch.Generator().manual_seed(0))
    ll0 = float(exact.log_prob(r, data).mean())
    # momentum 0.5: with 0.9 the few persistent chains of PCD cannot follow this tiny model
    cfg = RBMTrainConfig(epochs=30, batch_size=10, lr=0.05, final_momentum=0.5, n_chains=50, centering=True,
                         centering_rate=0.1, method=method, pt_temperatures=4)
    train_rbm(r, data, cfg, generator=torch.Generator().manual_seed(1))
    ll1 = float(exact.log_prob(r, data).mean())
    assert ll1 > ll0 + 1.0
    assert ll1 < 0
    # the visible offsets track the data mean (rate 0.1 per update, 600 updates)
    assert torch.allclose(r.visible_offset, data.mean(0), atol=0.15)


def test_offsets_survive_save_load_and_resume(tmp_path):
    from deepbelief.io import load_model, read_metadata, save_model
    from deepbelief.stacking import pretrain_stack
    from deepbelief.training import RBMTrainConfig, train_rbm

    data = _two_modes(60)
    cfg = RBMTrainConfig(epochs=2, batch_size=10, centering=True, method="pcd")
    gen = torch.Generator().manual_seed(3)
    r = RBM(6, 4, generator=gen)
    train_rbm(r, data, cfg, generator=gen)
    save_model(tmp_path / "r.safetensors", r)
    back = load_model(tmp_path / "r.safetensors")
    assert back.centered and read_metadata(tmp_path / "r.safetensors")["config"]["centered"] is True
    assert torch.equal(back.visible_offset, r.visible_offset) and torch.equal(back.hidden_offset, r.hidden_offset)
    assert torch.equal(back.free_energy(data), r.free_energy(data))
    # checkpoint after one epoch, resume for the second: the same weights and offsets
    gen = torch.Generator().manual_seed(3)
    a = RBM(6, 4, generator=gen)
    ck = tmp_path / "ck.safetensors"
    train_rbm(a, data, RBMTrainConfig(**{**cfg.__dict__, "epochs": 1}), generator=gen, checkpoint=ck)
    b = RBM(6, 4, generator=torch.Generator().manual_seed(0))
    train_rbm(b, data, cfg, generator=torch.Generator().manual_seed(0), checkpoint=ck, resume=True)
    assert torch.equal(b.W, r.W) and torch.equal(b.visible_offset, r.visible_offset)
    # a stack of centred RBMs keeps every layer's offsets in its file
    dbn = pretrain_stack(data, [6, 4, 3], cfg, generator=torch.Generator().manual_seed(0))
    save_model(tmp_path / "d.safetensors", dbn)
    d2 = load_model(tmp_path / "d.safetensors")
    for x, y in zip(dbn.rbms, d2.rbms):
        assert torch.equal(x.hidden_offset, y.hidden_offset) and torch.equal(x.W, y.W)


def test_ordinary_models_are_unchanged():
    """A model trained without centring has no offsets and the config it always had."""
    r = RBM(6, 4)
    assert not r.centered and "centered" not in r.config()
    assert set(r.state_dict()) == {"W", "visible.bias", "hidden.bias"}


def test_centering_needs_bernoulli_layers():
    from deepbelief.training import RBMTrainConfig, train_rbm

    r = RBM({"type": "gaussian", "n": 4}, 3, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match="centering needs Bernoulli.*'gaussian'"):
        train_rbm(r, torch.zeros(10, 4), RBMTrainConfig(centering=True, batch_size=5, epochs=1),
                  generator=torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match="sparsity"):
        RBMTrainConfig(centering=True, sparsity_target=0.1, sparsity_cost=0.1).validate()
