"""The one epoch loop of every trainer: RBM training, up-down and fine-tuning.

Each trainer knows how to train one epoch (``one_epoch(epoch) -> metrics``, the metrics
read from the device once) and how to write its checkpoint (``save_checkpoint(path)``,
one format: ``deepbelief.checkpoint``). What is the same for all of them lives here:
the epoch counter, the timing, the history, when a checkpoint is due (every
``checkpoint_every`` epochs, at the last epoch and when the run stops early), and the
callback, called after the checkpoint so that a callback that fails or is killed never
loses the epoch it reports.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Protocol

from deepbelief.checkpoint import due


def linear_schedule(start: float, end: float | None, epoch: int, epochs: int) -> float:
    """The value of a setting at ``epoch`` (0-based) of ``epochs`` when it moves linearly from
    ``start`` (first epoch) to ``end`` (last epoch); ``start`` throughout when ``end`` is None
    or there is one epoch. The learning-rate and Gibbs-step schedules of the configs."""
    if end is None or epochs <= 1:
        return start
    return start + (end - start) * epoch / (epochs - 1)


class Resumable(Protocol):
    """What the loop needs of a trainer."""

    epoch: int  # epochs done; a loaded checkpoint sets it

    def save_checkpoint(self, path: str | Path) -> None: ...


def run_epochs(
    trainer: Resumable,
    one_epoch: Callable[[int], dict],
    *,
    epochs: int,
    history: list[dict],
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 1,
    callback: Callable[[int, dict], None] | None = None,
    stopped: Callable[[], bool] | None = None,
) -> list[dict]:
    """Run ``one_epoch`` for epochs ``trainer.epoch .. epochs - 1``.

    Args:
        trainer: holds the epoch counter (advanced here) and writes the checkpoint.
        one_epoch: trains epoch ``e`` and returns its metrics (host numbers); it raises
            to stop the run (e.g. ``DivergenceError``), leaving the last checkpoint.
        epochs: the total number of epochs of the run.
        history: the run's list of metrics; each epoch's dict is appended, with
            ``seconds`` (wall time of the epoch) added.
        checkpoint: file written every ``checkpoint_every`` epochs, at the end, and when
            ``stopped()`` turns true (early stopping).
        callback: ``callback(epoch, metrics)`` after each epoch.
        stopped: asked after each epoch; True ends the run (the trainer's early stop).

    Returns:
        ``history``.
    """
    while trainer.epoch < epochs and not (stopped is not None and stopped()):
        t0 = time.perf_counter()
        metrics = one_epoch(trainer.epoch)
        metrics["seconds"] = time.perf_counter() - t0
        history.append(metrics)
        trainer.epoch += 1
        end = stopped is not None and stopped()
        if checkpoint is not None and (end or due(trainer.epoch, checkpoint_every, epochs)):
            trainer.save_checkpoint(checkpoint)
        if callback is not None:
            callback(trainer.epoch - 1, metrics)
    return history
