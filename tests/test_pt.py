"""Parallel tempering (sampling.PT) against exact enumeration on tiny multimodal RBMs."""

import math

import pytest
import torch

from deepbelief import exact
from deepbelief.errors import ConfigError
from deepbelief.rbm import RBM
from deepbelief.sampling import PT, pt_betas, pt_sample, swap_log_acceptance, tempered_free_energy


def bimodal(a=2.5, seed=0, nv=8, nh=4):
    """A strongly bimodal RBM: W ~ a, biases making v = 0, h = 0 and v = 1, h = 1 nearly
    equally likely, with a barrier of about a * nv * nh / 4 nats between them; a little
    noise breaks the symmetry (p(all 0) = 0.61, p(all 1) = 0.32 at a = 2.5)."""
    g = torch.Generator().manual_seed(seed)
    r = RBM(nv, nh, generator=g).double()
    with torch.no_grad():
        r.W.copy_(a + 0.3 * torch.randn(nv, nh, generator=g, dtype=torch.float64))
        r.visible.bias.copy_(-a * nh / 2 + 0.3 * torch.randn(nv, generator=g, dtype=torch.float64))
        r.hidden.bias.copy_(-a * nv / 2 + 0.3 * torch.randn(nh, generator=g, dtype=torch.float64))
    return r


def codes(v):
    nv = v.shape[1]
    return (v.long() * (2 ** torch.arange(nv - 1, -1, -1))).sum(1)


def tv_and_bound(v, p):
    """Total variation between the samples' histogram and p, and the 3-sigma-style bound of
    test_rbm.test_gibbs_chain_converges_to_exact_distribution for independent samples."""
    n = v.shape[0]
    counts = torch.bincount(codes(v), minlength=p.numel()).double() / n
    tv = float(0.5 * (counts - p).abs().sum())
    bound = 3 * 0.5 * float(torch.sqrt(p * (1 - p) / n).sum())
    return tv, bound


def test_betas_spacing_and_validation():
    assert torch.allclose(pt_betas(5), torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0], dtype=torch.float64))
    g = pt_betas(3, "geometric", 0.01)
    assert torch.allclose(g, torch.tensor([1.0, 0.1, 0.01], dtype=torch.float64))
    with pytest.raises(ConfigError, match="pt_min_beta must be > 0 for geometric"):
        pt_betas(3, "geometric", 0.0)
    with pytest.raises(ConfigError, match="pt_temperatures"):
        pt_betas(1)
    with pytest.raises(ConfigError, match="betas must decrease"):
        PT(betas=[1.0, 1.0, 0.5])


def test_tempered_free_energy_is_scaled_rbm():
    """F_beta(v) equals the free energy of the RBM with W, b, c multiplied by beta."""
    r = bimodal(1.0)
    v = exact.all_binary(8)
    for beta in (1.0, 0.37, 0.0):
        s = RBM(8, 4).double()
        with torch.no_grad():
            s.W.copy_(beta * r.W)
            s.visible.bias.copy_(beta * r.visible.bias)
            s.hidden.bias.copy_(beta * r.hidden.bias)
        got = tempered_free_energy(r, v, torch.tensor(beta, dtype=torch.float64))
        assert torch.allclose(got, s.free_energy(v), atol=1e-12)


def test_swap_acceptance_hand_case():
    """1 visible x 1 hidden, w = 2, b = -1, c = 0.5; v_i = 1 at beta 1, v_j = 0 at beta 0.5.
    F_beta(v) = -beta b v - softplus(beta (w v + c)), so
    log a = F_1(1) + F_.5(0) - F_1(0) - F_.5(1)
          = (1 - sp(2.5)) - sp(0.25) + sp(0.5) - (0.5 - sp(1.25))."""
    sp = lambda t: math.log1p(math.exp(t))  # noqa: E731
    expected = (1 - sp(2.5)) - sp(0.25) + sp(0.5) - (0.5 - sp(1.25))
    r = RBM(1, 1).double().requires_grad_(False)
    with torch.no_grad():
        r.W.fill_(2.0)
        r.visible.bias.fill_(-1.0)
        r.hidden.bias.fill_(0.5)
    one, zero = torch.ones(1, 1, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64)
    b1, b2 = torch.tensor([1.0], dtype=torch.float64), torch.tensor([0.5], dtype=torch.float64)
    got = float(swap_log_acceptance(r, one, zero, b1, b2))
    assert got == pytest.approx(expected, abs=1e-12)
    assert expected < 0  # a genuine Metropolis test: accepted with probability exp(expected)
    # the sampler accepts that swap at that rate (binomial standard error), and swaps the states
    n = 40000
    pt = PT(betas=[1.0, 0.5])
    chains = torch.stack([one.expand(n, 1), zero.expand(n, 1)], 1)  # (n, 2, 1)
    out = pt.swap(r, chains, torch.Generator().manual_seed(0))
    a = math.exp(expected)
    rate = pt.swap_rates()[0]
    assert abs(rate - a) < 4 * math.sqrt(a * (1 - a) / n)
    moved = out[:, 0, 0] == 0
    assert float(moved.double().mean()) == pytest.approx(rate)
    assert torch.equal(out[:, 1, 0], 1 - out[:, 0, 0])


def test_pt_samples_match_exact_distribution_where_gibbs_does_not():
    r = bimodal().float()
    _, p = exact.visible_distribution(r)
    n = 5000
    init = torch.zeros(n, 8)  # every chain starts in the all-off mode
    v, rates = pt_sample(r, n, n_sweeps=100, betas=pt_betas(6), init=init, generator=torch.Generator().manual_seed(1))
    tv, bound = tv_and_bound(v, p)
    assert tv < bound
    assert all(0.05 < x <= 1 for x in rates) and len(rates) == 5
    g = torch.Generator().manual_seed(1)
    tv_gibbs, _ = tv_and_bound(r.gibbs(init.clone(), steps=100, gen=g), p)
    assert tv_gibbs > 3 * bound  # plain Gibbs stays in its mode (p(all 1) = 0.32 is never visited)


def test_pt_pcd_gradient_matches_exact():
    """The beta = 1 chains of PT-PCD, after a burn-in, estimate the model term of the
    log-likelihood gradient of a bimodal RBM within 5 standard errors."""
    r = bimodal(2.0).float()
    data = (torch.rand(20, 8, generator=torch.Generator().manual_seed(1)) < 0.3).double()
    ex = exact.log_likelihood_grad(r, data)
    n = 4000
    pt = PT(1, n_chains=n, betas=pt_betas(6))
    g = torch.Generator().manual_seed(2)
    v0 = (torch.rand(n, 8, generator=g) < 0.5).float()
    for _ in range(100):
        v, _ = pt.negative(r, v0, r.hidden_input(v0), g)
    rd = r.double()
    v = v.double()
    neg_rows = -(v.unsqueeze(2) * rd.mean_hidden(v).unsqueeze(1))  # per-sample dF/dW
    est_w = neg_rows.mean(0) - rd.free_energy_grad(data)["W"] / 20
    se = neg_rows.std(0) / math.sqrt(n)
    assert torch.all((est_w - ex["W"]).abs() < 5 * se + 1e-9)
    neg_c = -rd.mean_hidden(v)
    est_c = neg_c.mean(0) - rd.free_energy_grad(data)["hidden.bias"] / 20
    assert torch.all((est_c - ex["hidden.bias"]).abs() < 5 * neg_c.std(0) / math.sqrt(n) + 1e-9)


def test_sharded_layout_equals_one_process():
    """Rank r of N holds replica sets [r n / N, (r + 1) n / N) with all their temperatures;
    under sharding.sharded (what a data-parallel step opens) its update equals those rows
    of the single-process update: no swap crosses ranks and the random numbers line up."""
    from deepbelief.sharding import sharded

    r = bimodal(1.5).float()
    n, K, world = 12, 4, 3
    chains = (torch.rand(n, K, 8, generator=torch.Generator().manual_seed(3)) < 0.5).float()
    full = PT(betas=pt_betas(K))
    full.updates = 1  # odd round: pairs (1, 2)
    want = full.step(r, chains.clone(), torch.Generator().manual_seed(4))
    share = n // world
    for rank in range(world):
        part = PT(betas=pt_betas(K))
        part.updates = 1
        with sharded(rank, world):
            got = part.step(r, chains[rank * share:(rank + 1) * share].clone(), torch.Generator().manual_seed(4))
        assert torch.equal(got, want[rank * share:(rank + 1) * share])
        assert torch.equal(part.accepted, full.accepted[rank * share:(rank + 1) * share])


def test_training_with_pt_reports_swap_rates_and_resumes(tmp_path):
    from deepbelief.training import RBMTrainConfig, train_rbm

    data = (torch.rand(60, 8, generator=torch.Generator().manual_seed(0)) < 0.4).float()
    cfg = RBMTrainConfig(epochs=2, batch_size=10, method="pt", pt_temperatures=4, n_chains=6)
    gen = torch.Generator().manual_seed(5)
    straight = RBM(8, 4, generator=gen)
    hist = train_rbm(straight, data, cfg, generator=gen)
    for m in hist.epochs:
        assert len(m["pt_swap_rates"]) == 3
        assert all(0.0 <= x <= 1.0 for x in m["pt_swap_rates"])
        assert m["pt_swap_rate_min"] == min(m["pt_swap_rates"])
    # one epoch, a checkpoint, then the second epoch from it: the same weights
    ck = tmp_path / "ck.safetensors"
    gen = torch.Generator().manual_seed(5)
    first = RBM(8, 4, generator=gen)
    train_rbm(first, data, RBMTrainConfig(**{**cfg.__dict__, "epochs": 1}), generator=gen, checkpoint=ck)
    resumed = RBM(8, 4, generator=torch.Generator().manual_seed(99))
    hist2 = train_rbm(resumed, data, cfg, generator=torch.Generator().manual_seed(0), checkpoint=ck, resume=True)
    assert torch.equal(resumed.W, straight.W)
    assert hist2.epochs[-1]["pt_swap_rates"] == hist.epochs[-1]["pt_swap_rates"]


def test_pt_refuses_real_valued_units():
    from deepbelief.training import RBMTrainConfig, train_rbm

    r = RBM({"type": "gaussian", "n": 4}, 3, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match="parallel tempering.*'gaussian'"):
        train_rbm(r, torch.zeros(10, 4), RBMTrainConfig(method="pt", batch_size=5, epochs=1),
                  generator=torch.Generator().manual_seed(0))
