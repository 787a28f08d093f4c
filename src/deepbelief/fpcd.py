"""Fast persistent contrastive divergence (FPCD; Tieleman & Hinton 2009, "Using fast weights to
improve persistent contrastive divergence").

PCD's fantasy chains mix well while the weights change fast: each update raises the energy
of the states the chains occupy and pushes them on. FPCD adds a second set of parameters,
the fast weights theta_f (one per trained parameter, starting at zero), that learn from the
same gradient g = E_data - E_model with a larger rate and decay quickly:

    theta_f <- fast_decay * theta_f + fast_lr * g        (the paper: fast_decay = 19/20)

The chains are sampled from the model with parameters theta + theta_f; the gradient's
statistics, and every other use of the model, use the regular theta alone. With
``fast_lr = 0`` the sampler is PCD (the same chains, bit for bit).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from deepbelief.errors import check_float
from deepbelief.rbm import RBM
from deepbelief.sampling import PCD

__all__ = ["FPCD"]


class FPCD(PCD):
    """PCD-k whose chains run on theta + theta_f (``fast``: name -> tensor, zeros at first).

    The trainer calls ``learn_(names, grads)`` with every update's ascent direction (after
    any data-parallel reduction), so the fast weights are the same on every rank.
    """

    name = "fpcd"
    #: the trainer must materialise the gradient (``learn_`` reads it)
    needs_gradient = True
    #: checkpoint keys whose rows are sharded over ranks (the fast weights are replicated)
    sharded_keys = ("chains",)

    def __init__(self, k: int = 1, *, n_chains: int | None = None, fast_lr: float = 0.0,
                 fast_decay: float = 0.95):
        super().__init__(k, n_chains=n_chains)
        self.fast_lr = check_float("fast_lr", fast_lr, minimum=0.0)
        self.fast_decay = check_float("fast_decay", fast_decay, minimum=0.0, maximum=1.0)
        self.fast: dict[str, Tensor] = {}
        self._shadow: RBM | None = None  # a copy of the model holding theta + theta_f

    def negative(self, rbm, v0, x0, gen):
        v, _ = super().negative(self._sampling_model(rbm), v0, x0, gen)
        return v, rbm.hidden_input(v)  # the statistics under the regular parameters

    @torch.no_grad()
    def _sampling_model(self, rbm: RBM) -> RBM:
        if self._shadow is None:
            self._shadow = copy.deepcopy(rbm)
        for (name, p), s in zip(rbm.named_parameters(), self._shadow.parameters()):
            f = self.fast.get(name)
            if f is None:
                s.copy_(p)
            else:
                torch.add(p, f, out=s)
        for b, s in zip(rbm.buffers(), self._shadow.buffers()):  # e.g. a centred model's offsets
            s.copy_(b)
        return self._shadow

    @torch.no_grad()
    def learn_(self, names: list[str], grads: list[Tensor]) -> None:
        """theta_f <- fast_decay theta_f + fast_lr g, for each trained parameter."""
        for name, g in zip(names, grads):
            f = self.fast.get(name)
            if f is None:
                self.fast[name] = g.mul(self.fast_lr)
            else:
                f.mul_(self.fast_decay).add_(g, alpha=self.fast_lr)

    def state_dict(self):
        return {**super().state_dict(), **{f"fast.{n}": f for n, f in self.fast.items()}}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.fast = {k[len("fast."):]: v.clone() for k, v in state.items() if k.startswith("fast.")}

    def config(self):
        return {**super().config(), "fast_lr": self.fast_lr, "fast_decay": self.fast_decay}
