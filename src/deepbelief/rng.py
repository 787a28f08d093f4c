"""Bulk uniform random numbers for the fused up-down step, cheap on the CPU.

On the CPU torch's generator (mt19937) fills U(0, 1) numbers serially at about 8 ns each on a loaded machine
(3.3 ns on a quiet machine) while the matrix products of a step use every core; numpy's
PCG64 fills float32 numbers at 2-2.7 ns. An up-down step with 10 Gibbs iterations in the
510 x 2000 top RBM draws about 2.6 million numbers (docs/7-performance.md has what it gave;
for the small CD-1 step the block cost more than it saved and is not used).

``StepUniforms`` draws all the numbers one step needs in one bulk call and hands them out
in order. On the CPU the bulk comes from a PCG64 stream seeded by one 63-bit draw from the
run's ``torch.Generator``; so the run's random state is still that generator alone, and
seeds, checkpoints and bit-exact resume work as before. On other devices (CUDA) it is
``torch.rand`` with the generator, which is fast there.

``units.base.uniform`` accepts a ``StepUniforms`` wherever it accepts a generator, so the
reference (unit-by-unit) code run with one draws exactly the numbers a fused step draws.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


class StepUniforms:
    """``n`` U(0, 1) numbers of ``like``'s device and dtype, drawn at once from ``gen``.

    ``take(shape)`` returns the next ``prod(shape)`` of them as a contiguous tensor (a view
    of the block; a caller may overwrite it in place, e.g. with the Bernoulli states drawn
    by comparing it with probabilities)."""

    def __init__(self, gen: torch.Generator | None, n: int, like: Tensor):
        self.n, self.used = int(n), 0
        dtype = like.dtype
        if like.device.type == "cpu" and dtype in _NUMPY_DTYPES:
            seed = int(torch.randint(0, 2**63 - 1, (), generator=gen))
            block = np.random.Generator(np.random.PCG64(seed)).random(self.n, dtype=_NUMPY_DTYPES[dtype])
            self.block = torch.from_numpy(block)
        else:
            self.block = torch.rand(self.n, generator=gen, device=like.device, dtype=dtype)

    def take(self, shape) -> Tensor:
        shape = tuple(shape)
        m = int(np.prod(shape, dtype=np.int64))
        if self.used + m > self.n:
            raise RuntimeError(f"StepUniforms: asked for {m} numbers with {self.n - self.used} of {self.n} left "
                               "(the step's count of random numbers is wrong)")
        out = self.block[self.used : self.used + m].view(shape)
        self.used += m
        return out
