"""Progress of long loops: ``epoch i/N``, time elapsed and an estimate of the time left.

One tracker per run; each phase (an RBM layer, fine-tuning, up-down) is a ``key``. The
estimate is the mean time of the epochs this process has run in that phase (the first,
which pays for warm-up, left out once there are others) times the epochs left, so a resumed run estimates from its own epochs, not from the skipped ones.
Early stopping may end fine-tuning sooner: its estimate is then an upper bound.
"""

from __future__ import annotations

import time


def fmt_seconds(s: float) -> str:
    """12.3s, 4m05s, 2h07m."""
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"


def epoch_of(i: int, n: int) -> str:
    """``i`` is the 0-based epoch just finished: ' 3/20'."""
    return f"{i + 1:{len(str(n))}d}/{n}"


class Progress:
    """``times(i, n, seconds, key)`` after each epoch -> '0.05s; 0.2s elapsed, eta 0.8s'."""

    def __init__(self) -> None:
        self._phases: dict = {}

    def times(self, i: int, n: int, seconds: float, key=None) -> str:
        now = time.perf_counter()
        # the phase began one epoch ago; its first epoch (warm-up) is left out of the rate
        start, first, first_s = self._phases.setdefault(key, (now - seconds, i, seconds))
        elapsed, done = now - start, i - first + 1
        rate = (elapsed - first_s) / (done - 1) if done > 1 else elapsed
        eta = rate * max(0, n - i - 1)
        return f"{seconds:.2f}s; {fmt_seconds(elapsed)} elapsed, eta {fmt_seconds(eta)}"
