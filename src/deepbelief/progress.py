"""Progress of long loops: ``epoch i/N``, time elapsed and an estimate of the time left.

One tracker per run; each phase (an RBM layer, fine-tuning, up-down) is a ``key``. The
estimate is the median wall time per epoch over the last ``WINDOW`` epochs this process
has run in that phase (the first, which pays for warm-up, left out once there are others)
times the epochs left: a resumed run estimates from its own epochs, not from the skipped
ones; a machine whose speed drifts is followed; and one long epoch (a process paused by
SIGSTOP while another job runs, a checkpoint on a slow disk) does not inflate the estimate
for the rest of the run, as a mean since the start would. Early stopping may end
fine-tuning sooner: its estimate is then an upper bound.
"""

from __future__ import annotations

import statistics
import time
from collections import deque

#: epochs whose median wall time per epoch makes the estimate
WINDOW = 25


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
        ph = self._phases.get(key)
        if ph is None:  # the phase began one epoch ago; that first epoch (warm-up) sets the rate alone
            ph = self._phases[key] = {"start": now - seconds, "first_s": seconds, "last": (now, i),
                                      "rates": deque(maxlen=WINDOW)}
        else:  # wall time per epoch since the last call (a call may cover several epochs)
            last_now, last_i = ph["last"]
            ph["rates"].append((now - last_now) / max(1, i - last_i))
            ph["last"] = (now, i)
        rate = statistics.median(ph["rates"]) if ph["rates"] else ph["first_s"]
        eta = rate * max(0, n - i - 1)
        return f"{seconds:.2f}s; {fmt_seconds(now - ph['start'])} elapsed, eta {fmt_seconds(eta)}"
