"""Per-epoch metrics to a CSV file (and to TensorBoard when it is installed).

One ``MetricsLogger`` receives every per-epoch row of a run, from any phase:

    logger = MetricsLogger("run.csv", tensorboard_dir="runs/x")   # tensorboard optional
    pretrain_stack(..., callback=logger.pretrain_callback)         # (layer, epoch, metrics)
    finetune(..., callback=logger.callback("finetune"))            # (epoch, metrics)
    logger.close()

The CSV has one row per (phase, layer, epoch) and one column per metric name seen so
far (empty where a phase has no such metric), so RBM monitors (``recon_error``,
``free_energy_gap``) and fine-tuning metrics (``loss``, ``valid_error``) share one file
that ``deepbelief plot curves`` reads. The rows are kept in memory (a few hundred) and
the whole file is rewritten atomically after each epoch, so a crash never leaves half a
row and the file is always readable while a run is in progress.

Rows arrive once per epoch, after the loop's single host synchronisation, so logging
adds no synchronisation to the hot loop.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from deepbelief.io import atomic_write_bytes

_FIRST = ["phase", "layer", "epoch"]


class MetricsLogger:
    """Collects per-epoch metric rows; writes them to ``path`` (CSV) and TensorBoard.

    Args:
        path: CSV file to (re)write after every row, or None for memory only.
        tensorboard_dir: folder for a ``torch.utils.tensorboard.SummaryWriter``; ignored
            with a one-line notice if TensorBoard is not installed.
    """

    def __init__(self, path: str | Path | None = None, *, tensorboard_dir: str | Path | None = None):
        self.path = Path(path) if path is not None else None
        self.rows: list[dict] = []
        self._writer = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                print("note: TensorBoard is not installed (pip install tensorboard); logging to CSV only")
            else:
                self._writer = SummaryWriter(str(tensorboard_dir))
        self._steps: dict[str, int] = {}

    def log(self, phase: str, epoch: int, metrics: dict, layer: int | str = "") -> None:
        """Record one epoch's ``metrics`` (numbers; other values are dropped)."""
        row = {"phase": phase, "layer": layer, "epoch": int(epoch)}
        row.update({k: float(v) for k, v in metrics.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in _FIRST})
        self.rows.append(row)
        if self._writer is not None:
            tag = f"{phase}{layer}" if layer != "" else phase
            step = self._steps.get(tag, 0)
            for k, v in row.items():
                if k not in _FIRST and math.isfinite(v):
                    self._writer.add_scalar(f"{tag}/{k}", v, step)
            self._steps[tag] = step + 1
        if self.path is not None:
            self.write()

    def callback(self, phase: str, layer: int | str = ""):
        """A ``callback(epoch, metrics)`` for ``train_rbm`` / ``finetune``."""
        return lambda epoch, metrics: self.log(phase, epoch, metrics, layer)

    def pretrain_callback(self, layer: int, epoch: int, metrics: dict) -> None:
        """The ``callback(layer, epoch, metrics)`` that ``pretrain_stack`` expects."""
        self.log("rbm", epoch, metrics, layer)

    def columns(self) -> list[str]:
        seen = dict.fromkeys(_FIRST)
        for r in self.rows:
            seen.update(dict.fromkeys(r))
        return list(seen)

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.columns(), restval="", lineterminator="\n")
        w.writeheader()
        for r in self.rows:
            w.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in r.items()})
        return buf.getvalue()

    def write(self, path: str | Path | None = None) -> None:
        atomic_write_bytes(path or self.path, self.to_csv().encode())

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def read_metrics_csv(path: str | Path) -> list[dict]:
    """Rows of a metrics CSV, numbers as floats (empty cells dropped)."""
    from deepbelief.errors import DataError, not_a_file

    path = Path(path)
    if not path.is_file():
        raise DataError(f"metrics file {str(path)!r} {not_a_file(path)}")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not set(_FIRST) <= set(reader.fieldnames):
            raise DataError(f"metrics file {str(path)!r} must have the columns {_FIRST}, got {reader.fieldnames}")
        rows = []
        for r in reader:
            out = {"phase": r["phase"], "layer": r["layer"], "epoch": int(r["epoch"])}
            for k, v in r.items():
                if k not in _FIRST and v not in ("", None):
                    out[k] = float(v)
            rows.append(out)
    return rows


def curves_from_rows(rows: list[dict], metric: str) -> dict[str, list[float]]:
    """``{series name: values by epoch}`` of one metric, one series per (phase, layer)."""
    series: dict[str, list[float]] = {}
    for r in rows:
        if metric in r:
            name = f"{r['phase']} {r['layer']}".strip()
            series.setdefault(name, []).append(r[metric])
    return series
