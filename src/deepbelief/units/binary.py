"""Discrete unit types whose states are 0/1: Bernoulli (logistic) and softmax (one-of-n)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from deepbelief.errors import DataError
from deepbelief.units.base import Units, uniform


class Bernoulli(Units):
    """Binary (logistic) units: p(u=1 | x) = sigmoid(x + b)."""

    kind = "bernoulli"
    roles = ("visible", "hidden")
    unit_interval = True
    is_binary = True
    activation = "sigmoid"

    def mean(self, x):
        return torch.sigmoid(x + self.bias)

    def sample(self, x, gen):
        p = self.mean(x)
        u = uniform(p.shape, p, gen)
        # compare into the uniforms' own buffer: no bool temporary and no cast pass
        # (several times cheaper than (u < p).to(dtype) on the CPU, benchmarks/step_ablation.py)
        return torch.lt(u, p, out=u)

    def free_energy(self, x):
        # -log sum_{u in {0,1}^n} exp(u . (x + b)) = -sum softplus(x + b)
        return -F.softplus(x + self.bias).sum(-1)

    def base_rate_bias(self, data: Tensor, eps: float = 1e-3) -> Tensor:
        # b_i = log(p_i / (1 - p_i)), p_i the fraction of rows where unit i is on, clipped
        p = data.mean(0).to(self.bias.dtype).clamp(eps, 1 - eps)
        return torch.log(p) - torch.log1p(-p)

    def unit_values(self):
        return [0.0, 1.0]

    def check_data(self, name, x):
        if x.numel() and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
            raise DataError(
                f"{name} must lie in [0, 1] for Bernoulli units, got values in "
                f"[{float(x.min()):g}, {float(x.max()):g}]"
            )


def one_hot_by_inverse_cdf(p: Tensor, u: Tensor) -> Tensor:
    """One-hot samples of the rows of ``p`` (b, n) from one uniform per row ``u`` (b, 1), by
    inverse-CDF: no Python loop, one number per row (``Softmax.sample``, the fused up-down step)."""
    idx = (torch.cumsum(p, dim=-1) < u).sum(-1, keepdim=True).clamp_(max=p.shape[-1] - 1)
    return torch.zeros_like(p).scatter_(-1, idx, 1.0)


class Softmax(Units):
    """One-of-n units (a label): exactly one unit is on, p(u=e_k | x) = softmax(x + b)_k."""

    kind = "softmax"
    roles = ("label",)
    unit_interval = True

    def mean(self, x):
        return torch.softmax(x + self.bias, dim=-1)

    def sample(self, x, gen):
        p = self.mean(x)
        return one_hot_by_inverse_cdf(p, uniform((p.shape[0], 1), p, gen))

    def free_energy(self, x):
        return -torch.logsumexp(x + self.bias, dim=-1)

    def base_rate_bias(self, data: Tensor, eps: float = 1e-3) -> Tensor:
        p = data.mean(0).to(self.bias.dtype).clamp_min(eps)
        return torch.log(p / p.sum())

    def n_states(self):
        return self.n

    def enumerate_states(self, *, device=None, dtype=torch.float64):
        return torch.eye(self.n, device=device, dtype=dtype)

    def check_data(self, name, x):
        if x.numel() and not bool(((x == 0) | (x == 1)).all() and (x.sum(-1) == 1).all()):
            raise DataError(f"{name} must be one-hot rows for softmax units (exactly one 1 per row)")
