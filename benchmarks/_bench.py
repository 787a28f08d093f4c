"""Shared plumbing of the benchmark scripts: the common flags, the data, machine info and
the JSON record. Every figure a script reports is measured in that run."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # run from a checkout without installing
from _common import START_COMMIT  # noqa: E402  (the same folder; read once at import)


def default_data_dir() -> str:
    near = REPO.parent / "shared" / "data" / "mnist"
    return str(near if near.is_dir() else Path("/work/shared/data/mnist"))


def common_parser(description: str, threads: bool = False) -> argparse.ArgumentParser:
    """The options every benchmark shares; ``threads``: also ``--threads`` (applied by ``parse``)."""
    p = argparse.ArgumentParser(description=description)
    if threads:
        p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda (default auto)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=default_data_dir(), help="folder with the MNIST IDX files")
    p.add_argument("--quick", action="store_true", help="small version (about a minute on a 2-core CPU)")
    p.add_argument("--out", default=None, help="write all measured figures and machine info as JSON here")
    return p


def parse(p: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """``p.parse_args(argv)``, then torch's CPU threads set from ``--threads`` where given."""
    args = p.parse_args(argv)
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    return args


def resolve(device: str) -> torch.device:
    from deepbelief.errors import resolve_device

    return resolve_device(device)


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn, dev: torch.device) -> float:
    """Wall seconds of ``fn()``, synchronising the device before and after."""
    sync(dev)
    t0 = time.perf_counter()
    fn()
    sync(dev)
    return time.perf_counter() - t0


def mnist_train(data_dir: str, rows: int | None, dev: torch.device) -> torch.Tensor:
    from deepbelief.data import load_dataset

    x = load_dataset("mnist", data_dir=data_dir, download=False).x_train
    if rows is not None:
        x = x[:rows]
    return x.to(dev).contiguous()


def machine_info(dev: torch.device) -> dict:
    info = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(dev),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "commit": START_COMMIT,
    }
    if dev.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(dev)
    else:
        info["device_name"] = platform.processor() or platform.machine()
    return info


def median(xs):
    return statistics.median(xs) if xs else None


def write_json(path: str | None, record: dict) -> None:
    if not path:
        return
    from deepbelief.io import atomic_write_bytes

    atomic_write_bytes(path, json.dumps(record, indent=2, default=str).encode())
    print(f"wrote {path}")
