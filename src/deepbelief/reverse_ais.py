"""Reverse AIS (RAISE): a conservative estimate of an RBM's test log-likelihood.

Burda, Grosse & Salakhutdinov (2015), "Accurate and conservative estimates of MRF
log-likelihood using reverse annealing". Forward AIS (ais.py) estimates log Z from below
on average, so the log-likelihood -F(v) - log Z it gives is optimistic when its runs have
not mixed. RAISE bounds the other side.

The annealed model. With the intermediate distributions p_k ∝ p*_k of ais.py (base rate
model p_0 at beta_0 = 0, the RBM at beta_K = 1, over the annealed layer a, here the
visible layer) and T_k the Gibbs sweep a -> o -> a that leaves p_k invariant, the process

    a_0 ~ p_0,   a_k ~ T_k(. | a_{k-1}) for k = 1..K,   v = a_K

defines a proper distribution p_ann(v), close to the RBM's when the schedule is slow.
Each T_k is reversible with respect to p_k, so running the chain backwards from the test
image, a_K = v, a_{k-1} ~ T_k(. | a_k), is an importance proposal for the path, with weight

    w(v) = p_0(a_0) * prod_{k=1..K} p*_k(a_k) / p*_k(a_{k-1}),

an unbiased estimate of p_ann(v) (the normalisers of p_k cancel within each factor).
By Jensen's inequality E[log w] <= log p_ann(v): the average of log w over test images is a
stochastic lower bound on the annealed model's test log-likelihood, and with forward AIS
the two sandwich the RBM's (each within its own Monte Carlo error). The cost is the
forward run's per chain: two products per temperature.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import Tensor

from deepbelief.ais import _check_betas, _resolve_over, fit_base_biases
from deepbelief.bound import dbn_lower_bound_terms
from deepbelief.errors import ConfigError, check_int
from deepbelief.units import Units


@dataclass
class RAISEResult:
    """A RAISE estimate of the mean test log-likelihood.

    Attributes:
        value: mean over test images (and runs) of log w, in nats: conservative in expectation.
        stderr: standard error of that mean (over the n_test * n_runs log weights).
        log_weights: (n_test, n_runs) float64 log w of every image and run.
        per_image: (n_test,) log of the mean weight of each image's runs (a tighter,
            still conservative, estimate of each log p_ann(v) when n_runs > 1).
        n_betas, n_runs, seconds: the schedule's K, runs per image, wall time.
    """

    value: float
    stderr: float
    log_weights: Tensor = field(repr=False)
    per_image: Tensor = field(repr=False)
    n_betas: int
    n_runs: int
    seconds: float

    def __float__(self) -> float:
        return self.value

    @property
    def low(self) -> float:
        return self.value - 3 * self.stderr


@torch.no_grad()
def raise_log_prob(
    rbm,
    data: Tensor,
    *,
    n_runs: int = 1,
    betas: int | Sequence[float] | Tensor | None = None,
    base_data: Tensor | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    batch_size: int = 1000,
    progress: Callable[[int, int], None] | None = None,
) -> RAISEResult:
    """Reverse-AIS log-likelihood of ``data`` (n, n_visible) under ``rbm`` (discrete visibles).

    Args:
        rbm: an ``RBM`` whose visible units are Bernoulli or softmax groups (the chain
            anneals the visible layer, as ais.py does for them).
        data: (n, n_visible) test images; every row starts ``n_runs`` reverse chains.
        betas: the schedule, as in ``ais.ais_log_partition`` (None: the paper's 14,500).
        base_data: training data for the base-rate model (use the same as forward AIS).
        generator: the run's generator on the model's device (None: a fresh one seeded 0).
        batch_size: chains simulated at once (bounds memory; the result does not depend on it).
    Returns:
        a ``RAISEResult``; ``float(result)`` is the conservative mean log-likelihood.
    """
    t0 = time.perf_counter()
    n_runs = check_int("n_runs", n_runs, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    bl = _check_betas(betas)
    if _resolve_over(rbm, "auto") != "visible":
        raise ConfigError(f"RAISE anneals the visible layer and needs discrete visible units (those that forward "
                          f"AIS anneals over), got {rbm.visible.kind!r}")
    device = rbm.W.device
    generator = generator if generator is not None else torch.Generator(device=device).manual_seed(0)
    model = copy.deepcopy(rbm).to(dtype=dtype)
    x = model.check_input("data", data, device=device).to(dtype)
    base = copy.deepcopy(model.visible)
    if base_data is not None:
        base.set_bias_(fit_base_biases(model.visible, model.check_input("base_data", base_data, device=device)))
    chains = x.repeat_interleave(n_runs, 0)  # (n * n_runs, n_visible), runs of an image adjacent
    out = [_reverse_chains(model, base, chains[i:i + batch_size], bl, generator, progress)
           for i in range(0, chains.shape[0], batch_size)]
    lw = torch.cat(out).reshape(x.shape[0], n_runs).cpu()
    per_image = torch.logsumexp(lw, 1) - math.log(n_runs)
    n = lw.numel()
    stderr = float(lw.std()) / math.sqrt(n) if n > 1 else float("inf")
    return RAISEResult(value=float(lw.mean()), stderr=stderr, log_weights=lw, per_image=per_image,
                       n_betas=len(bl) - 1, n_runs=n_runs, seconds=time.perf_counter() - t0)


def _reverse_chains(model, base, a: Tensor, bl: list[float], gen, progress) -> Tensor:
    """log w of chains started at ``a`` (m, n_visible) and annealed from beta_K down to beta_0."""
    ann, oth, W = model.visible, model.hidden, model.W
    db = ann.bias - base.bias  # b_B - b_A
    wt = W.T.contiguous()
    linear = all(type(g).energy is Units.energy for g in ann.unit_groups())

    def log_f(a, x, b):  # log p*_b(a) up to a constant shared by every a (ais.py, module docstring)
        # -(1-b) E_A(a) - b E_B(a) - F_o(b x) = -E_A(a) - b (E_B(a) - E_A(a)) - F_o(b x)
        de = a @ db if linear else base.energy(a) - ann.energy(a)
        return -base.energy(a) + b * de - oth.free_energy(b * x)

    K = len(bl) - 1
    every = max(1, K // 100)
    x = a @ W
    logw = torch.zeros(a.shape[0], device=a.device, dtype=torch.float64)
    for k in range(K, 0, -1):
        b = bl[k]
        logw += log_f(a, x, b).to(torch.float64)
        o = oth.sample(b * x, gen)
        a = ann.sample(b * (oth.scale(o) @ wt) - (1.0 - b) * db, gen)  # a_{k-1} ~ T_k(. | a_k)
        x = a @ W
        logw -= log_f(a, x, b).to(torch.float64)
        if progress is not None and ((K - k + 1) % every == 0 or k == 1):
            progress(K - k + 1, K)
    # the normalised base model: log p_0(a) = -E_A(a) - log Z_a^A = -E_A(a) + F_a^A(0)
    zero = torch.zeros(1, ann.n, device=a.device, dtype=a.dtype)
    logw += (-base.energy(a) + base.free_energy(zero)).to(torch.float64)
    return logw


@torch.no_grad()
def raise_dbn_lower_bound(
    dbn,
    data: Tensor,
    *,
    n_samples: int = 1,
    betas: int | Sequence[float] | Tensor | None = None,
    base_data: Tensor | None = None,
    generator: torch.Generator | None = None,
    batch_size: int = 1000,
) -> RAISEResult:
    """The DBN variational bound of ``bound.dbn_lower_bound`` with the top RBM's log p(h) taken
    from one reverse-AIS chain per sample instead of -F(h) - log Z: conservative in
    expectation twice over (the variational gap, and Jensen's inequality for RAISE).

    ``base_data`` is the top RBM's training data (``bound.top_base_data``). Returns a
    ``RAISEResult`` whose ``log_weights`` are the (n, n_samples) bound terms.
    """
    t0 = time.perf_counter()
    rbms = list(dbn.rbms) if hasattr(dbn, "rbms") else list(dbn)
    if len(rbms) < 2:
        raise ConfigError(f"a DBN bound needs at least two RBMs, got {len(rbms)}")
    n_samples = check_int("n_samples", n_samples, minimum=1)
    device = rbms[0].W.device
    generator = generator if generator is not None else torch.Generator(device=device).manual_seed(0)
    x = rbms[0].check_input("data", data, device=device)
    bl = _check_betas(betas)

    def top(h):
        return raise_log_prob(rbms[-1], h, betas=bl, base_data=base_data, generator=generator,
                              batch_size=batch_size).log_weights[:, 0]

    terms = torch.cat([dbn_lower_bound_terms(rbms, x[i:i + batch_size], 0.0, n_samples=n_samples,
                                             generator=generator, top_log_prob=top)
                       for i in range(0, x.shape[0], batch_size)]).cpu()
    n = terms.numel()
    return RAISEResult(value=float(terms.mean()), stderr=float(terms.std()) / math.sqrt(n) if n > 1 else float("inf"),
                       log_weights=terms, per_image=terms.mean(1), n_betas=len(bl) - 1, n_runs=n_samples,
                       seconds=time.perf_counter() - t0)
