"""Norms of each hidden unit's incoming weight vector, by layer, in pre-trained RBMs and in
fine-tuned nets: what a max-norm constraint (``FinetuneConfig.max_norm``) would clip.

Dropout papers constrain every unit's incoming weights to norm <= c (c = 3-4 on their W',
which is c q on our inverted-dropout W, q the keep probability of the layer's inputs;
docs/2-training.md). This reads the layer files and fine-tuning checkpoints a run leaves in
its ``--work`` folder and prints quantiles of those norms, and with ``--c`` the share of
units above each c.

    python benchmarks/weight_norms.py /work/runs/X/layer0.safetensors /work/runs/X/finetune.ckpt.safetensors --c 3 4
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, write_json  # noqa: E402

from deepbelief.io import load_tensors  # noqa: E402

QUANTILES = (0.1, 0.5, 0.9, 0.99, 1.0)


def incoming_norms(path: str) -> list[tuple[str, torch.Tensor]]:
    """(layer name, (n_hidden,) norms) for an RBM file (W is (n_visible, n_hidden): a hidden
    unit's incoming weights are a column) or a fine-tuning checkpoint (nn.Linear weights are
    (out, in): a row; the output layer is left out, as max-norm leaves it)."""
    tensors, meta = load_tensors(path)  # validated; a checkpoint's generator state is not read
    kind = meta.get("kind")
    if kind == "rbm":
        return [("rbm", tensors["W"].double().norm(dim=0))]
    if kind == "finetune_checkpoint":
        names = sorted((k for k in tensors if k.startswith("net.hidden.") and k.endswith(".weight")),
                       key=lambda k: int(k.split(".")[2]))
        return [(k[len("net."):-len(".weight")], tensors[k].double().norm(dim=1)) for k in names]
    raise SystemExit(f"{path}: expected an RBM file or a fine-tuning checkpoint, got kind {kind!r}")


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", help="layer<i>.safetensors and finetune.ckpt.safetensors files")
    p.add_argument("--c", type=float, nargs="*", default=[], help="report the share of units with norm above each c")
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    args = p.parse_args(argv)
    rows = []
    for path in args.files:
        for layer, n in incoming_norms(path):
            q = torch.quantile(n, torch.tensor(QUANTILES, dtype=n.dtype)).tolist()
            row = {"file": path, "layer": layer, "units": n.numel(),
                   "quantiles": {f"q{int(100 * a)}": v for a, v in zip(QUANTILES, q)},
                   "share_above": {str(c): float((n > c).double().mean()) for c in args.c}}
            rows.append(row)
            above = " ".join(f"above {c}: {100 * s:.1f}%" for c, s in row["share_above"].items())
            print(f"{path} {layer} ({n.numel()} units): "
                  + " ".join(f"{k} {v:.2f}" for k, v in row["quantiles"].items()) + (f"; {above}" if above else ""))
    write_json(args.out, {"benchmark": "weight_norms", "machine": machine_info("cpu"), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
