"""Free-energy error of the models in up-down checkpoints, read without training anything.

An ``mnist_hot2006.py`` run keeps its up-down state in ``updown.ckpt.safetensors`` (the phase on
the training split) and ``updown_all.ckpt.safetensors`` (the final phase on all 60,000). Each
holds the iterate (``model.*``) and, when the run averages, the moving average (``average.*``,
the model the run validates and keeps). This script rebuilds a labelled DBN of the
checkpoint's shapes, loads each and reports its free-energy classification error on the
10,000 MNIST test images and on the last 10,000 training images (the recipe's validation
split; the final phase trains on them). It answers "where does a run stand" while the run goes
on, or what a finished phase left before the next one changed it:

    python benchmarks/hot2006_checkpoint_error.py --data-dir ../shared/data/mnist \\
        --checkpoint runs/hot2006/updown.ckpt.safetensors --out phase1.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import default_data_dir, machine_info, write_json  # noqa: E402

from deepbelief.checkpoint import load_checkpoint  # noqa: E402
from deepbelief.data.datasets import load_dataset  # noqa: E402
from deepbelief.dbn import GenerativeDBN  # noqa: E402

N_VALID = 10_000  # the hot2006 recipe's validation split: the last 10,000 training images


def read_checkpoint(path: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict]:
    """The checkpoint's parameter sets by prefix ("model", "average") and its metadata, read by
    the library's checked reader (refuses another kind of file, a truncated or pickled one)."""
    tensors, meta = load_checkpoint(path, kind="updown_checkpoint")
    sets: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        prefix, _, name = key.partition(".")
        if prefix in ("model", "average") and name:
            sets.setdefault(prefix, {})[name] = value
    return sets, meta


def skeleton(meta: dict) -> GenerativeDBN:
    """The untied labelled DBN the checkpoint's config describes (the values are loaded after)."""
    return GenerativeDBN.from_config(meta["model"]).untie_()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=default_data_dir())
    p.add_argument("--checkpoint", action="append", required=True, help="an up-down checkpoint (repeatable)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    ds = load_dataset("mnist", data_dir=a.data_dir)
    x_va, y_va = ds.x_train[-N_VALID:], ds.y_train[-N_VALID:]
    res = {"checkpoints": []}
    for path in map(Path, a.checkpoint):
        sets, meta = read_checkpoint(path)
        row = {"checkpoint": str(path), "epoch": meta.get("epoch")}
        for prefix, params in sets.items():
            model = skeleton(meta)
            model.load_state_dict(params, strict=True)
            with torch.no_grad():
                row[prefix] = {"test_error_pct": 100 * float(model.error_rate(ds.x_test, ds.y_test)),
                               "valid_error_pct": 100 * float(model.error_rate(x_va, y_va))}
            print(f"{path}: epoch {row['epoch']}, {prefix}: test error {row[prefix]['test_error_pct']:.2f}%, "
                  f"last 10,000 training images {row[prefix]['valid_error_pct']:.2f}%", flush=True)
        res["checkpoints"].append(row)
    res["machine"] = machine_info("cpu")
    if a.out:
        write_json(a.out, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
