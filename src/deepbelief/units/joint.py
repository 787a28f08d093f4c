"""A layer made of several unit groups side by side (features + labels)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from deepbelief.errors import ConfigError
from deepbelief.units.base import Units, units_from_config


class Joint(Units):
    """Several unit groups side by side in one layer, e.g. [500 features, 10 softmax labels].

    Every function splits its input along the last dimension and concatenates (or sums)
    the groups' answers, so the top RBM of a labelled DBN is the ordinary RBM class.
    Parameters are named ``groups.<i>.<name>``.
    """

    kind = "joint"

    def __init__(self, groups: list[Units]):
        nn.Module.__init__(self)
        if not groups:
            raise ConfigError("Joint units need at least one group, got []")
        self.groups = nn.ModuleList(groups)
        self.sizes = [g.n for g in groups]
        self.n = sum(self.sizes)
        self.needs_back = any(g.needs_back for g in groups)
        self.sample_negative = any(g.sample_negative for g in groups)
        self.unit_interval = all(g.unit_interval for g in groups)

    @property
    def bias(self):  # concatenated view, for initialisation and inspection
        return torch.cat([g.bias for g in self.groups])

    def split(self, t: Tensor) -> tuple[Tensor, ...]:
        return torch.split(t, self.sizes, dim=-1)

    def mean(self, x):
        return torch.cat([g.mean(p) for g, p in zip(self.groups, self.split(x))], dim=-1)

    def sample(self, x, gen):
        return torch.cat([g.sample(p, gen) for g, p in zip(self.groups, self.split(x))], dim=-1)

    def stat(self, x):
        return torch.cat([g.stat(p) for g, p in zip(self.groups, self.split(x))], dim=-1)

    def scale(self, u):
        return torch.cat([g.scale(p) for g, p in zip(self.groups, self.split(u))], dim=-1)

    def energy(self, u):
        return sum(g.energy(p) for g, p in zip(self.groups, self.split(u)))

    def free_energy(self, x):
        return sum(g.free_energy(p) for g, p in zip(self.groups, self.split(x)))

    def grad_energy(self, u, back):
        backs = self.split(back) if back is not None else [None] * len(self.groups)
        out = {}
        for i, (g, p, b) in enumerate(zip(self.groups, self.split(u), backs)):
            out.update({f"groups.{i}.{k}": v for k, v in g.grad_energy(p, b).items()})
        return out

    def grad_free_energy(self, x):
        out = {}
        for i, (g, p) in enumerate(zip(self.groups, self.split(x))):
            out.update({f"groups.{i}.{k}": v for k, v in g.grad_free_energy(p).items()})
        return out

    def lr_scale(self):
        return {f"groups.{i}.{k}": v for i, g in enumerate(self.groups) for k, v in g.lr_scale().items()}

    def constrain_(self):
        for g in self.groups:
            g.constrain_()

    def check_data(self, name, x):
        for i, (g, p) in enumerate(zip(self.groups, self.split(x))):
            g.check_data(f"{name}[group {i}]", p)

    # -- per-kind facts, group by group ------------------------------------------------
    def unit_groups(self):
        return list(self.groups)

    def base_rate_bias(self, data, eps=1e-3):
        """Each group's base-rate biases; a group without a rule keeps its current bias."""
        out = []
        for g, d in zip(self.groups, self.split(data)):
            b = g.base_rate_bias(d, eps)
            out.append(g.bias.detach().clone() if b is None else b)
        return torch.cat(out)

    @torch.no_grad()
    def set_bias_(self, bias):
        for g, part in zip(self.groups, self.split(bias)):
            g.set_bias_(part)

    def fold_scale(self, w):
        return torch.cat([g.fold_scale(p) for g, p in zip(self.groups, torch.split(w, self.sizes, dim=0))], dim=0)

    def n_states(self):
        total = 1
        for g in self.groups:
            total *= g.n_states()
        return total

    def enumerate_states(self, *, device=None, dtype=torch.float64):
        """The product of the groups' configurations, the first group the most significant."""
        out = self.groups[0].enumerate_states(device=device, dtype=dtype)
        for g in self.groups[1:]:
            p = g.enumerate_states(device=device, dtype=dtype)
            out = torch.cat([out.repeat_interleave(p.shape[0], 0), p.repeat(out.shape[0], 1)], dim=1)
        return out

    def config(self):
        return {"type": self.kind, "groups": [g.config() for g in self.groups]}

    @classmethod
    def from_config(cls, cfg, n=None):
        return cls([units_from_config(g) for g in cfg.get("groups", [])])

    def extra_repr(self):
        return f"sizes={self.sizes}"
