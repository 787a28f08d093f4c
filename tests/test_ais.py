"""AIS, log-likelihoods and the DBN bound against exact enumeration on tiny models."""

import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F

from deepbelief import exact
from deepbelief.ais import (
    PAPER_N_BETAS,
    AISResult,
    ais_log_partition,
    paper_betas,
    rbm_log_likelihood,
    rbm_log_prob,
)
from deepbelief.bound import dbn_lower_bound
from deepbelief.dbn import DBN
from deepbelief.errors import ConfigError, DataError
from deepbelief.rbm import RBM
from deepbelief.units import Bernoulli, Gaussian, Joint, Softmax

from _models import tiny_rbm


@pytest.fixture(autouse=True)
def one_thread():
    # AIS on tiny models is thousands of tiny ops; on a shared 2-core machine the second
    # OpenMP thread only adds contention (20x slower measured), so these tests use one.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def gen(seed):
    return torch.Generator().manual_seed(seed)


tiny = partial(tiny_rbm, nv=10, nh=8)


def binary_data(n, d, p=0.3, seed=3):
    return (torch.rand(n, d, generator=gen(seed)) < p).double()


# -- the schedule --------------------------------------------------------------------------
def test_default_schedule_is_the_papers():
    b = paper_betas()
    assert b.shape == (PAPER_N_BETAS + 1,) and PAPER_N_BETAS == 14_500
    steps = b[1:] - b[:-1]
    assert b[0] == 0 and b[-1] == 1
    assert torch.allclose(steps[:500], torch.full((500,), 1e-3, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(steps[500:4500], torch.full((4000,), 1e-4, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(steps[4500:], torch.full((10000,), 1e-5, dtype=torch.float64), atol=1e-12)
    small = paper_betas(145)
    assert small.shape == (146,) and bool((small[1:] > small[:-1]).all())
    assert float(small[5]) == pytest.approx(0.5) and float(small[45]) == pytest.approx(0.9)


# -- AIS against exact log Z -----------------------------------------------------------------
@pytest.mark.parametrize("over", ["visible", "hidden"])
def test_ais_matches_exact_log_z(over):
    r = tiny()
    exact_log_z = exact.log_partition(r)
    res = ais_log_partition(r, n_runs=200, betas=3000, base_data=binary_data(200, 10), over=over, generator=gen(1))
    assert res.over == over and res.n_runs == 200 and res.n_betas == 3000
    assert res.log_z_low <= exact_log_z <= res.log_z_high
    assert abs(res.log_z - exact_log_z) < 0.05
    assert 1.0 <= res.ess <= 200.0
    # log_weights include log Z_A: their log-mean-exp is the estimate
    assert float(torch.logsumexp(res.log_weights, 0)) - math.log(200) == pytest.approx(res.log_z, abs=1e-12)


def test_ais_gaussian_visible_over_hidden():
    """Hidden-space AIS with the Gaussian visible layer integrated out (issue 5's need)."""
    r = tiny(1, visible=Gaussian(6), hidden=Bernoulli(8), scale=0.5)
    with torch.no_grad():
        r.visible.log_var.copy_(torch.randn(6, generator=gen(2), dtype=torch.float64) * 0.3)
    exact_log_z = exact.log_partition(r, over="hidden")
    data = torch.randn(300, 6, generator=gen(4), dtype=torch.float64)
    res = ais_log_partition(r, n_runs=100, betas=1000, base_data=data, generator=gen(1))
    assert res.over == "hidden"  # auto: the visible units are not discrete
    assert res.log_z_low <= exact_log_z <= res.log_z_high
    assert abs(res.log_z - exact_log_z) < 0.05


def test_ais_gaussian_annealed_over_visible():
    """Visible-space AIS also handles Gaussian units: the base energy is (v - b_A)^2/2s^2
    with the target's variances, and the weights use the exact energy difference."""
    r = tiny(5, visible=Gaussian(5), hidden=Bernoulli(6), scale=0.4)
    exact_log_z = exact.log_partition(r, over="hidden")
    data = torch.randn(300, 5, generator=gen(4), dtype=torch.float64) + 0.5
    res = ais_log_partition(r, n_runs=100, betas=1000, base_data=data, over="visible", generator=gen(1))
    assert res.log_z_low <= exact_log_z <= res.log_z_high
    assert abs(res.log_z - exact_log_z) < 0.05


def test_ais_softmax_joint_visible():
    r = tiny(6, visible=Joint([Bernoulli(5), Softmax(3)]), hidden=Bernoulli(6))
    exact_log_z = exact.log_partition(r)
    data = torch.cat([binary_data(100, 5), torch.eye(3, dtype=torch.float64).repeat(34, 1)[:100]], 1)
    res = ais_log_partition(r, n_runs=100, betas=1000, base_data=data, over="visible", generator=gen(1))
    assert res.log_z_low <= exact_log_z <= res.log_z_high
    assert abs(res.log_z - exact_log_z) < 0.05


def test_zero_weights_give_the_closed_form():
    r = tiny(2)
    with torch.no_grad():
        r.W.zero_()
    closed = float(F.softplus(r.visible.bias.detach()).sum() + F.softplus(r.hidden.bias.detach()).sum())
    assert exact.log_partition(r) == pytest.approx(closed, abs=1e-10)
    # base = target (no data): every weight is exactly 1
    res = ais_log_partition(r, n_runs=50, betas=20, generator=gen(0))
    assert res.log_z == pytest.approx(closed, abs=1e-10)
    assert res.ess == pytest.approx(50.0) and res.log_z_high - res.log_z_low < 1e-10
    # a base model with other biases: still an unbiased estimate of the closed form
    res = ais_log_partition(r, n_runs=200, betas=200, base_data=binary_data(100, 10, p=0.6), generator=gen(0))
    assert res.log_z_low <= closed <= res.log_z_high
    assert abs(res.log_z - closed) < 0.05


def test_uncertainty_shrinks_with_more_runs():
    r = tiny(3, scale=1.5)
    data = binary_data(100, 10)
    widths = []
    for n_runs in (25, 400):
        res = ais_log_partition(r, n_runs=n_runs, betas=30, base_data=data, generator=gen(7))
        widths.append(res.log_z_high - res.log_z_low)
    # the interval is +- 3 standard errors of the mean weight: it shrinks like 1/sqrt(runs)
    assert 0 < widths[1] < widths[0] / 2


def test_more_temperatures_reduce_the_error():
    r = tiny(4, scale=1.5)
    exact_log_z = exact.log_partition(r)
    data = binary_data(100, 10)
    few = ais_log_partition(r, n_runs=200, betas=10, base_data=data, generator=gen(3))
    many = ais_log_partition(r, n_runs=200, betas=1000, base_data=data, generator=gen(3))
    assert many.ess > few.ess
    assert many.log_z_low <= exact_log_z <= many.log_z_high
    assert many.log_z_high - many.log_z_low < few.log_z_high - few.log_z_low


def test_same_seed_same_estimate_and_progress():
    r = tiny(5)
    seen = []
    a = ais_log_partition(r, n_runs=20, betas=50, generator=gen(9), progress=lambda k, n: seen.append((k, n)))
    b = ais_log_partition(r, n_runs=20, betas=50, generator=gen(9))
    assert torch.equal(a.log_weights, b.log_weights)
    assert seen[-1] == (50, 50) and [k for k, _ in seen] == sorted(k for k, _ in seen)
    # float32 arithmetic (the chains then differ) is still right within its uncertainty
    c = ais_log_partition(r, n_runs=100, betas=500, generator=gen(9), dtype=torch.float32)
    assert c.log_z_low <= exact.log_partition(r) <= c.log_z_high


def test_rbm_is_not_modified_and_float32_model_works():
    r = tiny(6).float()
    before = {k: v.clone() for k, v in r.state_dict().items()}
    res = ais_log_partition(r, n_runs=100, betas=500, base_data=binary_data(50, 10).float(), generator=gen(1))
    for k, v in r.state_dict().items():
        assert torch.equal(v, before[k]) and v.dtype == torch.float32
    assert res.log_z_low <= exact.log_partition(r) <= res.log_z_high


# -- log-likelihood --------------------------------------------------------------------------
def test_rbm_log_likelihood_matches_exact():
    r = tiny(7)
    data = binary_data(40, 10)
    log_z = exact.log_partition(r)
    assert torch.allclose(rbm_log_prob(r, data, log_z), exact.log_prob(r, data, log_z), atol=1e-10)
    ll = rbm_log_likelihood(r, data, log_z)
    assert ll == pytest.approx(float(exact.log_prob(r, data).mean()), abs=1e-10)
    res = ais_log_partition(r, n_runs=100, betas=1000, base_data=data, generator=gen(0))
    ll_ais = rbm_log_likelihood(r, data, res)
    assert ll - (res.log_z_high - res.log_z) <= ll_ais <= ll + (res.log_z - res.log_z_low)
    assert abs(ll_ais - ll) < 0.05


# -- the DBN bound ---------------------------------------------------------------------------
def two_layer(seed=10):
    return DBN([tiny(seed, nv=6, nh=4), tiny(seed + 1, nv=4, nh=5)])


def test_exact_dbn_probabilities_are_normalised():
    v = exact.all_binary(6)
    for dbn in (two_layer(), DBN([tiny(20, nv=6, nh=4), tiny(21, nv=4, nh=3), tiny(22, nv=3, nh=4)])):
        assert float(torch.logsumexp(exact.dbn_log_prob(dbn, v), 0)) == pytest.approx(0.0, abs=1e-12)


def test_bound_is_below_exact_log_prob():
    v = exact.all_binary(6)
    for dbn in (two_layer(), DBN([tiny(20, nv=6, nh=4), tiny(21, nv=4, nh=3), tiny(22, nv=3, nh=4)])):
        gap = exact.dbn_log_prob(dbn, v) - exact.dbn_variational_bound(dbn, v)
        # the gap is KL(Q(h|v) || p(h|v)) >= 0, and > 0 for a generic DBN
        assert float(gap.min()) > 1e-6


def test_bound_is_tight_with_a_transposed_copy_on_top():
    """With the top RBM the first one's transpose (W2 = W1^T, biases swapped), the top
    RBM's marginal over h equals the first RBM's own prior p_1(h): the DBN is the first RBM
    (the complementary prior of Hinton, Osindero & Teh 2006), so the factorial recognition
    distribution Q(h | v) is the exact posterior, KL = 0 and the bound equals log p(v).
    This is why greedy stacking can only improve the bound from the RBM's log-likelihood."""
    r1 = tiny(12, nv=6, nh=4)
    r2 = RBM(4, 6).double()
    with torch.no_grad():
        r2.W.copy_(r1.W.T)
        r2.visible.bias.copy_(r1.hidden.bias)
        r2.hidden.bias.copy_(r1.visible.bias)
    dbn = DBN([r1, r2])
    v = exact.all_binary(6)
    rbm_lp = exact.log_prob(r1, v)
    assert torch.allclose(exact.dbn_log_prob(dbn, v), rbm_lp, atol=1e-12)
    assert torch.allclose(exact.dbn_variational_bound(dbn, v), rbm_lp, atol=1e-12)
    # the sampling estimator has zero variance here: every term equals log p(v)
    est = dbn_lower_bound(dbn, v, exact.log_partition(r2), n_samples=3, generator=gen(0))
    assert est.value == pytest.approx(float(rbm_lp.mean()), abs=1e-10) and est.stderr < 1e-10


def test_bound_estimator_matches_exact_bound():
    dbn = two_layer()
    v = exact.all_binary(6)
    exact_bound = float(exact.dbn_variational_bound(dbn, v).mean())
    est = dbn_lower_bound(dbn, v, exact.log_partition(dbn.rbms[1]), n_samples=200, generator=gen(1))
    assert abs(est.value - exact_bound) < 4 * est.stderr
    assert est.stderr < 0.05
    # a one-RBM stack gives log p(v) itself, with no sampling
    one = dbn_lower_bound([dbn.rbms[0]], v, exact.log_partition(dbn.rbms[0]), n_samples=2)
    assert one.value == pytest.approx(float(exact.log_prob(dbn.rbms[0], v).mean()), abs=1e-10)


def test_bound_with_ais_top_log_z():
    dbn = two_layer(30)
    v = exact.all_binary(6)
    from deepbelief.bound import top_base_data

    res = ais_log_partition(dbn.rbms[1], n_runs=100, betas=1000, base_data=top_base_data(dbn, v), generator=gen(2))
    est = dbn_lower_bound(dbn, v, res, n_samples=100, generator=gen(3))
    exact_bound = float(exact.dbn_variational_bound(dbn, v).mean())
    half = max(res.uncertainty)
    assert abs(est.value - exact_bound) < half + 4 * est.stderr
    assert est.top is res


# -- bad input -------------------------------------------------------------------------------
def test_bad_arguments_name_the_parameter():
    r = tiny()
    with pytest.raises(ConfigError, match="over"):
        ais_log_partition(r, over="middle")
    with pytest.raises(ConfigError, match="n_runs"):
        ais_log_partition(r, n_runs=0)
    with pytest.raises(ConfigError, match="betas must start at 0 and end at 1"):
        ais_log_partition(r, betas=[0.0, 0.5])
    with pytest.raises(ConfigError, match="strictly increasing"):
        ais_log_partition(r, betas=[0.0, 0.6, 0.5, 1.0])
    with pytest.raises(ConfigError, match="n_betas"):
        ais_log_partition(r, betas=2)
    with pytest.raises(DataError, match="base_data"):
        ais_log_partition(r, base_data=torch.zeros(5, 3))
    with pytest.raises(ConfigError, match="log_z"):
        rbm_log_likelihood(r, binary_data(3, 10), "big")
    with pytest.raises(ConfigError, match="n_samples"):
        dbn_lower_bound(two_layer(), exact.all_binary(6), 0.0, n_samples=0)
    res = ais_log_partition(r, n_runs=2, betas=3)
    assert isinstance(res, AISResult) and res.over == "visible"  # auto: binary visible units


def test_mixed_precision_increments_stay_within_a_hundredth_of_a_nat_over_the_papers_schedule():
    """The float32 weight increment log1p(expm1(d) sigmoid(z)) against float64 softplus
    differences, at each segment's step size; summed over the 14,500 steps, the worst-case
    error must stay below 0.01 nats (the issue's bound)."""
    g = gen(0)
    total = 0.0
    for step, beta, n_steps in ((1e-3, 0.2, 500), (1e-4, 0.7, 4000), (1e-5, 0.95, 10_000)):
        x = torch.randn(100, 500, generator=g, dtype=torch.float64) * 20  # inputs as large as MNIST RBMs'
        c = torch.randn(500, generator=g, dtype=torch.float64) * 2
        exact_inc = (F.softplus((beta + step) * x + c) - F.softplus(beta * x + c)).sum(-1)
        x32, c32 = x.float(), c.float()
        inc = torch.log1p(torch.expm1(x32 * step) * torch.sigmoid(x32 * beta + c32)).sum(-1).double()
        total += n_steps * float((inc - exact_inc).abs().max())
    assert total < 0.01


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mixed_and_float64_ais_both_match_enumeration(seed):
    r = tiny(seed, nv=10, nh=8, scale=1.5)
    truth = exact.log_partition(r)
    data = binary_data(500, 10, seed=seed)
    for mixed in (True, False):
        res = ais_log_partition(r, n_runs=200, betas=3000, base_data=data, generator=gen(seed), mixed=mixed)
        assert res.log_z_low <= truth <= res.log_z_high and abs(res.log_z - truth) < 0.05, (mixed, res.log_z, truth)
