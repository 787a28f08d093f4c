"""The order in which training rows are visited: shuffled or class-balanced mini-batches.

Hinton, Osindero & Teh (2006, section 6) trained on "440 balanced mini-batches each
containing 10 examples of each digit class": every mini-batch holds the same number of
rows of every class, so each gradient step sees the label prior exactly. With unequal
class sizes, each epoch draws, per class, a fresh random subset of the size of the rarest
class; over the epochs every row is used.
"""

from __future__ import annotations

import torch
from torch import Tensor

from deepbelief.errors import ConfigError


class BalancedOrder:
    """Class-balanced mini-batches from integer labels.

    Args:
        labels: (n,) integer class labels on the data's device.
        batch_size: rows per mini-batch; a multiple of the number of classes present.

    ``order(generator)`` returns (n_batches * batch_size,) row indices: consecutive blocks
    of ``batch_size`` rows are the mini-batches, and each block holds ``batch_size //
    n_classes`` rows of every class (in class order inside the block, which does not
    matter for a mini-batch gradient, a sum over its rows).
    """

    def __init__(self, labels: Tensor, batch_size: int):
        if labels.dim() != 1:
            raise ConfigError(f"labels must be a 1-d tensor of class indices, got shape {tuple(labels.shape)}")
        labels = labels.long()
        classes = torch.unique(labels)  # one host sync, at set-up time
        n_classes = int(classes.numel())
        if batch_size % n_classes:
            raise ConfigError(f"balanced batches need batch_size to be a multiple of the number of classes "
                              f"({n_classes}), got batch_size={batch_size}")
        self.per_class = batch_size // n_classes
        self.members = [torch.nonzero(labels == c).flatten() for c in classes.tolist()]
        smallest = min(int(m.numel()) for m in self.members)
        self.n_batches = smallest // self.per_class
        if self.n_batches == 0:
            raise ConfigError(f"balanced batches of {self.per_class} rows per class need at least that many rows "
                              f"of every class; the rarest class has {smallest}")
        self.batch_size = batch_size

    def order(self, generator: torch.Generator) -> Tensor:
        take = self.n_batches * self.per_class
        cols = []
        for m in self.members:  # one draw per class and epoch, no per-row Python work
            perm = torch.randperm(m.numel(), generator=generator, device=m.device)[:take]
            cols.append(m[perm].view(self.n_batches, self.per_class))
        return torch.cat(cols, 1).reshape(-1)  # (n_batches, n_classes * per_class) -> rows
