"""Annealed importance sampling (AIS) and test log-likelihoods (the DBN variational bound: bound.py).

The partition function Z of a 784-500 RBM is a sum over 2^500 terms; Salakhutdinov &
Murray (2008, "On the quantitative analysis of deep belief networks") estimate it with
annealed importance sampling (Neal 2001). This module implements their estimator for
any pair of unit types, generically over the unit interface of ``units.py``.

The path. Let E_B(a, o) be the target RBM's energy, with ``a`` the *annealed* layer
(visible or hidden, ``over=``) and ``o`` the other layer, and let the base model A be the
same RBM with W = 0 and the annealed layer's biases replaced by base-rate biases b_A
(fitted to data; the other layer keeps the target's parameters). The intermediate models
are the geometric averages of the joints,

    p_k(a, o) ∝ exp(-(1 - β_k) E_A(a, o) - β_k E_B(a, o)),   0 = β_0 < ... < β_K = 1,

which are again RBMs: weights β_k W, annealed-layer bias (1 - β_k) b_A + β_k b_B (units
whose bias enters as ``x + b`` and whose scale s(a) is shared by A and B, which holds for
every unit type here because A copies the target's variances). Summing ``o`` out gives
the unnormalised marginal

    log p*_k(a) = -(1 - β_k) E_A(a) - β_k E_B(a) - F_o(β_k s(a) W),

with E_A, E_B the annealed layer's self-energies and F_o the other layer's free energy
(``Units.free_energy``). One AIS run draws a_0 from the factorised base model, then for
k = 1..K adds log p*_k(a_{k-1}) - log p*_{k-1}(a_{k-1}) to its log weight and moves
a_{k-1} -> a_k with one Gibbs sweep o ~ p_k(o | a), a ~ p_k(a | o) that leaves p_k
invariant. The mean weight is an unbiased estimate of Z_B / Z_A, and
log Z_A = -F_a^A(0) - F_o(0) is exact because A is factorised.

Over the visible layer (``over="visible"``) this is the paper's algorithm for binary
RBMs; over the hidden layer (``over="hidden"``) the visible layer is summed or integrated
out analytically, which is what RBMs with Gaussian visible units need.

All AIS arithmetic runs in ``dtype`` (float64 by default): the weight increments are
differences of free energies of size ~10^3 multiplied by steps of 10^-5, which float32
would round away. Log weights are combined with log-sum-exp and never overflow.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import Tensor

from deepbelief.errors import ConfigError, check_choice, check_int
from deepbelief.units import Units

#: the paper's schedule: steps of 1e-3 up to 0.5, 1e-4 up to 0.9, 1e-5 up to 1
PAPER_SEGMENTS: tuple[tuple[float, float, int], ...] = ((0.0, 0.5, 500), (0.5, 0.9, 4000), (0.9, 1.0, 10000))
PAPER_N_BETAS = sum(n for _, _, n in PAPER_SEGMENTS)  # 14,500 intermediate distributions

@dataclass
class AISResult:
    """An AIS estimate of log Z.

    Attributes:
        log_z: log of the mean importance weight plus log Z_A, the estimate of log Z.
        log_z_low, log_z_high: log(mean weight -/+ 3 standard errors of the mean) plus
            log Z_A, the paper's uncertainty interval (``-inf`` when the lower end is <= 0).
        log_weights: (n_runs,) float64 log importance weights, including log Z_A, so
            ``logsumexp(log_weights) - log(n_runs) == log_z``.
        ess: effective sample size (sum w)^2 / sum w^2, in [1, n_runs].
        n_runs: number of parallel AIS runs.
        n_betas: number of intermediate distributions K (temperatures beta_1..beta_K = 1).
        seconds: wall time of the run.
        log_z_base: exact log Z of the base model.
        over: the annealed layer, ``"visible"`` or ``"hidden"``.
    """

    log_z: float
    log_z_low: float
    log_z_high: float
    log_weights: Tensor = field(repr=False)
    ess: float
    n_runs: int
    n_betas: int
    seconds: float
    log_z_base: float = 0.0
    over: str = "visible"

    def __float__(self) -> float:
        return self.log_z

    @property
    def uncertainty(self) -> tuple[float, float]:
        """(log_z - log_z_low, log_z_high - log_z): the interval's half-widths in nats."""
        return self.log_z - self.log_z_low, self.log_z_high - self.log_z


# -- the schedule ------------------------------------------------------------------------
def paper_betas(n_betas: int = PAPER_N_BETAS) -> Tensor:
    """Inverse temperatures spaced like Salakhutdinov & Murray (2008), float64 on the CPU.

    ``n_betas`` (K) intermediate distributions are split between [0, 0.5), [0.5, 0.9) and
    [0.9, 1] in the paper's proportions 500 : 4000 : 10000, each segment uniformly spaced;
    K = 14,500 reproduces the paper's schedule exactly. Returns K + 1 values, 0 first and
    1 last, shape (K + 1,).
    """
    n_betas = check_int("n_betas", n_betas, minimum=3)
    counts = [max(1, round(n_betas * n / PAPER_N_BETAS)) for _, _, n in PAPER_SEGMENTS[:2]]
    counts.append(n_betas - sum(counts))
    if counts[-1] < 1:
        raise ConfigError(f"n_betas must leave at least one step per segment, got {n_betas}")
    parts = [torch.linspace(lo, hi, c + 1, dtype=torch.float64)[:-1] for (lo, hi, _), c in zip(PAPER_SEGMENTS, counts)]
    return torch.cat(parts + [torch.ones(1, dtype=torch.float64)])


def _check_betas(betas) -> list[float]:
    if betas is None:
        return paper_betas().tolist()
    if isinstance(betas, int) and not isinstance(betas, bool):
        return paper_betas(betas).tolist()
    b = torch.as_tensor(betas, dtype=torch.float64).detach().cpu()
    if b.dim() != 1 or b.numel() < 2:
        raise ConfigError(f"betas must be a 1-D sequence of at least 2 temperatures, got shape {tuple(b.shape)}")
    if not bool(torch.isfinite(b).all()) or float(b[0]) != 0.0 or float(b[-1]) != 1.0:
        raise ConfigError(f"betas must start at 0 and end at 1, got first {float(b[0]):g}, last {float(b[-1]):g}")
    if not bool((b[1:] > b[:-1]).all()):
        raise ConfigError("betas must be strictly increasing, got a non-increasing step")
    return b.tolist()


# -- the base model ----------------------------------------------------------------------
@torch.no_grad()
def fit_base_biases(units, data: Tensor, eps: float = 1e-3) -> Tensor:
    """Base-rate biases of ``units`` fitted to the marginals of ``data`` (n, units.n).

    Each unit type's ``base_rate_bias``: Bernoulli groups get log(p / (1 - p)) with p the
    mean activity clipped to [eps, 1 - eps] (the paper's base-rate model), softmax groups
    log p, Gaussian groups the data mean; other unit types keep their current bias.
    Returns a (units.n,) tensor.
    """
    bias = units.base_rate_bias(data, eps)
    return units.bias.detach().clone() if bias is None else bias


def _resolve_over(rbm, over: str) -> str:
    check_choice("over", over, {"auto", "visible", "hidden"})
    if over != "auto":
        return over
    # the paper anneals binary (0/1) visible layers; real-valued ones are summed over h
    return "visible" if rbm.visible.unit_interval else "hidden"


# -- AIS ---------------------------------------------------------------------------------
@torch.no_grad()
def ais_log_partition(
    rbm,
    *,
    n_runs: int = 100,
    betas: int | Sequence[float] | Tensor | None = None,
    base_data: Tensor | None = None,
    over: str = "auto",
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    progress: Callable[[int, int], None] | None = None,
    mixed: bool = True,
) -> AISResult:
    """Estimate log Z of ``rbm`` by annealed importance sampling (Salakhutdinov & Murray 2008).

    Args:
        rbm: any ``RBM`` (not modified; AIS runs on a ``dtype`` copy on its device).
        n_runs: number of independent AIS runs, simulated in parallel as one batch.
        betas: None for the paper's 14,500 intermediate distributions, an int K for K
            distributions spaced like the paper's (``paper_betas``), or an explicit
            increasing sequence from 0 to 1.
        base_data: (n, n_visible) data; the base model's annealed-layer biases are fitted
            to its marginals (for ``over="hidden"`` to the marginals of E[h | v]). None
            keeps the target's biases (then only the weights are annealed).
        over: the annealed layer: ``"visible"``, ``"hidden"`` or ``"auto"`` (visible when
            the visible units are discrete, else hidden).
        generator: the run's generator, on the model's device (None: a fresh one seeded 0).
        dtype: arithmetic precision of the whole run (float64 by default).
        progress: called as ``progress(k, K)`` about 100 times during the run (no host
            synchronisation is needed to call it).
        mixed: for Bernoulli-Bernoulli RBMs (with ``dtype`` float64), run the chains and
            products in float32 and only the log weights in float64 (``_ais_mixed``): about
            twice as fast on a CPU, same estimator; False runs everything in ``dtype``.

    Returns:
        an ``AISResult``. The estimate of Z is unbiased; by Jensen's inequality the
        estimate of log Z is biased low, so log-likelihoods computed from it tend to be
        optimistic when the runs have not mixed (watch ``ess``).
    """
    t0 = time.perf_counter()
    n_runs = check_int("n_runs", n_runs, minimum=1)
    bl = _check_betas(betas)
    over = _resolve_over(rbm, over)
    device = rbm.W.device
    if generator is None:
        generator = torch.Generator(device=device).manual_seed(0)
    elif torch.device(generator.device).type != device.type:
        raise ConfigError(f"generator must be on the model's device ({device}), got one on {generator.device}")
    model = copy.deepcopy(rbm).to(dtype=dtype)
    if over == "visible":
        ann, oth, W = model.visible, model.hidden, model.W  # (n_a, n_o): a @ W feeds o
    else:
        ann, oth, W = model.hidden, model.visible, model.W.T
    base = copy.deepcopy(ann)
    if base_data is not None:
        x = model.check_input("base_data", base_data, device=device)
        if over == "hidden":
            from deepbelief.rbm import batched

            x = batched(model.mean_hidden, x)
        base.set_bias_(fit_base_biases(ann, x))
    zero_a = torch.zeros(1, ann.n, device=device, dtype=dtype)
    zero_o = torch.zeros(1, oth.n, device=device, dtype=dtype)
    log_za = float(-(base.free_energy(zero_a) + oth.free_energy(zero_o)))  # factorised base: exact
    if mixed and dtype == torch.float64 and ann.kind == "bernoulli" and oth.kind == "bernoulli":
        logw = _ais_mixed(W, base.bias, ann.bias, oth.bias, n_runs, bl, generator, progress)
    else:
        logw = _ais_general(ann, oth, base, W, n_runs, bl, generator, progress)
    return _summarise(logw + log_za, log_za, n_runs, len(bl) - 1, over, time.perf_counter() - t0)


def _ais_general(ann: Units, oth: Units, base: Units, W: Tensor, n_runs: int, bl: list[float], generator,
                 progress) -> Tensor:
    """The AIS runs for any unit types, all in the model's dtype: the (n_runs,) float64 log
    weights log p*_K(a_{K-1}) / p_0(a_0) ... without the base's log Z_A (module docstring)."""
    device, dtype = W.device, W.dtype
    db = ann.bias - base.bias  # (n_a,) b_B - b_A: shifts the input of the mixed conditional
    wt = W.T.contiguous()
    # units whose self-energy is -b . u: E_A(a) - E_B(a) = a . db, one matrix-vector product
    linear = all(type(g).energy is Units.energy for g in ann.unit_groups())
    a = base.sample(torch.zeros(n_runs, ann.n, device=device, dtype=dtype), generator)
    logw = torch.zeros(n_runs, device=device, dtype=torch.float64)
    K = len(bl) - 1
    every = max(1, K // 100)
    for k in range(1, K + 1):
        b_prev, b = bl[k - 1], bl[k]
        x = ann.scale(a) @ W  # (n_runs, n_o)
        # log p*_k(a) - log p*_{k-1}(a) = (b - b_prev) (E_A(a) - E_B(a)) - F_o(b x) + F_o(b_prev x)
        de = a @ db if linear else base.energy(a) - ann.energy(a)
        inc = (b - b_prev) * de - oth.free_energy(b * x) + oth.free_energy(b_prev * x)
        logw += inc.to(torch.float64)
        if k < K:
            o = oth.sample(b * x, generator)
            # p_k(a | o): weights b W and bias (1-b) b_A + b b_B = b_B - (1-b) db
            a = ann.sample(b * (oth.scale(o) @ wt) - (1.0 - b) * db, generator)
        if progress is not None and (k % every == 0 or k == K):
            progress(k, K)
    return logw


def _ais_mixed(W: Tensor, b_a: Tensor, b_b: Tensor, c: Tensor, n_runs: int, bl: list[float], gen,
               progress) -> Tensor:
    """AIS for a Bernoulli-Bernoulli RBM with float32 chains and products, float64 log weights.

    The weight increment of step k is sum_j [softplus(b_k x_j + c_j) - softplus(b_{k-1} x_j
    + c_j)] + (b_k - b_{k-1}) a . db. Subtracting two softplus values of size ~10 in float32
    would lose the increment (steps of 1e-5) to rounding; written as
        softplus(z + d) - softplus(z) = log1p(expm1(d) * sigmoid(z)),  z = b_{k-1} x + c, d = (b_k - b_{k-1}) x,
    it is computed to float32's relative precision of the increment itself, then summed into
    float64 log weights (tests/test_ais.py bounds the difference from the float64 path).
    Returns the (n_runs,) float64 log weights without log Z_A.
    """
    f = torch.float32
    W32, wt32 = W.to(f).contiguous(), W.T.to(f).contiguous()
    db, c32, bb = (b_b - b_a).to(f), c.to(f), b_b.to(f)
    dev = W.device
    a = (torch.rand(n_runs, W.shape[0], generator=gen, device=dev, dtype=f) < torch.sigmoid(b_a.to(f))).to(f)
    logw = torch.zeros(n_runs, device=dev, dtype=torch.float64)
    K = len(bl) - 1
    every = max(1, K // 100)
    for k in range(1, K + 1):
        b_prev, b = bl[k - 1], bl[k]
        x = a @ W32  # (n_runs, n_o)
        z = x * b_prev + c32
        inc = torch.log1p(torch.expm1(x * (b - b_prev)) * torch.sigmoid(z)).sum(-1)
        logw += inc.double() + (b - b_prev) * (a @ db).double()
        if k < K:
            p_o = torch.sigmoid(x * b + c32)
            o = (torch.rand(p_o.shape, generator=gen, device=dev, dtype=f) < p_o).to(f)
            # p_k(a | o): weights b W and bias b_B - (1 - b) db
            p_a = torch.sigmoid(torch.addmm(bb - (1.0 - b) * db, o, wt32, alpha=b))
            a = (torch.rand(p_a.shape, generator=gen, device=dev, dtype=f) < p_a).to(f)
        if progress is not None and (k % every == 0 or k == K):
            progress(k, K)
    return logw


def _summarise(log_weights: Tensor, log_za: float, n_runs: int, K: int, over: str, seconds: float) -> AISResult:
    lw = log_weights.detach().to("cpu", torch.float64)
    m = float(lw.max())
    r = torch.exp(lw - m)  # in (0, 1]: no overflow
    mean = float(r.mean())
    se = float(r.std()) / math.sqrt(n_runs) if n_runs > 1 else float("inf")
    log_z = m + math.log(mean)
    high = m + math.log(mean + 3 * se) if math.isfinite(se) else math.inf
    low = m + math.log(mean - 3 * se) if mean - 3 * se > 0 else -math.inf
    ess = float(r.sum() ** 2 / (r * r).sum())
    return AISResult(log_z=log_z, log_z_low=low, log_z_high=high, log_weights=lw, ess=ess, n_runs=n_runs,
                     n_betas=K, seconds=seconds, log_z_base=log_za, over=over)


# -- log-likelihoods ---------------------------------------------------------------------
def as_log_z(value) -> float:
    if isinstance(value, AISResult):
        return value.log_z
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise ConfigError(f"log_z must be a finite number or an AISResult, got {value!r}")


@torch.no_grad()
def rbm_log_prob(rbm, data, log_z_or_result, *, batch_size: int = 4096) -> Tensor:
    """log p(v) = -F(v) - log Z for each row of ``data`` (n, n_visible): shape (n,), float64."""
    log_z = as_log_z(log_z_or_result)
    device = rbm.W.device
    x = rbm.check_input("data", data, device=device)
    r = copy.deepcopy(rbm).to(torch.float64)
    out = [-r.free_energy(x[i : i + batch_size].to(torch.float64)) for i in range(0, x.shape[0], batch_size)]
    return torch.cat(out) - log_z


def rbm_log_likelihood(rbm, data, log_z_or_result, *, batch_size: int = 4096) -> float:
    """Average log-probability of ``data`` (n, n_visible) under ``rbm``, in nats.

    (1/n) sum_i [-F(v_i)] - log Z, with the free energy F exact and log Z exact or an AIS
    estimate (Salakhutdinov & Murray 2008, eq. 12). With an AIS ``log_z`` the result
    inherits its uncertainty: shift by the ``AISResult``'s interval for error bars.
    """
    return float(rbm_log_prob(rbm, data, log_z_or_result, batch_size=batch_size).mean())
