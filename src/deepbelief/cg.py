"""Non-linear conjugate gradients: Polak-Ribiere directions, a strong-Wolfe line search.

The optimiser of Hinton & Salakhutdinov (2006)'s fine-tuning code, which called Carl
Rasmussen's ``minimize.m`` for three line searches on each 1,000-case mini-batch. This is
our own implementation of the same algorithm (Polak-Ribiere conjugate gradients with
a line search by cubic extrapolation and cubic/quadratic interpolation that stops at the
first point meeting the strong Wolfe conditions; Nocedal & Wright 2006, chapters 3 and 5),
written from the algorithm, not from that code. It works on one flat parameter vector and
a function returning the loss and its gradient there.

Why our own and not ``torch.optim.LBFGS(line_search_fn="strong_wolfe")``: the paper's
method is conjugate gradients, not a quasi-Newton method; LBFGS keeps a curvature
history that has no counterpart in it and whose state would have to travel in
checkpoints, and its count of line searches per call (``max_iter``) is not exposed per
search. Conjugate gradients as run by the paper start afresh on every mini-batch
(steepest descent first), so nothing but the weights carries from one batch to the next,
and each call costs a known number of line searches.

For a direction s at x with slope d0 = g(x)^T s < 0, a step t is accepted when

    f(x + t s) <= f(x) + rho t d0                 (sufficient decrease)
    |g(x + t s)^T s| <= sigma |d0|                (strong curvature condition)

with rho = 0.01 and sigma = 0.5 (``minimize.m``'s defaults; 0 < rho < sigma < 1). After an
accepted step the new direction is s' = beta s - g', with the Polak-Ribiere coefficient
beta = g'^T (g' - g) / g^T g; where s' is not a descent direction the search restarts along
-g'. The first trial step of each search is the previous step times the ratio of the old to
the new slope (at most ``max_slope_ratio``), the first of a call 1 / (1 + |g|^2) (the step
that would reduce f by about 1 if f were linear: ``minimize.m``'s ``red = 1``).

Near the precision floor. When f is nearly minimised (a fitted net's cross-entropy of 1e-8
per image in float32), the changes of f along a search are of the order of its rounding
error: the sufficient-decrease test then compares noise, and a cubic fitted to noisy values
extrapolates by the smallest step allowed, so every search spends its evaluations and fails.
As in Hager & Zhang's approximate Wolfe conditions (SIAM J. Optim. 16, 2005), f may exceed
the Wolfe line by its resolution eps_f = ``RESOLUTION`` * machine epsilon * |f(x)|, and
where f changed by less than eps_f between two points, the next trial comes from the slopes
alone (the secant step to the zero of the slope), which stay accurate there. A search whose
first step would not change x at all (below its floating-point resolution) is not started.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from deepbelief.errors import ConfigError, check_float, check_int

__all__ = ["CGResult", "LineSearch", "minimize_cg"]

#: f's rounding error, in machine epsilons of x's dtype relative to |f(x)|: a mean of ~1,000
#: rounded terms carries an error of order sqrt(1000) ~ 32 epsilons. Differences of f below
#: it are treated as noise (module docstring, "Near the precision floor").
RESOLUTION = 64.0


@dataclass
class LineSearch:
    """One line search: the start's value ``f0`` and slope ``slope0`` along the direction,
    the step taken (``step``, in units of the direction) and the value and slope there."""

    f0: float
    slope0: float
    step: float
    f: float
    slope: float
    evaluations: int
    #: True when the step meets the strong Wolfe conditions; False when the search ran out
    #: of evaluations (the best point seen is kept, and the next search restarts along -g)
    accepted: bool


@dataclass
class CGResult:
    """The point reached (``x``, same shape as ``x0``), its value ``f`` and gradient ``grad``."""

    x: Tensor
    f: float
    grad: Tensor
    line_searches: list = field(default_factory=list)
    evaluations: int = 0
    #: t |d0| of the last accepted search (the decrease its step predicted), or None: pass it
    #: as ``first_decrease`` to start the next call at the same scale
    last_decrease: float | None = None


def _cubic_min(f_a: float, d_a: float, f_b: float, d_b: float, h: float) -> float:
    """Offset z from a of the minimiser of the cubic p with p(0) = f_a, p'(0) = d_a,
    p(h) = f_b, p'(h) = d_b; may lie outside [0, h] (extrapolation); nan if p has none, or if
    h (or h^2, by underflow) is 0 and no cubic is defined.

    p(z) = f_a + d_a z + c z^2 + e z^3 with, for D = f_b - f_a - d_a h and E = d_b - d_a,
    e = (E - 2 D / h) / h^2 and c = D / h^2 - e h. p'(z) = 0 at the root of
    3 e z^2 + 2 c z + d_a = 0 where p'' > 0, z = -d_a / (c + sqrt(c^2 - 3 e d_a)), the form
    without cancellation as e -> 0 (then z = -d_a / (2 c), the parabola's minimiser).
    """
    hh = h * h
    if hh == 0.0 or not math.isfinite(hh):  # a bracket of width 0 (or one whose square underflows): no cubic
        return math.nan
    D = f_b - f_a - d_a * h
    e = ((d_b - d_a) - 2.0 * D / h) / hh
    c = D / hh - e * h
    disc = c * c - 3.0 * e * d_a
    if not math.isfinite(disc) or disc < 0:
        return math.nan
    den = c + math.sqrt(disc)
    return -d_a / den if den > 0 and math.isfinite(den) else math.nan


def minimize_cg(
    fun: Callable[[Tensor], tuple],
    x0: Tensor,
    *,
    line_searches: int = 3,
    max_evaluations: int = 20,
    rho: float = 0.01,
    sigma: float = 0.5,
    extrapolate: float = 3.0,
    interpolate: float = 0.1,
    max_slope_ratio: float = 100.0,
    first_decrease: float | None = None,
    callback: Callable[[LineSearch, Tensor, float, Tensor], None] | None = None,
) -> CGResult:
    """Minimise ``fun`` from ``x0`` with ``line_searches`` Polak-Ribiere line searches.

    Args:
        fun: ``fun(x) -> (f, g)``: the value (a float or 0-d tensor) and the gradient (a
            tensor shaped like ``x``) at ``x``. ``x`` is a fresh tensor each call (the
            function may keep it). Non-finite values make the search shorten its step.
        x0: (n,) the starting point (not modified); its dtype and device are the run's.
        line_searches: number of line searches (``minimize.m``'s positive ``length``).
        max_evaluations: function evaluations allowed per line search.
        rho, sigma: the Wolfe constants, 0 < rho < sigma < 1 (module docstring).
        extrapolate: a bracketing step grows by at most this factor.
        interpolate: new trial points stay this fraction of the bracket away from its ends.
        max_slope_ratio: cap on the growth of the first trial step from one search to the next.
        first_decrease: the first search's trial step is ``first_decrease / |d0|`` (the step whose
            linear decrease is this), e.g. a previous call's ``last_decrease`` on a similar
            problem; None, or a step too short to change x: ``minimize.m``'s 1 / (1 + |g|^2).
        callback: called after each line search as ``callback(record, x, f, g)`` at the
            point it ended on.
    Returns:
        a ``CGResult`` with the final point, value, gradient, one ``LineSearch`` per search
        and the number of function evaluations.
    """
    _check_options(line_searches, max_evaluations, rho, sigma, extrapolate, interpolate, x0)
    if first_decrease is not None:
        check_float("first_decrease", first_decrease, minimum=0.0, strict_min=True)
    evaluate = _Counted(fun)

    wolfe = _Wolfe(rho, sigma, extrapolate, interpolate, max_evaluations)
    x = x0.detach().clone()
    f0, g0 = evaluate(x.clone())
    if not math.isfinite(f0) or not bool(torch.isfinite(g0).all()):
        raise ConfigError(f"fun is not finite at the starting point (f = {f0})")
    s = -g0
    d0 = -_dot(s, s)
    step = 1.0 / (1.0 - d0)
    if first_decrease is not None and d0 != 0.0:
        carried = first_decrease / -d0
        if not torch.equal(x + carried * s, x):  # a carried step too short to change x: minimize.m's
            step = carried
    records, failed_before, last_decrease = [], False, None
    for _ in range(line_searches):
        if d0 == 0.0 or torch.equal(x + step * s, x):  # stationary, or a step below x's resolution
            break
        ls = _Search(evaluate, wolfe, x, s, f0, g0, d0)
        ls.extrapolate(step)
        ls.interpolate()
        t, ft, gt, dt = ls.t, ls.ft, ls.gt, ls.dt
        used = max_evaluations - ls.left
        if ls.accepted():
            records.append(LineSearch(f0, d0, t, ft, dt, used, True))
            last_decrease = -t * d0
            x = x + t * s
            s, d0, step = _polak_ribiere(s, g0, gt, d0, t, step, max_slope_ratio)
            f0, g0 = ft, gt
            failed_before = False
        else:
            best_f, best_t, best_g = ls.best
            records.append(LineSearch(f0, d0, best_t, best_f, _dot(best_g, s), used, False))
            if best_t > 0:
                x = x + best_t * s
                f0, g0 = best_f, best_g
            if failed_before:  # twice in a row, the second time along -g: give up
                if callback is not None:
                    callback(records[-1], x, f0, g0)
                break
            s = -g0
            d0 = -_dot(s, s)
            step = 1.0 / (1.0 - d0)
            failed_before = True
        if callback is not None:
            callback(records[-1], x, f0, g0)
    return CGResult(x=x, f=f0, grad=g0, line_searches=records, evaluations=evaluate.calls,
                    last_decrease=last_decrease)


def _check_options(line_searches, max_evaluations, rho, sigma, extrapolate, interpolate, x0) -> None:
    check_int("line_searches", line_searches, minimum=1)
    check_int("max_evaluations", max_evaluations, minimum=1)
    check_float("rho", rho, minimum=0.0, maximum=1.0, strict_min=True)
    check_float("sigma", sigma, minimum=0.0, maximum=1.0, strict_min=True)
    if not rho < sigma:
        raise ConfigError(f"the Wolfe constants need rho < sigma, got rho={rho}, sigma={sigma}")
    check_float("extrapolate", extrapolate, minimum=1.0, strict_min=True)
    check_float("interpolate", interpolate, minimum=0.0, maximum=0.5, strict_min=True)
    if not isinstance(x0, Tensor) or x0.dim() != 1:
        raise ConfigError(f"x0 must be a 1-d tensor (a flat parameter vector), got "
                          f"{tuple(x0.shape) if isinstance(x0, Tensor) else type(x0).__name__}")


class _Counted:
    """``fun`` as the line searches call it: (float value, gradient), its calls counted and
    the gradient's shape checked."""

    def __init__(self, fun: Callable[[Tensor], tuple]):
        self.fun, self.calls = fun, 0

    def __call__(self, x: Tensor) -> tuple[float, Tensor]:
        self.calls += 1
        f, g = self.fun(x)
        if g.shape != x.shape:
            raise ConfigError(f"fun must return a gradient shaped like x {tuple(x.shape)}, got {tuple(g.shape)}")
        return float(f), g


def _polak_ribiere(s: Tensor, g: Tensor, g_new: Tensor, d: float, t: float, step: float,
                   max_slope_ratio: float) -> tuple[Tensor, float, float]:
    """After an accepted step t along s (slope d at its start, gradient g there, g_new at its
    end): the next direction, its slope and the first trial step of the next search."""
    beta = (_dot(g_new, g_new) - _dot(g, g_new)) / _dot(g, g)  # beta = g'^T (g' - g) / g^T g
    s = beta * s - g_new
    d_new = _dot(g_new, s)
    if d_new >= 0:  # not a descent direction: restart along the gradient
        s = -g_new
        d_new = -_dot(s, s)
    step = t * min(max_slope_ratio, d / (d_new - 1e-300)) if d_new < 0 else step
    return s, d_new, step


def _dot(a: Tensor, b: Tensor) -> float:
    return float(torch.dot(a, b))


@dataclass
class _Wolfe:
    """The line search's constants (``minimize_cg``'s arguments of the same names)."""

    rho: float
    sigma: float
    extrapolate: float
    interpolate: float
    max_evaluations: int


class _Search:
    """One line search along ``s`` from ``x`` (value ``f0``, slope ``d0`` < 0): a bracket
    [ta, tb] of steps, the current trial ``t`` with its value, gradient and slope, the best
    point seen and the evaluations left."""

    def __init__(self, evaluate, c: _Wolfe, x: Tensor, s: Tensor, f0: float, g0: Tensor, d0: float):
        self.evaluate, self.c, self.x, self.s, self.f0, self.d0 = evaluate, c, x, s, f0, d0
        self.best = (f0, 0.0, g0)  # (f, t, g)
        self.left = c.max_evaluations
        self.tol = RESOLUTION * torch.finfo(x.dtype).eps * abs(f0)  # f's resolution at x
        # the lower end of the bracket: satisfies sufficient decrease, slope still < 0
        self.ta, self.fa, self.da = 0.0, f0, d0

    def _track(self) -> None:
        if math.isfinite(self.ft) and self.ft < self.best[0]:
            self.best = (self.ft, self.t, self.gt)

    def _above_wolfe_line(self) -> bool:
        return self.ft > self.f0 + self.c.rho * self.t * self.d0 + self.tol

    def _model_min(self, f_a: float, d_a: float, f_b: float, d_b: float, h: float) -> float:
        """Offset from a of the next trial: the cubic's minimiser, or the secant step on the
        slopes where f_a and f_b differ by less than f's resolution."""
        if abs(f_b - f_a) > self.tol:
            return _cubic_min(f_a, d_a, f_b, d_b, h)
        return h * d_a / (d_a - d_b) if d_a < d_b else math.nan  # the slope's zero, if it rises

    def accepted(self) -> bool:
        """The strong Wolfe conditions at the current trial."""
        return math.isfinite(self.ft) and abs(self.dt) <= -self.c.sigma * self.d0 and not self._above_wolfe_line()

    def extrapolate(self, t: float) -> None:
        """From the trial step ``t``, grow the step until the slope turns up or f rises
        above the Wolfe line (an upper end of the bracket), or evaluations run out."""
        c = self.c
        self.t = t
        while True:
            while True:
                self.ft, self.gt = self.evaluate(self.x + self.t * self.s)
                self.left -= 1
                if (math.isfinite(self.ft) and bool(torch.isfinite(self.gt).all())) or self.left == 0:
                    break
                self.t = self.ta + 0.5 * (self.t - self.ta)  # overflow: halve the step towards the good end
            self.dt = _dot(self.gt, self.s) if math.isfinite(self.ft) else math.nan
            self._track()
            if (not math.isfinite(self.dt) or self.dt > c.sigma * self.d0 or self._above_wolfe_line()
                    or self.left == 0):
                return
            t, ta = self.t, self.ta
            new = ta + self._model_min(self.fa, self.da, self.ft, self.dt, t - ta)
            if not math.isfinite(new) or new < 0 or new > t * c.extrapolate:
                new = t * c.extrapolate
            elif new < t + c.interpolate * (t - ta):
                new = t + c.interpolate * (t - ta)
            self.ta, self.fa, self.da = t, self.ft, self.dt
            self.t = new

    def interpolate(self) -> None:
        """Shrink the bracket until the strong Wolfe conditions hold (or evaluations run out)."""
        c, tb = self.c, None
        while (math.isfinite(self.ft) and (abs(self.dt) > -c.sigma * self.d0 or self._above_wolfe_line())
               and self.left > 0):
            if self.dt > 0 or self._above_wolfe_line():
                tb, fb, db = self.t, self.ft, self.dt  # the minimiser lies below t
            else:
                self.ta, self.fa, self.da = self.t, self.ft, self.dt  # still descending steeply: above t
            if tb is None:  # cannot happen (the extrapolation ends on an upper end): be safe
                return
            ta, fa, da = self.ta, self.fa, self.da
            h = tb - ta
            if fb > self.f0 + self.tol:  # f rose a lot: the parabola through fa, da, fb is the safer model
                curv = fb - fa - da * h
                new = ta - 0.5 * da * h * h / curv if curv != 0.0 else math.nan
            else:
                new = ta + self._model_min(fa, da, fb, db, h)
            if not math.isfinite(new):
                new = ta + 0.5 * h
            self.t = min(max(new, ta + c.interpolate * h), tb - c.interpolate * h)
            self.ft, self.gt = self.evaluate(self.x + self.t * self.s)
            self.left -= 1
            self.dt = _dot(self.gt, self.s) if math.isfinite(self.ft) else math.nan
            self._track()
