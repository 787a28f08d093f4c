"""Conjugate gradients (deepbelief.cg) against closed forms and scipy."""

import math

import numpy as np
import pytest
import torch

from deepbelief.cg import _cubic_min, minimize_cg
from deepbelief.errors import ConfigError


def _quadratic(n, seed, cond=50.0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    A = q @ torch.diag(torch.logspace(0, math.log10(cond), n, dtype=torch.float64)) @ q.T
    b = torch.randn(n, generator=g, dtype=torch.float64)
    return A, b


def test_cubic_minimiser_of_a_parabola_and_of_a_cubic():
    # p(z) = (z - 2)^2: from (0, 4, -4) and (1, 1, -2) the minimiser is at 2 (extrapolation)
    assert _cubic_min(4.0, -4.0, 1.0, -2.0, 1.0) == pytest.approx(2.0)
    # p(z) = z^3 - 3 z: p' = 3 z^2 - 3, local minimum at z = 1; data at z = 0 and z = 3
    assert _cubic_min(0.0, -3.0, 18.0, 24.0, 3.0) == pytest.approx(1.0)
    # no minimum: p(z) = -z^3 - z is decreasing everywhere
    assert math.isnan(_cubic_min(0.0, -1.0, -2.0, -4.0, 1.0))


@pytest.mark.parametrize("n,seed", [(6, 0), (10, 1)])
def test_exact_line_searches_solve_an_n_dimensional_quadratic_in_n_steps(n, seed):
    """f(x) = x^T A x / 2 - b^T x: with exact line searches conjugate gradients reach the
    minimiser A^{-1} b in n steps (Nocedal & Wright, theorem 5.2). A tiny sigma makes the
    Wolfe search exact; on a quadratic its cubic interpolation is exact."""
    A, b = _quadratic(n, seed)
    x_star = torch.linalg.solve(A, b)

    def fun(x):
        return 0.5 * x @ A @ x - b @ x, A @ x - b

    res = minimize_cg(fun, torch.zeros(n, dtype=torch.float64), line_searches=n, sigma=1e-9, rho=1e-10,
                      max_evaluations=50)
    assert all(r.accepted for r in res.line_searches) and len(res.line_searches) == n
    assert torch.allclose(res.x, x_star, atol=1e-8, rtol=0), (res.x - x_star).abs().max()
    # and after n - 2 steps it is not there yet: the n-step count is not slack
    early = minimize_cg(fun, torch.zeros(n, dtype=torch.float64), line_searches=n - 2, sigma=1e-9, rho=1e-10,
                        max_evaluations=50)
    assert (early.x - x_star).abs().max() > 1e-4


def test_l2_logistic_regression_matches_scipy_lbfgsb():
    optimize = pytest.importorskip("scipy.optimize")
    g = torch.Generator().manual_seed(3)
    n, d, lam = 300, 6, 0.1
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    w_true = torch.randn(d, generator=g, dtype=torch.float64)
    y = (torch.rand(n, generator=g, dtype=torch.float64) < torch.sigmoid(X @ w_true)).double()

    def loss_grad(w):
        z = X @ w
        f = (torch.nn.functional.softplus(z) - y * z).mean() + 0.5 * lam * (w @ w)
        return f, X.T @ (torch.sigmoid(z) - y) / n + lam * w

    ref = optimize.minimize(lambda w: tuple(t.numpy() if isinstance(t, torch.Tensor) else t for t in
                                            (float(loss_grad(torch.from_numpy(w))[0]),
                                             loss_grad(torch.from_numpy(w))[1])),
                            np.zeros(d), jac=True, method="L-BFGS-B", options={"gtol": 1e-13, "ftol": 1e-16,
                                                                             "maxiter": 10_000})
    res = minimize_cg(loss_grad, torch.zeros(d, dtype=torch.float64), line_searches=200)
    # the objective is strongly convex (lam > 0): one minimiser, reached by both
    assert np.abs(res.x.numpy() - ref.x).max() < 1e-7
    assert res.f == pytest.approx(ref.fun, abs=1e-12)
    assert float(res.grad.abs().max()) < 1e-8


def _rosenbrock(x):
    """The extended Rosenbrock function, a curved valley (minimum 0 at x = 1)."""
    a, b = x[:-1], x[1:]
    g = torch.zeros_like(x)
    g[:-1] += -400 * a * (b - a ** 2) - 2 * (1 - a)
    g[1:] += 200 * (b - a ** 2)
    return (100 * (b - a ** 2) ** 2 + (1 - a) ** 2).sum(), g


@pytest.mark.parametrize("start", [-1.2, 0.0, 2.0])
def test_every_accepted_step_meets_the_strong_wolfe_conditions(start):
    """Checked from the iterates alone with the oracle's own values: for the step
    p = x_{k+1} - x_k, f(x_{k+1}) <= f(x_k) + rho g_k^T p and |g_{k+1}^T p| <= sigma |g_k^T p|
    (scale-free forms of the conditions on t and s)."""
    points = []
    rho, sigma = 0.01, 0.5
    x0 = torch.full((6,), start, dtype=torch.float64)
    res = minimize_cg(_rosenbrock, x0, line_searches=40, rho=rho, sigma=sigma,
                      callback=lambda rec, x, f, grad: points.append((rec, x.clone())))
    prev = x0
    for rec, x in points:
        assert rec.accepted  # far from converged: no search may fail here
        p = x - prev
        f_prev, g_prev = _rosenbrock(prev)
        f_new, g_new = _rosenbrock(x)
        assert float(f_new) <= float(f_prev) + rho * float(g_prev @ p)
        assert abs(float(g_new @ p)) <= sigma * abs(float(g_prev @ p))
        prev = x
    assert len(points) == 40 and torch.equal(points[-1][1], res.x)
    # and it does solve the problem given enough line searches
    assert torch.allclose(minimize_cg(_rosenbrock, x0, line_searches=400).x, torch.ones(6, dtype=torch.float64),
                          atol=1e-8)


def test_the_first_call_and_bad_arguments():
    calls = []

    def fun(x):
        calls.append(x)
        return (x ** 2).sum(), 2 * x

    x0 = torch.tensor([1.0, -2.0], dtype=torch.float64)
    res = minimize_cg(fun, x0, line_searches=10)
    assert torch.equal(x0, torch.tensor([1.0, -2.0], dtype=torch.float64))  # not modified
    assert res.evaluations == len(calls)
    assert float(res.x.abs().max()) < 1e-8
    with pytest.raises(ConfigError, match="rho < sigma"):
        minimize_cg(fun, x0, rho=0.5, sigma=0.1)
    with pytest.raises(ConfigError, match="1-d tensor"):
        minimize_cg(fun, x0.view(1, 2))
    with pytest.raises(ConfigError, match="not finite"):
        minimize_cg(lambda x: (float("nan"), x), x0)


def test_overflow_shortens_the_step():
    # f is +inf beyond |x| > 3: the first trial steps overshoot and must be cut back
    def fun(x):
        if float(x.abs().max()) > 3:
            return float("inf"), torch.full_like(x, float("nan"))
        return ((x - 2.5) ** 2).sum(), 2 * (x - 2.5)

    res = minimize_cg(fun, torch.zeros(1, dtype=torch.float64), line_searches=5)
    assert abs(float(res.x[0]) - 2.5) < 1e-6


def test_a_bracket_of_width_zero_is_no_cubic_and_no_crash():
    # h = 0, or h so small that h^2 underflows: no cubic can be fitted (was ZeroDivisionError)
    assert math.isnan(_cubic_min(1.0, -1.0, 1.0, -1.0, 0.0))
    assert math.isnan(_cubic_min(1.0, -1.0, 1.0, -1.0, 1e-300))

    # |g|^2 = 2e300 makes the first trial step 1 / (1 + |g|^2) ~ 5e-301, whose square underflows.
    # The hinton2006 recipe with 60 CG epochs met a bracket of width 0 at epoch 29, loss near 0
    # (benchmarks/RESULTS.md, 2026-12-05)
    def fun(x):
        return 0.5e150 * float((x * x).sum()), 1e150 * x

    x0 = torch.ones(2, dtype=torch.float64)
    res = minimize_cg(fun, x0, line_searches=3)
    assert math.isfinite(res.f) and res.f <= fun(x0)[0]


def _separable_logistic(seed=0, n=1000, d=20, margin=12.0):
    """Logistic regression with a bias on linearly separable data, started far along a separator
    (smallest margin ``margin``, bias 0): the mean loss is ~1e-8, so in float32 its changes along
    a search are of the order of its rounding error (a fitted net after many CG epochs)."""
    g = torch.Generator().manual_seed(seed)
    w_true = torch.randn(d, generator=g, dtype=torch.float64)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    m = X @ w_true
    keep = m.abs() > 0.5  # a gap between the classes
    X, y = X[keep], torch.sign(m[keep])
    w0 = margin * w_true / float((y * (X @ w_true)).min())
    return X, y, torch.cat([w0, torch.zeros(1, dtype=torch.float64)])


def _logistic_loss(X, y, v):
    """Mean log(1 + exp(-y (x.w + b))) and its gradient in (w, b), accurate relative to their size."""
    z = y * (X @ v[:-1] + v[-1])
    r = y * torch.sigmoid(-z)
    return torch.nn.functional.softplus(-z).mean(), -torch.cat([(X * r.unsqueeze(1)).mean(0), r.mean().view(1)])


def test_searches_near_the_precision_floor_follow_the_slopes():
    """In float32 at a loss of ~1e-8 the sufficient-decrease test compares rounding noise and a
    cubic fitted to noisy values extrapolates by the smallest step: every search used to fail
    (RESOLUTION = 0 below). With f's resolution allowed for and the secant on the slopes, every
    search is accepted, and the float64 oracle confirms each step: it lowers the exact loss, and
    the exact slope at its end meets the strong curvature condition."""
    X, y, v0 = _separable_logistic()
    f_start = float(_logistic_loss(X, y, v0)[0])
    assert 1e-9 < f_start < 1e-6
    seen = []
    res = minimize_cg(lambda v: _logistic_loss(X.float(), y.float(), v), v0.float(), line_searches=3,
                      callback=lambda rec, x, f, g: seen.append((rec, x.double().clone())))
    assert len(res.line_searches) == 3 and all(r.accepted for r in res.line_searches)
    prev = v0
    for rec, x in seen:  # the exact loss falls at every step, and the exact slope is flat enough
        f_prev, g_prev = _logistic_loss(X, y, prev)
        f_new, g_new = _logistic_loss(X, y, x)
        s = (x - prev) / rec.step
        assert float(f_new) < float(f_prev)
        assert abs(float(g_new @ s)) <= 0.5 * abs(float(g_prev @ s)) * (1 + 1e-3)
        prev = x
    assert float(_logistic_loss(X, y, prev)[0]) < 0.6 * f_start


def test_without_the_resolution_allowance_the_same_searches_fail(monkeypatch):
    """The regime of the test above is the one that defeated the plain Wolfe search."""
    import deepbelief.cg as cg

    monkeypatch.setattr(cg, "RESOLUTION", 0.0)
    X, y, v0 = _separable_logistic()
    res = cg.minimize_cg(lambda v: _logistic_loss(X.float(), y.float(), v), v0.float(), line_searches=3)
    assert res.line_searches and not any(r.accepted for r in res.line_searches)
    assert torch.equal(res.x, v0.float())  # no progress at all


def test_first_decrease_sets_the_first_trial_step_and_last_decrease_reports_the_last_step():
    """The first trial of a call is x0 - (first_decrease / |g0|^2) g0, and ``last_decrease`` is
    t |d0| of the last accepted search (its records say which)."""
    A, b = _quadratic(5, 3)
    seen = []

    def fun(x):
        seen.append(x.clone())
        return 0.5 * x @ A @ x - b @ x, A @ x - b

    x0 = torch.zeros(5, dtype=torch.float64)
    g0 = -b
    res = minimize_cg(fun, x0, line_searches=2, first_decrease=0.25)
    assert torch.allclose(seen[1], x0 - (0.25 / float(g0 @ g0)) * g0, rtol=1e-12, atol=0)
    last = [r for r in res.line_searches if r.accepted][-1]
    assert res.last_decrease == pytest.approx(-last.step * last.slope0, rel=1e-12)
    with pytest.raises(ConfigError, match="first_decrease"):
        minimize_cg(fun, x0, first_decrease=0.0)


def test_carrying_the_step_scale_saves_the_evaluations_that_grow_a_tiny_first_step():
    """Near the precision floor minimize.m's first step (about 1) is ~1e6 times too short: the
    first search grows it by 3x per evaluation. Started at the scale of a previous call's last
    step, a call on the same problem reaches as low a loss in fewer evaluations."""
    X, y, v0 = _separable_logistic()

    def fun(v):
        return _logistic_loss(X.float(), y.float(), v)

    first = minimize_cg(fun, v0.float(), line_searches=3)
    cold = minimize_cg(fun, first.x, line_searches=3)
    warm = minimize_cg(fun, first.x, line_searches=3, first_decrease=first.last_decrease)
    assert warm.line_searches and all(r.accepted for r in warm.line_searches)
    f_first, f_cold, f_warm = (float(_logistic_loss(X, y, r.x.double())[0]) for r in (first, cold, warm))
    if cold.line_searches:  # the cold call grew its first step evaluation by evaluation
        assert all(r.accepted for r in cold.line_searches)
        assert warm.evaluations <= cold.evaluations - 5
        assert f_warm <= 1.05 * f_cold
    else:
        # where the first call ended with a smaller gradient (float32 rounding differs between
        # CPUs, whose AVX2 or AVX-512 kernels torch picks; seen on an AVX-512 machine), a step of
        # about 1 does not change x at float32's resolution, so the cold call stops where it started
        assert cold.evaluations == 1 and torch.equal(cold.x, first.x)
        assert f_warm < f_first


def test_a_carried_step_too_short_to_change_x_falls_back_to_the_default_first_step():
    """A scale carried from a fitted batch can be far too short for a batch with a large
    gradient; a step that cannot change x would end the call with no search (and, with the
    scale never updated, every later call too): the default first step is used instead."""
    A, b = _quadratic(4, 5)

    def fun(x):
        return 0.5 * x @ A @ x - b @ x, A @ x - b

    x0 = torch.ones(4, dtype=torch.float64)
    default = minimize_cg(fun, x0, line_searches=2)
    tiny = minimize_cg(fun, x0, line_searches=2, first_decrease=1e-300)
    assert len(tiny.line_searches) == 2 and all(r.accepted for r in tiny.line_searches)
    assert torch.equal(tiny.x, default.x)
