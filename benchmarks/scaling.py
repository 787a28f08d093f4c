"""Scaling of CD-1 training: throughput against batch size and hidden units, and one
epoch of the whole 784-500-500-2000 stack.

For each point: one warm-up on a few batches, then ``--repeats`` timed epochs of
``training.RBMTrainer.fit`` (monitors included) on MNIST; reports samples/s and the
GFLOP/s of the five matrix products per batch (2 * b * n_vis * n_hid FLOPs each).

    python benchmarks/scaling.py --quick                         # ~1 min on 2 CPU cores
    python benchmarks/scaling.py --device cuda --out scaling-cuda.json \\
        --table docs/results/scaling-cuda.md --plot docs/results/scaling-cuda.png
"""

from __future__ import annotations

import torch

import _bench
from _bench import median, timed

BATCHES = [10, 20, 50, 100, 200, 500, 1000]
HIDDEN = [500, 1000, 2000, 4000]
STACK = [784, 500, 500, 2000]


def epoch_seconds(x, n_hid, batch, dev, seed, repeats, precision="fp32"):
    from deepbelief.rbm import RBM
    from deepbelief.training import RBMTrainConfig, RBMTrainer

    def one(rows):
        gen = torch.Generator(device=dev).manual_seed(seed)
        rbm = RBM(x.shape[1], n_hid, generator=gen)
        trainer = RBMTrainer(rbm, RBMTrainConfig(epochs=1, batch_size=batch, precision=precision), gen)
        return timed(lambda: trainer.fit(rows), dev)

    one(x[: min(x.shape[0], 5 * batch)])  # warm-up
    return median([one(x) for _ in range(repeats)])


def point(x, n_hid, batch, dev, args):
    t = epoch_seconds(x, n_hid, batch, dev, args.seed, args.repeats, args.precision)
    n_batches = x.shape[0] // batch
    flops = 5 * 2 * batch * x.shape[1] * n_hid * n_batches
    return {"n_visible": x.shape[1], "n_hidden": n_hid, "batch_size": batch, "rows": x.shape[0],
            "seconds": t, "samples_per_s": n_batches * batch / t, "gflops": flops / t / 1e9}


def stack_epoch(x, dev, args):
    """One epoch of every RBM of the stack, plus the bottom-up passes between layers."""
    from deepbelief.rbm import RBM, batched
    from deepbelief.training import RBMTrainConfig, RBMTrainer

    gen = torch.Generator(device=dev).manual_seed(args.seed)
    layers, data = [], x
    _bench.sync(dev)
    for i in range(len(STACK) - 1):
        rbm = RBM(STACK[i], STACK[i + 1], generator=gen)
        trainer = RBMTrainer(rbm, RBMTrainConfig(epochs=1, batch_size=100, precision=args.precision), gen)
        t = timed(lambda: trainer.fit(data), dev)
        up = 0.0
        if i < len(STACK) - 2:
            box = {}
            with torch.no_grad():
                up = timed(lambda: box.setdefault("x", batched(rbm.mean_hidden, data)), dev)
            data = box["x"]
        layers.append({"layer": f"{STACK[i]}x{STACK[i + 1]}", "train_seconds": t, "transform_seconds": up})
    return {"rows": x.shape[0], "layers": layers, "total_seconds": sum(l["train_seconds"] + l["transform_seconds"]
                                                                        for l in layers)}


def table(record) -> str:
    m = record["machine"]
    lines = [f"Measured by `{m['command']}` on {m['device_name']} ({m['device']}), torch {m['torch']}, "
             f"{m['date_utc']}; {record['rows']} MNIST rows per epoch, precision {record['precision']}.", ""]
    lines += ["| batch | hidden | samples/s | GFLOP/s |", "|---:|---:|---:|---:|"]
    for p in record["batch_sweep"] + record["hidden_sweep"]:
        lines.append(f"| {p['batch_size']} | {p['n_hidden']} | {p['samples_per_s']:,.0f} | {p['gflops']:.1f} |")
    s = record["stack"]
    lines += ["", f"One epoch of the 784-500-500-2000 stack ({s['rows']} rows, batch 100): "
              f"{s['total_seconds']:.2f} s", "", "| layer | train s | bottom-up pass s |", "|---|---:|---:|"]
    for l in s["layers"]:
        lines.append(f"| {l['layer']} | {l['train_seconds']:.2f} | {l['transform_seconds']:.2f} |")
    return "\n".join(lines) + "\n"


def plot(record, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    bs = record["batch_sweep"]
    a.loglog([p["batch_size"] for p in bs], [p["samples_per_s"] for p in bs], "o-")
    a.set(xlabel="batch size", ylabel="CD-1 samples / s", title="784x500")
    hs = record["hidden_sweep"]
    b.plot([p["n_hidden"] for p in hs], [p["gflops"] for p in hs], "o-")
    b.set(xlabel="hidden units", ylabel="GFLOP/s (matmuls)", title="784xH, batch 100", ylim=(0, None))
    fig.suptitle(f"{record['machine']['device_name']} ({record['machine']['device']})", fontsize=9)
    fig.tight_layout()
    from io import BytesIO

    from deepbelief.io import atomic_write_bytes

    buf = BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write_bytes(path, buf.getvalue())
    print(f"wrote {path}")


def main(argv=None):
    p = _bench.common_parser(__doc__.splitlines()[0], threads=True)
    p.add_argument("--rows", type=int, default=None, help="MNIST rows per epoch (default 60000; quick 2000)")
    p.add_argument("--repeats", type=int, default=1, help="timed epochs per point (median)")
    p.add_argument("--batches", default=",".join(map(str, BATCHES)), help="batch sizes of the sweep")
    p.add_argument("--hidden", default=",".join(map(str, HIDDEN)), help="hidden sizes of the sweep")
    p.add_argument("--precision", default="fp32", help="fp32|tf32|bf16 (tf32 and bf16 for GPUs)")
    p.add_argument("--table", default=None, help="write a markdown table here (e.g. docs/results/scaling-cuda.md)")
    p.add_argument("--plot", default=None, help="write a PNG plot here (e.g. docs/results/scaling-cuda.png)")
    args = _bench.parse(p, argv)
    dev = _bench.resolve(args.device)
    rows = args.rows or (2000 if args.quick else None)
    x = _bench.mnist_train(args.data_dir, rows, dev)
    rec = {"benchmark": "scaling", "machine": _bench.machine_info(dev), "quick": args.quick,
           "rows": x.shape[0], "precision": args.precision, "batch_sweep": [], "hidden_sweep": []}
    for b in [int(t) for t in args.batches.split(",")]:
        rec["batch_sweep"].append(point(x, 500, b, dev, args))
        print(f"batch {b:5d}, hidden 500: {rec['batch_sweep'][-1]['samples_per_s']:,.0f} samples/s, "
              f"{rec['batch_sweep'][-1]['gflops']:.1f} GFLOP/s")
    for h in [int(t) for t in args.hidden.split(",")]:
        rec["hidden_sweep"].append(point(x, h, 100, dev, args))
        print(f"batch   100, hidden {h:4d}: {rec['hidden_sweep'][-1]['samples_per_s']:,.0f} samples/s, "
              f"{rec['hidden_sweep'][-1]['gflops']:.1f} GFLOP/s")
    rec["stack"] = stack_epoch(x, dev, args)
    print(f"stack 784-500-500-2000, one epoch of each layer: {rec['stack']['total_seconds']:.2f} s")
    text = table(rec)
    print(text)
    if args.table:
        from deepbelief.io import atomic_write_bytes

        atomic_write_bytes(args.table, text.encode())
    if args.plot:
        plot(rec, args.plot)
    _bench.write_json(args.out, rec)


if __name__ == "__main__":
    main()
