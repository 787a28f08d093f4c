"""Brute-force answers for tiny RBMs: the oracle behind the tests and a utility.

For an RBM whose visible or hidden layer consists of discrete units (Bernoulli, softmax,
stepped sigmoid counts, or a joint of them) with few enough configurations (about 2^25), the partition function
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
    """All configurations of a discrete layer, shape (n_states, n).

    Bernoulli units contribute {0,1}^n, softmax units their n one-hot vectors, and a joint
    layer the product of its groups' configurations.
    """
    groups = list(units.groups) if units.kind == "joint" else [units]
    parts = []
    total = 1
    for g in groups:
        if g.kind == "bernoulli":
            total *= 2**g.n
            if total > MAX_STATES:
                break
            idx = torch.arange(2**g.n, device=device)
            bits = (idx.unsqueeze(1) >> torch.arange(g.n - 1, -1, -1, device=device)) & 1
            parts.append(bits.to(dtype))
        elif g.kind == "softmax":
            total *= g.n
            parts.append(torch.eye(g.n, device=device, dtype=dtype))
        elif g.kind == "stepped_sigmoid":  # counts 0..copies per unit
            base = g.copies + 1
            total *= base**g.n
            if total > MAX_STATES:
                break
            idx = torch.arange(base**g.n, device=device)
            digits = (idx.unsqueeze(1) // base ** torch.arange(g.n - 1, -1, -1, device=device)) % base
            parts.append(digits.to(dtype))
        else:
            raise ConfigError(
                f"exact enumeration needs discrete units (bernoulli, softmax, stepped_sigmoid), got {g.kind!r}"
            )
    if total > MAX_STATES:
        raise ConfigError(f"exact enumeration needs at most {MAX_STATES} states, this layer has {total}")
    out = parts[0]
    for p in parts[1:]:
        out = torch.cat([out.repeat_interleave(p.shape[0], 0), p.repeat(out.shape[0], 1)], dim=1)
    return out


def _n_states(units) -> float:
    groups = list(units.groups) if units.kind == "joint" else [units]
    total = 1.0
    for g in groups:
        if g.kind == "bernoulli":
            total *= 2.0**g.n
        elif g.kind == "softmax":
            total *= g.n
        elif g.kind == "stepped_sigmoid":
            total *= float(g.copies + 1) ** g.n
        else:
            return float("inf")
    return total


def _double(rbm):
    return copy.deepcopy(rbm).to(torch.float64)


@torch.no_grad()
def log_partition(rbm, *, over: str = "auto") -> float:
    """Exact log Z, summing over the visible or hidden states (``over``: auto|visible|hidden)."""
    r = _double(rbm)
    if over == "auto":
        over = "hidden" if _n_states(r.hidden) <= _n_states(r.visible) else "visible"
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


def log_likelihood_grad(rbm, data: Tensor) -> dict[str, Tensor]:
    """Exact mean gradient of log p(data) (ascent direction), by enumeration."""
    r = _double(rbm)
    model = model_expectation_grad(rbm)
    w = torch.full((data.shape[0],), 1.0 / data.shape[0], dtype=torch.float64, device=r.W.device)
    dat = _weighted_grad(r, data.to(torch.float64), w)
    return {k: model[k] - dat[k] for k in model}


def all_binary(n: int) -> Tensor:
    """{0,1}^n as a float64 tensor, shape (2^n, n) (itertools order)."""
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=torch.float64)
