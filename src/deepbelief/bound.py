"""The variational lower bound on log p(v) of a DBN (Hinton, Osindero & Teh 2006), estimated
by sampling the recognition distribution up the stack, with the top RBM's log Z from AIS
(ais.py) or its log p(h) from RAISE (reverse_ais.raise_dbn_lower_bound)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from deepbelief.ais import AISResult, as_log_z
from deepbelief.errors import ConfigError, check_int
from deepbelief.rbm import batched


def log_conditional(units, u: Tensor, x: Tensor) -> Tensor:
    """log p(u | x) of a unit layer given its interaction input ``x``: shape (batch,).

    p(u | x) = exp(-E_u(u) + s(u) . x) / exp(-F_u(x)), so
    log p(u | x) = -E_u(u) + s(u) . x + F_u(x) for any unit type (a density for
    real-valued units).
    """
    return -units.energy(u) + (units.scale(u) * x).sum(-1) + units.free_energy(x)


@dataclass
class BoundEstimate:
    """A Monte Carlo estimate of the average variational lower bound, in nats.

    ``value`` is the average over the data of the per-example estimates; ``stderr`` its
    standard error from the sampling of the hidden states (the test set is fixed); the
    AIS uncertainty of log Z_top adds to it (``top``).
    """

    value: float
    stderr: float
    n_samples: int
    top: AISResult | None = None

    def __float__(self) -> float:
        return self.value


@torch.no_grad()
def dbn_lower_bound_terms(rbms, data: Tensor, log_z_top: float, *, n_samples: int, generator,
                          top_log_prob: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """Per-sample bound terms, shape (n, n_samples), float64; see ``dbn_lower_bound``.

    ``top_log_prob(h)``, if given, replaces the top RBM's -F(h) - log Z (e.g. a RAISE
    estimate per sample, which makes the bound conservative)."""
    rs = [copy.deepcopy(r).to(torch.float64) for r in rbms]
    n = data.shape[0]
    v = data.to(torch.float64).repeat_interleave(n_samples, 0)  # (n S, n_v)
    total = torch.zeros(v.shape[0], device=v.device, dtype=torch.float64)
    below = v
    for r in rs[:-1]:
        x_up = r.hidden_input(below)
        h = r.hidden.sample(x_up, generator)  # h ~ Q(h | below), the recognition distribution
        total += log_conditional(r.visible, below, r.visible_input(h)) - log_conditional(r.hidden, h, x_up)
        below = h
    if top_log_prob is not None:
        total += top_log_prob(below).to(torch.float64)
    else:
        total += -rs[-1].free_energy(below) - log_z_top  # log p_top(h_{L-1})
    return total.reshape(n, n_samples)


def dbn_lower_bound(
    dbn,
    data,
    top_log_z_or_result,
    *,
    n_samples: int = 10,
    generator: torch.Generator | None = None,
    batch_size: int = 1000,
) -> BoundEstimate:
    """Average variational lower bound on log p(v) of a DBN (Hinton, Osindero & Teh 2006).

    For a 2-layer DBN whose top RBM models p_2(h) and whose first RBM gives the
    generative p(v | h) and the recognition distribution Q(h | v) = prod_j p_1(h_j | v),

        log p(v) >= sum_h Q(h | v) [log p(v | h) + log p*_2(h) - log Q(h | v)] - log Z_2
                 = log p(v) - KL(Q(h | v) || p(h | v)),

    with log p*_2(h) = -F_2(h) the top RBM's unnormalised marginal and Z_2 its partition
    function (estimated by AIS). The estimator draws ``n_samples`` states h^(s) ~ Q(h | v)
    per example and averages log p(v | h^(s)) - F_2(h^(s)) - log Q(h^(s) | v) - log Z_2:
    unbiased for the bound (given Z_2), and of zero variance where Q is the exact
    posterior (then every term equals log p(v)). Salakhutdinov & Murray (2008), section 4.
    Deeper stacks chain the same terms: h_l ~ Q(h_l | h_{l-1}) with each RBM's generative
    conditional p(h_{l-1} | h_l) and the top RBM's marginal. A 1-RBM "stack" gives
    log p(v) exactly.

    Args:
        dbn: a ``DBN`` or a list of RBMs, bottom first.
        data: (n, n_visible) data, e.g. the binarised MNIST test set.
        top_log_z_or_result: log Z of the top RBM (a float or an ``AISResult``).
        n_samples: samples of the hidden states per example.
        generator: the run's generator on the model's device (None: a fresh one seeded 0).
        batch_size: examples per batch (memory is about batch_size * n_samples rows).
    """
    rbms = list(dbn.rbms) if hasattr(dbn, "rbms") else list(dbn)
    if not rbms:
        raise ConfigError("dbn must hold at least one RBM, got []")
    log_z = as_log_z(top_log_z_or_result)
    n_samples = check_int("n_samples", n_samples, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    device = rbms[0].W.device
    if generator is None:
        generator = torch.Generator(device=device).manual_seed(0)
    x = rbms[0].check_input("data", data, device=device)
    terms = torch.cat([dbn_lower_bound_terms(rbms, x[i : i + batch_size], log_z, n_samples=n_samples,
                                             generator=generator) for i in range(0, x.shape[0], batch_size)])
    per_example = terms.mean(1)
    n = terms.shape[0]
    if n_samples > 1:  # the data are fixed: only the within-example sampling noise counts
        var = terms.var(1).sum() / n_samples
    else:
        var = terms[:, 0].var() * n if n > 1 else torch.tensor(0.0)
    return BoundEstimate(value=float(per_example.mean()), stderr=float(var.sqrt()) / n, n_samples=n_samples,
                         top=top_log_z_or_result if isinstance(top_log_z_or_result, AISResult) else None)


def top_base_data(dbn, data: Tensor, batch_size: int = 4096) -> Tensor:
    """The data the top RBM of ``dbn`` sees: E[h | v] passed up through the lower RBMs.

    Use it as ``base_data`` when estimating the top RBM's log Z by AIS.
    """
    rbms = list(dbn.rbms) if hasattr(dbn, "rbms") else list(dbn)
    x = rbms[0].check_input("data", data)
    with torch.no_grad():
        for r in rbms[:-1]:
            x = batched(r.mean_hidden, x, batch_size)
    return x
