"""RAISE against exact answers: its weight is unbiased for the annealed model's p_ann(v)
(computed by multiplying the exact transition matrices of a tiny RBM), and with forward AIS
it sandwiches the exact test log-likelihood."""

import math
from functools import partial

import pytest
import torch

from deepbelief import exact
from deepbelief.ais import ais_log_partition, fit_base_biases, rbm_log_likelihood
from deepbelief.errors import ConfigError
from deepbelief.rbm import RBM
from deepbelief.reverse_ais import raise_log_prob

from _models import tiny_rbm


# one OpenMP thread for these thousands of tiny ops: tests/conftest.py sets it for the session


tiny = partial(tiny_rbm, nv=5, nh=4, scale=1.5)


def _bern_prob(states, x):
    """p(states | input x) for Bernoulli units: (S_in, S_out) from x (S_in, n) and states (S_out, n)."""
    p = torch.sigmoid(x)
    return torch.exp(torch.log(p) @ states.T + torch.log1p(-p) @ (1 - states).T)


def annealed_marginal(rbm, b_a, betas):
    """Exact p_ann over the visible states: p_0 (base rates b_a), then T_1 .. T_K."""
    V = exact.all_binary(rbm.n_visible)
    H = exact.all_binary(rbm.n_hidden)
    W, b_b, c = rbm.W.detach(), rbm.visible.bias.detach(), rbm.hidden.bias.detach()
    p = _bern_prob(V, b_a.expand(1, -1))[0]  # (S_v,) the factorised base model
    for beta in betas[1:]:
        bias = (1 - beta) * b_a + beta * b_b
        t = _bern_prob(H, beta * V @ W + c) @ _bern_prob(V, beta * H @ W.T + bias)  # (S_v, S_v)
        p = p @ t
    return V, p


def test_raise_weight_is_unbiased_for_the_annealed_model():
    rbm = tiny(1)
    data = (torch.rand(200, 5, generator=torch.Generator().manual_seed(2)) < 0.4).double()
    b_a = fit_base_biases(rbm.visible, data)
    betas = [0.0, 0.2, 0.5, 0.8, 1.0]
    V, p_ann = annealed_marginal(rbm, b_a, betas)
    assert abs(float(p_ann.sum()) - 1) < 1e-12
    for row in (3, 17):
        v = V[row:row + 1]
        res = raise_log_prob(rbm, v, n_runs=40_000, betas=betas, base_data=data,
                             generator=torch.Generator().manual_seed(row), batch_size=40_000)
        w = torch.exp(res.log_weights.flatten())
        se = float(w.std()) / math.sqrt(w.numel())
        assert abs(float(w.mean()) - float(p_ann[row])) < 4 * se, (float(w.mean()), float(p_ann[row]), se)
        # Jensen: the mean log weight lies below log p_ann(v)
        assert res.value < math.log(float(p_ann[row])) + 4 * res.stderr


def test_raise_and_forward_ais_sandwich_the_exact_log_likelihood():
    rbm = tiny(4, nv=8, nh=6, scale=2.0)
    V, pv = exact.visible_distribution(rbm)
    g = torch.Generator().manual_seed(0)
    test = V[torch.multinomial(pv, 300, replacement=True, generator=g)]  # data from the model itself
    train = V[torch.multinomial(pv, 2000, replacement=True, generator=g)]
    exact_ll = float(exact.log_prob(rbm, test).mean())
    fwd = ais_log_partition(rbm, n_runs=200, betas=2000, base_data=train, generator=g)
    forward_ll = rbm_log_likelihood(rbm, test, fwd)
    rev = raise_log_prob(rbm, test, n_runs=1, betas=2000, base_data=train, generator=g)
    assert rev.value - 3 * rev.stderr < exact_ll  # conservative (in expectation)
    assert abs(rev.value - exact_ll) < 0.1 + 3 * rev.stderr  # and close with a slow schedule
    assert abs(forward_ll - exact_ll) < 0.05


def test_raise_refuses_real_valued_visibles():
    r = RBM({"type": "gaussian", "n": 3}, 2)
    with pytest.raises(ConfigError, match="discrete visible units"):
        raise_log_prob(r, torch.zeros(1, 3), betas=10)


def test_conservative_dbn_bound_lies_below_the_exact_log_likelihood():
    from deepbelief.bound import dbn_lower_bound
    from deepbelief.dbn import DBN
    from deepbelief.reverse_ais import raise_dbn_lower_bound

    g = torch.Generator().manual_seed(5)
    r1, r2 = RBM(6, 5, weight_std=1.0, generator=g).double(), RBM(5, 4, weight_std=1.5, generator=g).double()
    dbn = DBN([r1, r2])
    v = (torch.rand(200, 6, generator=g) < 0.5).double()
    exact_ll = float(exact.dbn_log_prob(dbn, v).mean())
    exact_bound = float(exact.dbn_variational_bound(dbn, v).mean())
    assert exact_bound <= exact_ll + 1e-9
    h = torch.sigmoid(v @ r1.W + r1.hidden.bias)
    cons = raise_dbn_lower_bound(dbn, v, n_samples=4, betas=1000, base_data=h, generator=g)
    # E[estimate] <= the exact bound (Jensen): below it within Monte Carlo error, and close
    assert cons.value < exact_bound + 3 * cons.stderr
    assert abs(cons.value - exact_bound) < 0.1 + 3 * cons.stderr
    fwd = dbn_lower_bound(dbn, v, exact.log_partition(r2), n_samples=4, generator=g)
    assert abs(fwd.value - exact_bound) < 3 * fwd.stderr + 1e-9
