"""Negative-phase samplers: contrastive divergence (CD-k) and persistent CD (PCD).

Both answer one question for the training loop: given a batch of data ``v0`` (and its
hidden input ``x0 = s_v(v0) W``), which visible states ``v_neg`` stand in for the model's
distribution in the negative phase? The log-likelihood gradient is then estimated as
``-dF(v0) + dF(v_neg)`` (rbm.RBM.free_energy_grad).

- CD-k (Hinton 2002) starts k Gibbs sweeps at the data.
- PCD (Tieleman 2008) keeps persistent chains across updates; the chains are explicit
  state (``chains``) so that checkpoints can save them and data-parallel runs can shard
  them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from deepbelief.errors import check_int
from deepbelief.rbm import RBM


class CD:
    """CD-k. ``sample_visible=False`` uses E[v | h] for the reconstructions, which Hinton's
    practical guide (section 3.2) recommends for binary data: it lowers sampling noise and
    leaves the hidden states, which carry the information bottleneck, sampled."""

    name = "cd"

    def __init__(self, k: int = 1, *, sample_visible: bool = False):
        self.k = check_int("cd_k", k, minimum=1)
        self.sample_visible = bool(sample_visible)

    def negative(self, rbm: RBM, v0: Tensor, x0: Tensor, gen: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """Return (v_neg, x_neg) with x_neg = hidden_input(v_neg)."""
        x = x0
        # learned variances are fitted to E[(v - b)^2]: a mean-field reconstruction has no
        # noise, so it would under-estimate that term and push the variances up (units.py)
        sample = self.sample_visible or rbm.visible.sample_negative
        for _ in range(self.k):
            h = rbm.hidden.sample(x, gen)
            xv = rbm.visible_input(h)
            v = rbm.visible.sample(xv, gen) if sample else rbm.visible.mean(xv)
            x = rbm.hidden_input(v)
        return v, x

    def state_dict(self) -> dict[str, Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        pass

    def config(self) -> dict:
        return {"method": self.name, "k": self.k, "sample_visible": self.sample_visible}


class PCD(CD):
    """Persistent contrastive divergence with ``n_chains`` fantasy particles.

    The chains are initialised lazily from the first batch of data, which Tieleman (2008)
    found works as well as random states and avoids a separate burn-in. Visible states of a
    persistent chain are always sampled: with means the chain would not be a Markov chain
    of the model.
    """

    name = "pcd"

    def __init__(self, k: int = 1, *, n_chains: int | None = None):
        super().__init__(k, sample_visible=True)
        self.n_chains = None if n_chains is None else check_int("n_chains", n_chains, minimum=1)
        self.chains: Tensor | None = None

    def negative(self, rbm, v0, x0, gen):
        if self.chains is None:
            self.chains = self._initial_chains(v0)
        v = self.chains
        x = rbm.hidden_input(v)
        for _ in range(self.k):
            h = rbm.hidden.sample(x, gen)
            v = rbm.visible.sample(rbm.visible_input(h), gen)
            x = rbm.hidden_input(v)
        self.chains = v
        return v, x

    def _initial_chains(self, v0: Tensor) -> Tensor:
        """The first batch, repeated to ``n_chains`` rows. In a data-parallel run the chains
        are sharded: the global first batch is gathered, the global chains built from it
        exactly as one process would, and each rank keeps its rows."""
        from deepbelief import distributed
        from deepbelief.errors import ConfigError

        world, rank = distributed.world_size(), distributed.rank()
        v = distributed.all_gather_rows(v0)  # (global batch, n_visible); v0 itself in one process
        n = self.n_chains or v.shape[0]
        if n % world:
            raise ConfigError(f"n_chains must be a multiple of the number of processes ({world}), got {n}")
        chains = v.repeat(-(-n // v.shape[0]), 1)[:n]
        share = n // world
        return chains[rank * share : (rank + 1) * share].clone()

    def state_dict(self):
        return {} if self.chains is None else {"chains": self.chains}

    def load_state_dict(self, state):
        self.chains = state.get("chains")

    def config(self):
        return {"method": self.name, "k": self.k, "n_chains": self.n_chains}


def make_sampler(method: str = "cd", k: int = 1, *, sample_visible: bool = False, n_chains: int | None = None):
    """Build a sampler by name: ``cd`` or ``pcd``."""
    from deepbelief.errors import check_choice

    check_choice("method", method, {"cd", "pcd"})
    return CD(k, sample_visible=sample_visible) if method == "cd" else PCD(k, n_chains=n_chains)
