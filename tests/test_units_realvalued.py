"""Real-valued unit types (Gaussian with learned variances, NReLU, stepped sigmoid) against
closed forms, numerical integration, enumeration and Monte Carlo within computed errors."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from deepbelief import exact
from deepbelief.rbm import RBM
from deepbelief.units import Bernoulli, Gaussian, NReLU, Softmax, SteppedSigmoid
from deepbelief.units.real import _log_qbinomial_table

D = torch.float64


def gen(seed):
    return torch.Generator().manual_seed(seed)


def randomise(r, seed, scale=0.5):
    g = gen(seed)
    with torch.no_grad():
        for name, p in r.named_parameters():
            if name == "W":
                p.copy_(torch.randn(p.shape, generator=g, dtype=D) * scale)
            elif name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g, dtype=D) * 0.5)
            elif name.endswith("log_var"):
                p.copy_(torch.randn(p.shape, generator=g, dtype=D) * 0.3)
        for m in r.modules():  # fixed-variance Gaussians keep their (non-learned) log_var too
            if isinstance(m, Gaussian) and not m.learn_var:
                m.log_var.copy_(torch.randn(m.n, generator=g, dtype=D) * 0.3)
    return r


def tiny(visible, hidden, seed=0, scale=0.5):
    return randomise(RBM(visible, hidden, generator=gen(seed)).double(), seed + 100, scale)


def gauss_hermite_grid(n_points=60):
    """Nodes and log-weights of a wide trapezoid grid, for 1-D/2-D integrals of Gaussians."""
    t = torch.linspace(-12, 12, n_points * 10 + 1, dtype=D)
    w = torch.full_like(t, float(t[1] - t[0]))
    w[0] = w[-1] = w[0] / 2
    return t, w.log()


# -- Gaussian visible units -----------------------------------------------------------------
@torch.no_grad()
def test_gaussian_free_energy_integrates_energy_numerically():
    """F(h) = -log int exp(-E(v, h)) dv for 2 Gaussian visibles, by a 2-D quadrature."""
    r = tiny(Gaussian(2), Bernoulli(3), seed=1)
    t, lw = gauss_hermite_grid(40)
    vv = torch.cartesian_prod(t, t)  # (T^2, 2)
    lww = torch.cartesian_prod(lw, lw).sum(1)
    for h in exact.all_binary(3):
        e = r.energy(vv, h.expand(vv.shape[0], -1))
        numeric = -torch.logsumexp(-e + lww, 0)
        assert float(r.free_energy_hidden(h[None])[0]) == pytest.approx(float(numeric), abs=1e-9)


def test_gaussian_log_partition_by_hidden_enumeration_matches_quadrature():
    """exact.log_partition(over='hidden') integrates the Gaussian visibles analytically."""
    r = tiny(Gaussian(2), Bernoulli(3), seed=2)
    t, lw = gauss_hermite_grid(40)
    vv = torch.cartesian_prod(t, t)
    lww = torch.cartesian_prod(lw, lw).sum(1)
    log_z_numeric = float(torch.logsumexp(-r.free_energy(vv) + lww, 0))
    assert exact.log_partition(r, over="hidden") == pytest.approx(log_z_numeric, abs=1e-9)
    assert exact.log_partition(r) == pytest.approx(log_z_numeric, abs=1e-9)  # auto picks hidden


def test_gaussian_conditionals_and_sampling():
    """v | h ~ N(b + W h, sigma^2) and p(h_j=1 | v) = sigmoid(c_j + sum_i W_ij v_i / sigma_i^2)."""
    r = tiny(Gaussian(3), Bernoulli(2), seed=3)
    h = torch.tensor([[1.0, 0.0]], dtype=D)
    mean = r.visible.bias + r.W @ h[0]
    var = torch.exp(r.visible.log_var)
    assert torch.allclose(r.mean_visible(h)[0], mean)
    n = 40000
    s = r.sample_visible(h.expand(n, 2), gen(0))
    se_mean = torch.sqrt(var / n)
    assert torch.all((s.mean(0) - mean).abs() < 5 * se_mean)
    se_var = var * math.sqrt(2.0 / (n - 1))  # sd of the sample variance of a normal
    assert torch.all((s.var(0) - var).abs() < 5 * se_var)
    v = torch.randn(5, 3, generator=gen(1), dtype=D)
    expected = torch.sigmoid(r.hidden.bias + (v / var) @ r.W)
    assert torch.allclose(r.mean_hidden(v), expected)
    # against the joint: p(h | v) proportional to exp(-E(v, h)) over the 4 hidden states
    hs = exact.all_binary(2)
    e = torch.stack([r.energy(v, hh.expand(5, 2)) for hh in hs], 1)
    p = torch.softmax(-e, 1)
    assert torch.allclose(p @ hs, expected, atol=1e-12)


def test_gaussian_model_mean_by_gibbs_matches_exact():
    """E_model[v] = sum_h p(h) (b + W h) with p(h) enumerated; long Gibbs chains agree
    within 5 standard errors."""
    r = tiny(Gaussian(3), Bernoulli(3), seed=4, scale=0.7)
    hs = exact.all_binary(3)
    ph = torch.softmax(-r.free_energy_hidden(hs), 0)
    exact_mean = ph @ r.mean_visible(hs)
    n = 10000
    with torch.no_grad():
        v = r.gibbs(torch.randn(n, 3, generator=gen(2), dtype=D), steps=30, gen=gen(3))
    se = v.std(0) / math.sqrt(n)
    assert torch.all((v.mean(0) - exact_mean).abs() < 5 * se)


def test_gaussian_log_var_is_clamped_and_validated():
    from deepbelief.errors import ConfigError

    u = Gaussian(3, log_var_min=-2.0, log_var_max=1.0)
    with torch.no_grad():
        u.log_var.copy_(torch.tensor([-10.0, 0.5, 10.0]))
    u.constrain_()
    assert u.log_var.tolist() == [-2.0, 0.5, 1.0]
    with pytest.raises(ConfigError, match="log_var_min"):
        Gaussian(2, log_var_min=1.0, log_var_max=0.0)
    with pytest.raises(ConfigError, match="log_var"):
        Gaussian(2, log_var=5.0)
    assert not Gaussian(2, learn_var=False).log_var.requires_grad


# -- NReLU --------------------------------------------------------------------------------------
def _rectified_normal_moments(y, s):
    """E and Var of max(0, Z), Z ~ N(y, s^2) (closed form)."""
    a = y / s
    pdf = torch.exp(-0.5 * a * a) / math.sqrt(2 * math.pi)
    cdf = 0.5 * torch.erfc(-a / math.sqrt(2))
    m1 = y * cdf + s * pdf
    m2 = (y * y + s * s) * cdf + y * s * pdf
    return m1, m2 - m1 * m1


def test_nrelu_sampling_distribution_matches_definition():
    """Samples are max(0, y + N(0, sigmoid(y))): mean and variance within computed error."""
    u = NReLU(6).double()
    with torch.no_grad():
        u.bias.copy_(torch.tensor([-3.0, -1.0, 0.0, 0.5, 2.0, 6.0], dtype=D))
    n = 50000
    x = torch.zeros(n, 6, dtype=D)
    s = u.sample(x, gen(0))
    assert bool((s >= 0).all())
    y = u.bias.detach()
    m, var = _rectified_normal_moments(y, torch.sigmoid(y).sqrt())
    assert torch.all((s.mean(0) - m).abs() < 5 * torch.sqrt(var / n))
    # the sample variance's standard error from the fourth moment, estimated from the sample
    c = s - s.mean(0)
    se_var = torch.sqrt(((c**4).mean(0) - c.var(0) ** 2) / n)
    assert torch.all((s.var(0) - var).abs() < 5 * se_var + 1e-12)
    assert torch.allclose(u.mean(x[:1])[0], torch.relu(y))


def test_nrelu_free_energy_is_integral_of_its_mean_and_close_to_stepped_sum():
    u = NReLU(1).double()
    x = torch.linspace(-10, 30, 4001, dtype=D).unsqueeze(1).requires_grad_(True)
    f = u.free_energy(x)
    (g,) = torch.autograd.grad(f.sum(), x)
    assert torch.allclose(-g, u.stat(x.detach()))  # stat = -dF/dx = relu(y)
    # Nair & Hinton's approximation: the infinite stepped-sigmoid free energy differs by a
    # bounded amount, in [0, pi^2/6 - 1/24]
    ss = SteppedSigmoid(1, copies=200).double()
    gap = (f - ss.free_energy(x)).detach()
    assert float(gap.min()) > -1e-6 and float(gap.max()) < math.pi**2 / 6 - 1 / 24 + 1e-6
    # and its mean differs from the stepped-sigmoid mean by at most log 2
    assert float((ss.mean(x.detach()) - u.mean(x.detach())).abs().max()) < math.log(2)


# -- stepped sigmoid ----------------------------------------------------------------------------
def test_qbinomial_energy_table_matches_subset_enumeration():
    """-log sum over k-subsets of copies of exp(-sum (n - 1/2)) = k^2/2 - log [N k]_{1/e}."""
    n = 6
    offs = torch.arange(n, dtype=D) + 0.5
    for k in range(n + 1):
        terms = [-offs[list(c)].sum() for c in itertools.combinations(range(n), k)]
        direct = -torch.logsumexp(torch.stack(terms) if terms else torch.zeros(1, dtype=D), 0)
        table = 0.5 * k * k - _log_qbinomial_table(n, math.exp(-1))[k]
        assert float(direct) == pytest.approx(float(table), abs=1e-12)


def test_stepped_sigmoid_exact_distribution_mean_and_samples():
    """p(u = k | x) from the self-energy, summed over k, gives the exact mean
    sum_n sigmoid(y - n + 0.5) and the free energy; samples match p(k) by a chi-square bound."""
    N = 4
    u = SteppedSigmoid(3, copies=N).double()
    with torch.no_grad():
        u.bias.copy_(torch.tensor([-1.0, 0.7, 3.0], dtype=D))
    x = torch.tensor([[0.3, -0.2, 1.0]], dtype=D)
    ks = torch.arange(N + 1, dtype=D)
    for j in range(3):
        e = torch.stack([u.energy(torch.full((1, 3), float(k), dtype=D).index_fill(1, torch.tensor(
            [i for i in range(3) if i != j]), 0.0))[0] for k in ks])  # others at 0: energy 0
        logits = -e + ks * x[0, j]
        p = torch.softmax(logits, 0)
        assert float(p @ ks) == pytest.approx(float(u.mean(x)[0, j]), abs=1e-12)
        yj = x[0, j] + u.bias[j]
        assert float(-torch.logsumexp(logits, 0)) == pytest.approx(
            float(-F.softplus(yj - torch.arange(N, dtype=D) - 0.5).sum()), abs=1e-12)
        n = 40000
        s = u.sample(x.expand(n, 3), gen(j))[:, j]
        counts = torch.bincount(s.long(), minlength=N + 1).double()
        # chi-square with N degrees of freedom; 5 sd above its mean is a generous bound
        chi2 = float(((counts - n * p) ** 2 / (n * p)).sum())
        assert chi2 < N + 5 * math.sqrt(2 * N)
        var = float((torch.sigmoid(yj - torch.arange(N, dtype=D) - 0.5) * torch.sigmoid(
            -(yj - torch.arange(N, dtype=D) - 0.5))).sum())
        assert abs(float(s.mean()) - float(u.mean(x)[0, j])) < 5 * math.sqrt(var / n)


def test_stepped_sigmoid_mean_approaches_softplus():
    """max over y in [-10, 30] of |sum_{n=1}^N sigmoid(y - n + .5) - softplus(y)| shrinks
    as N grows; for y well below N it is the midpoint rule's error, < 0.011."""
    y = torch.linspace(-10, 30, 2001, dtype=D).unsqueeze(1)
    errs = []
    for N in (1, 4, 16, 64):
        u = SteppedSigmoid(1, copies=N).double()
        errs.append(float((u.mean(y) - F.softplus(y)).abs().max()))
    assert errs == sorted(errs, reverse=True)
    assert errs[-1] < 0.011  # N=64 covers the range: only the midpoint-rule error is left
    assert errs[0] > 20  # one copy saturates at 1


def test_rbm_with_stepped_sigmoid_hidden_matches_enumeration():
    """F(v) = E_v(v) + F_h equals -log sum over all count states of exp(-E(v, h)); log Z is
    the same summed over either layer; p(h | v) means agree."""
    r = tiny(Bernoulli(4), SteppedSigmoid(2, copies=3), seed=5)
    vs = exact.layer_states(r.visible)
    hs = exact.layer_states(r.hidden)
    assert hs.shape == (16, 2) and float(hs.max()) == 3
    e = torch.stack([r.energy(vs, h.expand(vs.shape[0], -1)) for h in hs], 1)  # (16 v, 16 h)
    assert torch.allclose(r.free_energy(vs), -torch.logsumexp(-e, 1), atol=1e-12)
    assert torch.allclose(r.free_energy_hidden(hs), -torch.logsumexp(-e, 0), atol=1e-12)
    assert exact.log_partition(r, over="visible") == pytest.approx(exact.log_partition(r, over="hidden"), abs=1e-10)
    p = torch.softmax(-e, 1)
    assert torch.allclose(p @ hs, r.mean_hidden(vs), atol=1e-12)


def test_stepped_sigmoid_visible_layer_enumeration():
    """Stepped sigmoid units as the *visible* layer (stacked above a count layer)."""
    r = tiny(SteppedSigmoid(2, copies=2), Bernoulli(3), seed=6)
    assert exact.log_partition(r, over="visible") == pytest.approx(exact.log_partition(r, over="hidden"), abs=1e-10)
    vs, hs, p = exact.joint_distribution(r)
    pv = (p.T @ vs) / p.sum(0).unsqueeze(1)
    assert torch.allclose(r.mean_visible(hs), pv, atol=1e-12)


def test_nonbinary_data_checks():
    from deepbelief.errors import DataError

    with pytest.raises(DataError, match=r"\[0, 3\]"):
        SteppedSigmoid(2, copies=3).check_data("x", torch.tensor([[0.0, 4.0]]))
    with pytest.raises(DataError, match=">= 0"):
        NReLU(2).check_data("x", torch.tensor([[0.0, -1.0]]))


# -- gradients of the free energy for every pairing --------------------------------------------
VISIBLE = {
    "bernoulli": lambda: Bernoulli(4),
    "gaussian": lambda: Gaussian(4),
    "gaussian_fixed": lambda: Gaussian(4, learn_var=False),
    "nrelu": lambda: NReLU(4),
    "stepped": lambda: SteppedSigmoid(4, copies=5),
}
HIDDEN = {
    "bernoulli": lambda: Bernoulli(3),
    "nrelu": lambda: NReLU(3),
    "stepped": lambda: SteppedSigmoid(3, copies=5),
    "gaussian": lambda: Gaussian(3),
    "softmax": lambda: Softmax(3),
}


@pytest.mark.parametrize("vis,hid", list(itertools.product(VISIBLE, HIDDEN)))
def test_free_energy_gradient_matches_autograd_all_pairings(vis, hid):
    r = tiny(VISIBLE[vis](), HIDDEN[hid](), seed=7)
    g = gen(8)
    v = {
        "bernoulli": lambda: (torch.rand(9, 4, generator=g, dtype=D) < 0.5).to(D),
        "nrelu": lambda: torch.relu(torch.randn(9, 4, generator=g, dtype=D) + 0.5),
        "stepped": lambda: torch.randint(0, 6, (9, 4), generator=g).to(D),
    }.get(vis.split("_")[0], lambda: torch.randn(9, 4, generator=g, dtype=D))()
    hand = r.free_energy_grad(v)
    names = [k for k, p in r.named_parameters() if p.requires_grad]
    auto = torch.autograd.grad(r.free_energy(v).sum(), [dict(r.named_parameters())[k] for k in names])
    assert set(hand) == set(names)
    for k, a in zip(names, auto):
        assert torch.allclose(hand[k], a, atol=1e-10), (k, hand[k], a)


def test_cd_log_var_gradient_vanishes_when_data_come_from_the_model():
    """A Gaussian-visible RBM whose data are exact samples of itself is a fixed point of
    CD-1: the average log-variance update is zero within 5 standard errors. (With
    noise-free mean reconstructions it would be biased by about +1/2 per unit.)"""
    from deepbelief.sampling import CD

    r = tiny(Gaussian(3), Bernoulli(2), seed=9, scale=0.0)  # W = 0: p(v) = N(b, sigma^2)
    n = 20000
    g = gen(10)
    sd = torch.exp(0.5 * r.visible.log_var.detach())
    v0 = r.visible.bias.detach() + torch.randn(n, 3, generator=g, dtype=D) * sd
    with torch.no_grad():
        vn, xn = CD(1).negative(r, v0, r.hidden_input(v0), g)
        # per-example d F / d log_var, positive minus negative phase
        def per_row(v):
            d = v - r.visible.bias
            return -0.5 * d * d * r.visible.inv_var()  # the back term is 0 when W = 0
        diff = per_row(v0) - per_row(vn)
    se = diff.std(0) / math.sqrt(n)
    assert torch.all(diff.mean(0).abs() < 5 * se)


@torch.no_grad()
def test_gaussian_rbm_log_prob_is_the_mixture_of_gaussians_it_defines():
    """Learned variances: p(v) = sum_h pi(h) N(v; b + W h, diag sigma^2) with
    pi(h) proportional to exp(c.h + sum_i ((b_i + (W h)_i)^2 - b_i^2) / (2 sigma_i^2)),
    written out by hand over the 2^4 hidden states; ais.rbm_log_prob with the exact log Z
    (and with AIS over the hidden units) must agree. With W = 0 it is the independent
    Gaussian N(b, sigma^2), the reference the patches benchmark reports."""
    from deepbelief.ais import ais_log_partition, rbm_log_prob

    for scale in (0.0, 0.8):
        r = tiny(Gaussian(5), Bernoulli(4), seed=11, scale=scale)
        b, c, W = r.visible.bias, r.hidden.bias, r.W
        var = torch.exp(r.visible.log_var)
        hs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=4)), dtype=D)
        means = b + hs @ W.T  # (16, 5)
        log_pi = hs @ c + ((means**2 - b**2) / (2 * var)).sum(1)
        log_pi = log_pi - torch.logsumexp(log_pi, 0)
        v = torch.randn(7, 5, generator=gen(12), dtype=D) * 1.5
        log_n = -0.5 * (((v[:, None, :] - means) ** 2 / var + torch.log(2 * math.pi * var)).sum(-1))  # (7, 16)
        oracle = torch.logsumexp(log_pi + log_n, 1)
        got = rbm_log_prob(r, v, exact.log_partition(r, over="hidden"))
        assert torch.allclose(got, oracle, atol=1e-9)
        if scale == 0.0:
            factorial = -0.5 * (((v - b) ** 2 / var + torch.log(2 * math.pi * var)).sum(1))
            assert torch.allclose(got, factorial, atol=1e-9)
        res = ais_log_partition(r, n_runs=50, betas=500, base_data=v, over="hidden", generator=gen(13))
        assert abs(res.log_z - exact.log_partition(r, over="hidden")) < 0.05
