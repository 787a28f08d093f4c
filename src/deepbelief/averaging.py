"""An exponential moving average of the parameter iterates (Polyak-Ruppert averaging).

Stochastic updates with a learning rate that has not yet reached zero leave the
parameters jittering around where they are heading; an average of the recent iterates
sits much nearer (Ruppert 1988; Polyak & Juditsky 1992). For RBMs trained by PCD the
effect is large: the persistent chains mix partly *because* the parameters move
(Tieleman & Hinton 2009), so the iterate at any moment is a noisy model while the
average of the last few thousand updates is a good one. ``IterateAverage`` keeps

    a <- a + w_t * (theta_t - a),   w_t = max(1 - decay, 1 / t)   after update t = 1, 2, ...

that is the plain mean of the iterates for the first 1 / (1 - decay) updates (a warm-up),
then the exponential moving average with weight ``decay``. The warm-up keeps the
starting parameters out of the average (w_1 = 1): without it they would keep the weight
decay^t, which for a short run (a few times 1 / (1 - decay) updates) is most of the model.
Training always continues from the iterate theta; the average is swapped into the model
only for a caller to look at (``swapped``) or at the end of training (``install_``).
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from torch import Tensor

from deepbelief.errors import ConfigError, ModelFileError, check_float


#: the checkpoint key of the number of updates averaged (the warm-up's clock)
COUNT_KEY = "average_count"


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
        # before the first update the average is the parameters themselves (update 1 replaces them)
        self.values = [p.detach().clone() for p in params] if self.on else []
        self.count = 0  # updates averaged so far (a host-side int: no device sync)
        self._held: list[Tensor] | None = None  # the iterate, while the average is installed

    @torch.no_grad()
    def reset_(self) -> None:
        """Restart the average at the current parameters (a fresh run's start)."""
        if self.on:
            torch._foreach_copy_(self.values, self.params)
            self.count = 0

    def weight(self, t: int) -> float:
        """The weight of update ``t`` (1-based) in the average: max(1 - decay, 1 / t)."""
        return max(1.0 - self.decay, 1.0 / t)

    @torch.no_grad()
    def update_(self) -> None:
        """One update: a <- a + w (theta - a) (a single fused kernel per tensor list)."""
        if self.on:
            self.count += 1
            torch._foreach_lerp_(self.values, self.params, self.weight(self.count))

    def state(self, names: list[str]) -> dict[str, Tensor]:
        """The checkpoint's ``average.<name>`` tensors and ``average_count`` (none without averaging)."""
        if not self.on:
            return {}
        return {**{f"average.{n}": a.clone() for n, a in zip(names, self.values)},
                COUNT_KEY: torch.tensor([self.count], dtype=torch.int64)}

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
        if self.on:
            saved = tensors.get(COUNT_KEY)
            # checkpoints written before the warm-up (2026-12-05) hold no count: their average is
            # the plain moving average, which the warmed-up rule continues exactly
            if saved is None:
                self.count = int(math.ceil(1.0 / (1.0 - self.decay)))
            elif saved.numel() != 1 or saved.is_floating_point() or int(saved.reshape(-1)[0]) < 0:
                raise ModelFileError(f"checkpoint {str(path)!r}: {COUNT_KEY} must hold one non-negative integer, "
                                     f"got a {saved.dtype} tensor of shape {tuple(saved.shape)}")
            else:
                self.count = int(saved.reshape(-1)[0])

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
