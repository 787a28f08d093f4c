"""An exponential moving average of the parameter iterates (Polyak-Ruppert averaging).

Stochastic updates with a learning rate that has not yet reached zero leave the
parameters jittering around where they are heading; an average of the recent iterates
sits much nearer (Ruppert 1988; Polyak & Juditsky 1992). For RBMs trained by PCD the
effect is large: the persistent chains mix partly *because* the parameters move
(Tieleman & Hinton 2009), so the iterate at any moment is a noisy model while the
average of the last few thousand updates is a good one. ``IterateAverage`` keeps

    a <- decay * a + (1 - decay) * theta        after every update,

starting from the parameters at the start of training. Training always continues from
the iterate theta; the average is swapped into the model only for a caller to look at
(``swapped``) or at the end of training (``install_``).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import Tensor

from deepbelief.errors import ConfigError, ModelFileError, check_float


def check_average_decay(decay) -> float:
    """``average_decay`` as a float in [0, 1) (0: no averaging), or ConfigError naming it."""
    decay = check_float("average_decay", decay, minimum=0.0)
    if decay >= 1.0:
        raise ConfigError(f"average_decay must be in [0, 1) (0: no averaging), got {decay!r}")
    return decay


class IterateAverage:
    """The running average of ``params`` (a list of tensors updated in place by a trainer).
    With ``decay == 0`` there is no average and every method is a no-op, so a trainer
    calls them unconditionally."""

    def __init__(self, params: list[Tensor], decay: float):
        self.params = params
        self.decay = float(decay)
        self.on = self.decay > 0
        self.values = [p.detach().clone() for p in params] if self.on else []
        self._held: list[Tensor] | None = None  # the iterate, while the average is installed

    @torch.no_grad()
    def reset_(self) -> None:
        """Restart the average at the current parameters (a fresh run's start)."""
        if self.on:
            torch._foreach_copy_(self.values, self.params)

    @torch.no_grad()
    def update_(self) -> None:
        """One update: a <- decay a + (1 - decay) theta (a single fused kernel per tensor list)."""
        if self.on:
            torch._foreach_lerp_(self.values, self.params, 1.0 - self.decay)

    def state(self, names: list[str]) -> dict[str, Tensor]:
        """The checkpoint's ``average.<name>`` tensors (none without averaging)."""
        return {f"average.{n}": a.clone() for n, a in zip(names, self.values)}

    @property
    def installed(self) -> bool:
        return self._held is not None

    @torch.no_grad()
    def install_(self) -> None:
        """Put the average into the parameters, keeping the iterate to restore later."""
        if self.on and self._held is None:
            self._held = [p.detach().clone() for p in self.params]
            torch._foreach_copy_(self.params, self.values)

    @torch.no_grad()
    def restore_(self) -> None:
        """Put the iterate back (no-op unless the average is installed)."""
        if self._held is not None:
            torch._foreach_copy_(self.params, self._held)
            self._held = None

    @torch.no_grad()
    def load_(self, path, tensors: dict[str, Tensor], names: list[str]) -> None:
        """Restore the average from a checkpoint's ``average.<name>`` tensors (after ``restore_``:
        the checkpoint's model tensors are the iterate)."""
        for n, a in zip(names, self.values):
            saved = tensors.get(f"average.{n}")
            if saved is None or saved.shape != a.shape:
                raise ModelFileError(f"checkpoint {str(path)!r}: the parameter average of {n!r} is missing or "
                                     f"misshapen (the run was started with average_decay > 0?)")
            a.copy_(saved)

    @contextmanager
    def swapped(self):
        """The average in the parameters for the duration of the block, then the iterate."""
        was = self.installed
        self.install_()
        try:
            yield
        finally:
            if not was:
                self.restore_()

    def wrap(self, callback):
        """``callback`` made to run with the average in the parameters (itself without one)."""
        if not self.on or callback is None:
            return callback

        def with_average(*args, **kwargs):
            with self.swapped():
                return callback(*args, **kwargs)
        return with_average

    @contextmanager
    def iterate(self):
        """The iterate in the parameters for the duration of the block (e.g. to checkpoint it)."""
        was = self.installed
        self.restore_()
        try:
            yield
        finally:
            if was:
                self.install_()
