"""The stack of RBMs: a Deep Belief Network.

After greedy training, the stack defines a generative model whose top two layers form an
undirected RBM and whose lower layers are directed, top-down (Hinton, Osindero & Teh
2006). With tied weights the recognition (bottom-up) pass uses W and the generative
(top-down) pass uses W^T of the same RBMs.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from deepbelief.errors import ConfigError
from deepbelief.io import load_state_into, register_loader
from deepbelief.rbm import RBM, batched


class DBN(nn.Module):
    """A stack of RBMs, bottom first; layer i's hidden units are layer i+1's visible units."""

    kind = "dbn"

    def __init__(self, rbms: list[RBM]):
        super().__init__()
        if not rbms:
            raise ConfigError("a DBN needs at least one RBM, got []")
        for i in range(1, len(rbms)):
            if rbms[i].n_visible != rbms[i - 1].n_hidden:
                raise ConfigError(
                    f"layer {i} has {rbms[i].n_visible} visible units but layer {i - 1} has "
                    f"{rbms[i - 1].n_hidden} hidden units"
                )
        self.rbms = nn.ModuleList(rbms)

    @property
    def sizes(self) -> list[int]:
        return [self.rbms[0].n_visible] + [r.n_hidden for r in self.rbms]

    @torch.no_grad()
    def transform(self, v: Tensor, n_layers: int | None = None, batch_size: int = 2048) -> Tensor:
        """Deterministic bottom-up pass of hidden means, shape (batch, sizes[n_layers])."""
        v = self.rbms[0].check_input("x", v)
        for rbm in list(self.rbms)[: n_layers or len(self.rbms)]:
            v = batched(rbm.mean_hidden, v, batch_size)
        return v

    @torch.no_grad()
    def generate_down(self, h: Tensor, gen: torch.Generator | None = None, sample: bool = False) -> Tensor:
        """Top-down pass from the top RBM's visible layer to the data (means by default)."""
        for rbm in reversed(list(self.rbms)[:-1]):
            h = rbm.sample_visible(h, gen) if sample else rbm.mean_visible(h)
        return h

    def config(self) -> dict:
        return {"layers": [r.config() for r in self.rbms]}

    @classmethod
    def from_config(cls, cfg: dict) -> "DBN":
        return cls([RBM.from_config(c) for c in cfg["layers"]])


@register_loader("dbn")
def _load_dbn(cfg, tensors, path):
    return load_state_into(path, DBN.from_config(cfg), tensors)
