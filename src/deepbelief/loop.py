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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from deepbelief.checkpoint import due
from deepbelief.errors import ConfigError, check_float, check_int


def linear_schedule(start: float, end: float | None, epoch: int, epochs: int) -> float:
    """The value of a setting at ``epoch`` (0-based) of ``epochs`` when it moves linearly from
    ``start`` (first epoch) to ``end`` (last epoch); ``start`` throughout when ``end`` is None
    or there is one epoch. The learning-rate and Gibbs-step schedules of the configs."""
    if end is None or epochs <= 1:
        return start
    return start + (end - start) * epoch / (epochs - 1)


@dataclass
class Schedule:
    """The fields every epoch-trained config shares (``RBMTrainConfig``, ``UpDownConfig``): how
    many epochs, the mini-batch, the learning rate and its linear anneal, momentum, L2 weight
    decay and class-balanced batches. A subclass states its own defaults by declaring a field
    again (the field keeps its place)."""

    epochs: int = 10
    batch_size: int = 100
    lr: float = 0.1
    #: learning rate reached, linearly, at the last epoch (None: constant)
    lr_final: float | None = None
    momentum: float = 0.5
    #: L2 decay on the weight matrices only
    weight_decay: float = 0.0
    #: mini-batches with the same number of rows of every class (needs labels; batching.py)
    balanced_batches: bool = False

    def validate_schedule(self) -> None:
        """Check the shared fields (each config's ``validate`` calls this first)."""
        check_int("epochs", self.epochs, minimum=0)
        check_int("batch_size", self.batch_size, minimum=1)
        check_float("lr", self.lr, minimum=0.0, strict_min=True)
        if self.lr_final is not None:
            check_float("lr_final", self.lr_final, minimum=0.0)
        check_float("momentum", self.momentum, minimum=0.0, maximum=1.0)
        check_float("weight_decay", self.weight_decay, minimum=0.0)
        if not isinstance(self.balanced_batches, bool):
            raise ConfigError(f"balanced_batches must be true or false, got {self.balanced_batches!r}")

    def lr_at(self, epoch: int) -> float:
        """The learning rate of ``epoch`` (0-based): ``lr``, or moved linearly to ``lr_final``."""
        return linear_schedule(self.lr, self.lr_final, epoch, self.epochs)


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
