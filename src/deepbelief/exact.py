"""Brute-force answers for tiny RBMs: the oracle behind the tests and a utility.

For an RBM whose visible or hidden layer consists of discrete units (Bernoulli, softmax,
stepped sigmoid counts, a joint of them, or any unit type that can ``enumerate_states``)
with few enough configurations (about 2^25), the partition function
is an exact sum over that layer's states of exp(-F(state)), where F is the free energy
with the *other* layer summed or integrated out analytically. Everything is computed in
float64 with log-sum-exp, so it never overflows.
"""

from __future__ import annotations

import copy
import itertools

import torch
from torch import Tensor

from deepbelief.errors import ConfigError

MAX_STATES = 2**25


def layer_states(units, *, device=None, dtype=torch.float64) -> Tensor:
    """All configurations of a discrete layer, shape (n_states, n): the unit type's
    ``enumerate_states`` (Bernoulli {0,1}^n, softmax its n one-hot vectors, stepped
    sigmoid counts, a joint layer the product of its groups' configurations)."""
    total = units.n_states()
    if total == float("inf"):
        bad = [g.kind for g in units.unit_groups() if g.n_states() == float("inf")]
        raise ConfigError(f"exact enumeration needs discrete units (a finite unit_values() or enumerate_states()), "
                          f"got {bad[0] if bad else units.kind!r}")
    if total > MAX_STATES:
        raise ConfigError(f"exact enumeration needs at most {MAX_STATES} states, this layer has {total}")
    return units.enumerate_states(device=device, dtype=dtype)


def _double(rbm):
    return copy.deepcopy(rbm).to(torch.float64)


@torch.no_grad()
def log_partition(rbm, *, over: str = "auto") -> float:
    """Exact log Z, summing over the visible or hidden states (``over``: auto|visible|hidden)."""
    r = _double(rbm)
    if over == "auto":
        over = "hidden" if r.hidden.n_states() <= r.visible.n_states() else "visible"
    if over == "hidden":
        states = layer_states(r.hidden, device=r.W.device)
        neg_f = -torch.cat([r.free_energy_hidden(s) for s in states.split(1 << 16)])
    elif over == "visible":
        states = layer_states(r.visible, device=r.W.device)
        neg_f = -torch.cat([r.free_energy(s) for s in states.split(1 << 16)])
    else:
        raise ConfigError(f"over must be 'auto', 'visible' or 'hidden', got {over!r}")
    return float(torch.logsumexp(neg_f, 0))


@torch.no_grad()
def log_prob(rbm, v: Tensor, log_z: float | None = None) -> Tensor:
    """Exact log p(v) = -F(v) - log Z, shape (batch,), float64."""
    r = _double(rbm)
    if log_z is None:
        log_z = log_partition(rbm)
    return -r.free_energy(v.to(torch.float64)) - log_z


@torch.no_grad()
def visible_distribution(rbm) -> tuple[Tensor, Tensor]:
    """(states, probabilities) of the visible layer, enumerated: shapes (S, n_v), (S,)."""
    r = _double(rbm)
    states = layer_states(r.visible, device=r.W.device)
    logp = -r.free_energy(states)
    return states, torch.softmax(logp, 0)


@torch.no_grad()
def joint_distribution(rbm) -> tuple[Tensor, Tensor, Tensor]:
    """(v states, h states, P[v, h]) of a tiny RBM with discrete layers, by enumeration."""
    r = _double(rbm)
    vs = layer_states(r.visible, device=r.W.device)
    hs = layer_states(r.hidden, device=r.W.device)
    e = torch.stack([r.energy(vs, h.expand(vs.shape[0], -1)) for h in hs], dim=1)  # (S_v, S_h)
    p = torch.softmax(-e.flatten(), 0).reshape(e.shape)
    return vs, hs, p


def model_expectation_grad(rbm) -> dict[str, Tensor]:
    """E_model[dF(v)/dtheta] by enumeration over visible states (the negative phase)."""
    states, p = visible_distribution(rbm)
    # the free energy is a sum over rows, so weighting rows by p(v) gives the expectation
    return _weighted_grad(_double(rbm), states, p)


def _weighted_grad(r, states: Tensor, weights: Tensor) -> dict[str, Tensor]:
    params = dict(r.named_parameters())
    for p in params.values():
        p.requires_grad_(True)
        p.grad = None
    with torch.enable_grad():
        loss = (r.free_energy(states) * weights).sum()
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    return {k: (g if g is not None else torch.zeros_like(params[k])).detach() for k, g in zip(params, grads)}


def log_likelihood_grad(rbm, data: Tensor, weights: Tensor | None = None) -> dict[str, Tensor]:
    """Exact gradient of sum_n w_n log p(data_n) (ascent direction), by enumeration; the
    weights default to 1/n (the mean). With ``data`` every visible state and ``weights`` a
    distribution q over them, it is the gradient of the cross-entropy E_q[log p(v)]."""
    r = _double(rbm)
    model = model_expectation_grad(rbm)
    w = (torch.full((data.shape[0],), 1.0 / data.shape[0], dtype=torch.float64, device=r.W.device)
         if weights is None else weights.to(torch.float64))
    model = {k: g * float(w.sum()) for k, g in model.items()}
    dat = _weighted_grad(r, data.to(torch.float64), w)
    return {k: model[k] - dat[k] for k in model}


def all_binary(n: int) -> Tensor:
    """{0,1}^n as a float64 tensor, shape (2^n, n) (itertools order)."""
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=torch.float64)


# -- Deep Belief Networks: exact log p(v) and the exact variational bound ----------------
def _log_cond_matrix(units, u: Tensor, x: Tensor) -> Tensor:
    """log p(u_i | x_s) for every pair, shape (n_u, n_x): -E(u) + s(u) . x + F(x)."""
    return -units.energy(u)[:, None] + units.scale(u) @ x.T + units.free_energy(x)[None, :]


def _dbn_rbms(dbn):
    rbms = list(dbn.rbms) if hasattr(dbn, "rbms") else list(dbn)
    if not rbms:
        raise ConfigError("dbn must hold at least one RBM, got []")
    return [_double(r) for r in rbms]


@torch.no_grad()
def dbn_log_prob(dbn, v: Tensor) -> Tensor:
    """Exact log p(v) of a tiny DBN, shape (batch,), float64.

    The top RBM defines p(h_{L-1}) = exp(-F_top(h_{L-1})) / Z_top; each lower RBM the
    directed conditional p(h_{l-1} | h_l) (its visible conditional). The marginal of each
    layer is enumerated top-down: log p(h_{l-1}) = logsumexp_{h_l} [log p(h_{l-1} | h_l)
    + log p(h_l)] (Hinton, Osindero & Teh 2006). Hidden layers must be small and discrete.
    """
    rbms = _dbn_rbms(dbn)
    top = rbms[-1]
    states = layer_states(top.visible, device=top.W.device)
    logp = -top.free_energy(states) - log_partition(top)  # (S,)
    for i in range(len(rbms) - 2, -1, -1):
        r = rbms[i]
        below = v.to(torch.float64) if i == 0 else layer_states(r.visible, device=r.W.device)
        logp = torch.logsumexp(_log_cond_matrix(r.visible, below, r.visible_input(states)) + logp[None, :], dim=1)
        states = below
    return logp


@torch.no_grad()
def dbn_variational_bound(dbn, v: Tensor) -> Tensor:
    """The exact variational lower bound of ``bound.dbn_lower_bound``, by enumeration: (batch,).

    B(v) = sum_{h_1} Q(h_1 | v) [log p(v | h_1) - log Q(h_1 | v) + B_2(h_1)], recursively
    up the stack, with B_{L-1}(h) = log p_top(h), the top RBM's exact marginal.
    """
    rbms = _dbn_rbms(dbn)
    top = rbms[-1]
    states = layer_states(top.visible, device=top.W.device)
    bound = -top.free_energy(states) - log_partition(top)  # (S,): B at the top is exact
    for i in range(len(rbms) - 2, -1, -1):
        r = rbms[i]
        below = v.to(torch.float64) if i == 0 else layer_states(r.visible, device=r.W.device)
        log_q = _log_cond_matrix(r.hidden, states, r.hidden_input(below)).T  # (n_below, S): Q(h | below)
        log_gen = _log_cond_matrix(r.visible, below, r.visible_input(states))  # (n_below, S): p(below | h)
        bound = (log_q.exp() * (log_gen - log_q + bound[None, :])).sum(1)
        states = below
    return bound
