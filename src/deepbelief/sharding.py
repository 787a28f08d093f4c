"""Sharded random draws: N data-parallel ranks use the numbers one process would draw.

Inside ``sharded(rank, world)`` every ``shard_rows(draw, shape)`` draws the global block
(``world * shape[0]`` rows) and keeps this rank's rows; outside it draws ``shape``. The
unit types draw all their noise through it (units/base.py); ``distributed.py`` opens the
block around a data-parallel step. A leaf module: it knows nothing of torch.distributed.
"""

from __future__ import annotations

import contextlib
import contextvars

from torch import Tensor

#: (rank, world) while a sharded step runs; None otherwise. A context variable, not a
#: global flag, so nested or concurrent trainers in one process do not interfere.
_SHARD: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar("deepbelief_shard", default=None)


@contextlib.contextmanager
def sharded(rank_: int, world: int):
    """Within this block, ``shard_rows`` draws random blocks for all ``world`` ranks and
    keeps rank ``rank_``'s rows."""
    token = _SHARD.set((rank_, world) if world > 1 else None)
    try:
        yield
    finally:
        _SHARD.reset(token)


def shard_rows(draw, shape) -> Tensor:
    """``draw(shape)`` outside a sharded block; inside, ``draw`` the global block
    (``world * shape[0]`` rows) and return this rank's rows, so that N ranks together
    use exactly the numbers a single process would draw for the global batch."""
    shard = _SHARD.get()
    if shard is None:
        return draw(tuple(shape))
    r, w = shard
    n = shape[0]
    return draw((n * w, *shape[1:]))[r * n : (r + 1) * n]
