"""MNIST test error of the weights a fine-tuning checkpoint holds: the iterate, the moving
average (``FinetuneConfig.average_decay``) and the best-on-validation weights, where present.

A run with ``average_decay`` reports the average's error; its checkpoint also keeps the
iterate that SGD went on from (the net a run without averaging would have returned, bit for
bit: tests/test_averaging.py), so one run gives both sides of the comparison.

    python benchmarks/finetune_checkpoint_error.py runs/drop/finetune.ckpt.safetensors --data-dir ../shared/data/mnist
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, write_json  # noqa: E402

from deepbelief.checkpoint import load_checkpoint  # noqa: E402
from deepbelief.classifier import DeepClassifier  # noqa: E402
from deepbelief.data import load_dataset  # noqa: E402
from deepbelief.finetune import error_rate  # noqa: E402


def errors(path: str, x: torch.Tensor, y: torch.Tensor) -> dict:
    tensors, meta = load_checkpoint(path, kind="finetune_checkpoint")
    net = DeepClassifier.from_config(meta.get("model", meta.get("net")))
    out = {"checkpoint": path, "epoch": int(meta["epoch"])}
    iterate = {k[len("net."):]: v for k, v in tensors.items() if k.startswith("net.")}
    for tag, prefix in (("iterate", "net."), ("average", "average."), ("best", "best.")):
        state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        if not state:
            continue
        net.load_state_dict({**iterate, **state})  # the average covers the parameters, not buffers
        out[f"{tag}_test_error_percent"] = 100 * float(error_rate(net, x, y))
    return out


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+", help="finetune.ckpt.safetensors files (mnist_hinton2006.py --work)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    args = p.parse_args(argv)
    ds = load_dataset("mnist", data_dir=args.data_dir, download=False)
    rows = []
    for path in args.checkpoints:
        rows.append(errors(path, ds.x_test, ds.y_test))
        print(" ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in rows[-1].items()))
    write_json(args.out, {"benchmark": "finetune_checkpoint_error", "machine": machine_info("cpu"), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
