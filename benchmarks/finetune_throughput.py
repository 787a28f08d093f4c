"""One epoch of discriminative fine-tuning on MNIST (784-500-500-2000-10, batch 100), side by side.

In the same process, alternating repeats, medians and ratios, for each phase of
deepbelief.finetune (``all``: every layer learns; ``top``: only the output layer, the
first ``top_only_epochs``):
  1. the autograd step (``FinetuneConfig(fast=False)``: net(x), F.cross_entropy, backward);
  2. the hand-written step (``fast=True``, the default: backprop.FastBackprop);
  3. the matrix products alone for the same FLOPs (forward addmm per layer; backward: each
     trained layer's weight gradient and the deltas sent down), preallocated outputs;
  4. the optimiser's updates alone (finetune's momentum SGD, one per step), which the
     matmul figure leaves out.
The fine-tuning figures are whole ``finetune(..., epochs=1)`` calls (permutation, SGD with
momentum, the loss kept on the device, one host sync at the end of the epoch).

    python benchmarks/finetune_throughput.py --quick                  # under a minute on 2 CPU cores
    python benchmarks/finetune_throughput.py --out cpu.json           # 60,000 images, 3 repeats
    python benchmarks/finetune_throughput.py --device cuda --out gpu.json
    python benchmarks/finetune_throughput.py --sizes 784,64,64 --batch-size 20   # overhead-bound
    python benchmarks/finetune_throughput.py --dropout --phases all --out drop.json  # hinton2006_dropout's step

``--dropout`` times the step of the dropout recipe (keep 0.8 of the inputs and 0.5 of the hidden
units, the (1 - m) dampened momentum): the same products, plus the masks' uniforms and their
element-wise work, the part that could separate it from the matmul rate.
"""

from __future__ import annotations

import torch

import _bench
from _bench import median, timed

SIZES = [784, 500, 500, 2000]
N_CLASSES = 10


def matmul_epoch(n_rows: int, batch: int, dev, top_only: bool) -> float:
    """Seconds for the products of one epoch's steps (fp32, random operands, no activations)."""
    g = torch.Generator(device=dev).manual_seed(0)
    dims = SIZES + [N_CLASSES]
    Ws = [torch.randn(o, i, generator=g, device=dev) * 0.01 for i, o in zip(dims[:-1], dims[1:])]
    bs = [torch.zeros(o, device=dev) for o in dims[1:]]
    acts = [torch.rand(batch, d, generator=g, device=dev) for d in dims]  # layer inputs/outputs
    deltas = [torch.empty(batch, d, device=dev) for d in dims]
    grads = [torch.empty_like(W) for W in Ws]
    n_layers = len(Ws)
    x = torch.rand(n_rows, dims[0], generator=g, device=dev)

    def run():
        for s in range(n_rows // batch):
            h = x[s * batch : (s + 1) * batch]
            for k in range(n_layers):
                torch.addmm(bs[k], h, Ws[k].T, out=acts[k + 1])
                h = acts[k + 1]
            d = acts[-1]  # stands in for (softmax - onehot) / b
            torch.mm(d.T, acts[-2], out=grads[-1])
            if top_only:
                continue
            for k in range(n_layers - 1, 0, -1):
                torch.mm(d, Ws[k], out=deltas[k])  # delta sent down to layer k
                d = deltas[k]
                torch.mm(d.T, acts[k - 1] if k > 1 else x[s * batch : (s + 1) * batch], out=grads[k - 1])

    return timed(run, dev)


def matmul_flops(n_rows: int, batch: int, top_only: bool) -> int:
    dims = SIZES + [N_CLASSES]
    pairs = list(zip(dims[:-1], dims[1:]))
    fwd = sum(2 * batch * i * o for i, o in pairs)
    if top_only:
        bwd = 2 * batch * pairs[-1][0] * pairs[-1][1]
    else:
        bwd = sum(2 * batch * i * o for i, o in pairs) + sum(2 * batch * i * o for i, o in pairs[1:])
    return (fwd + bwd) * (n_rows // batch)


def sgd_epoch(n_rows: int, batch: int, dev, top_only: bool) -> float:
    """Seconds for the optimiser's updates alone over one epoch (finetune's SGD, momentum)."""
    from deepbelief.finetune import FinetuneConfig, _sgd, random_classifier

    net = random_classifier(SIZES, N_CLASSES, generator=torch.Generator(device=dev).manual_seed(0), device=dev)
    params = list(net.out.parameters()) if top_only else list(net.parameters())
    for p in params:
        p.grad = torch.full_like(p, 1e-6)
    opt = _sgd(params, 0.1, FinetuneConfig(momentum=0.9))

    def run():
        for _ in range(n_rows // batch):
            opt.step()

    return timed(run, dev)


def recipe_dropout() -> dict:
    """The dropout settings of the ``hinton2006_dropout`` recipe, read from it (not restated)."""
    from deepbelief.recipes import get_recipe

    ft = get_recipe("hinton2006_dropout").finetune
    return {"dropout": ft.dropout, "input_dropout": ft.input_dropout, "dampen_momentum": ft.dampen_momentum}


def finetune_epoch(x, y, batch: int, dev, seed: int, fast: bool, top_only: bool, dropout: bool = False) -> float:
    from deepbelief.finetune import FinetuneConfig, finetune, random_classifier

    gen = torch.Generator(device=dev).manual_seed(seed)
    net = random_classifier(SIZES, N_CLASSES, activation="sigmoid", generator=gen, device=dev)
    drop = recipe_dropout() if dropout else {}
    cfg = FinetuneConfig(epochs=1, batch_size=batch, lr=0.1, lr_decay=1.0, momentum=0.9,
                         top_only_epochs=1 if top_only else 0, fast=fast, **drop)
    return timed(lambda: finetune(net, x, y, cfg, generator=gen), dev)


def run(args, dev, x, y) -> dict:
    batch, n = args.batch_size, x.shape[0]
    out = {"rows": n, "batch_size": batch, "steps_per_epoch": n // batch, "repeats": args.repeats, "phases": {}}
    for phase in args.phases:
        top = phase == "top"
        for fast in (False, True):  # warm-up: allocator, thread pool, CUDA kernels
            finetune_epoch(x[: 10 * batch], y[: 10 * batch], batch, dev, args.seed, fast, top, args.dropout)
        matmul_epoch(10 * batch, batch, dev, top)
        sgd_epoch(10 * batch, batch, dev, top)
        times = {"autograd": [], "fast": [], "matmul": [], "sgd": []}
        for rep in range(args.repeats):
            times["autograd"].append(finetune_epoch(x, y, batch, dev, args.seed + rep, False, top, args.dropout))
            times["fast"].append(finetune_epoch(x, y, batch, dev, args.seed + rep, True, top, args.dropout))
            times["matmul"].append(matmul_epoch(n, batch, dev, top))
            times["sgd"].append(sgd_epoch(n, batch, dev, top))
            print(f"[{phase}] repeat {rep + 1}/{args.repeats}: "
                  + ", ".join(f"{k} {v[-1]:.3f}s" for k, v in times.items()))
        med = {k: median(v) for k, v in times.items()}
        flops = matmul_flops(n, batch, top)
        out["phases"][phase] = {
            "seconds": times, "median_seconds": med, "min_seconds": {k: min(v) for k, v in times.items()},
            "median_ms_per_step": {k: 1e3 * v / (n // batch) for k, v in med.items()},
            "matmul_flops_per_epoch": flops,
            "matmul_gflops": flops / med["matmul"] / 1e9,
            "speedup_fast_vs_autograd": med["autograd"] / med["fast"],
            "fast_fraction_of_matmul_rate": med["matmul"] / med["fast"],
            "autograd_fraction_of_matmul_rate": med["matmul"] / med["autograd"],
        }
    return out


def main(argv=None):
    p = _bench.common_parser(__doc__.splitlines()[0], threads=True)
    p.add_argument("--repeats", type=int, default=None, help="alternating repeats (default 3; quick 2)")
    p.add_argument("--rows", type=int, default=None, help="training rows (default 60000; quick 6000)")
    p.add_argument("--phases", default="all,top", help="comma list of all|top (default all,top)")
    p.add_argument("--sizes", default=None, help="layer sizes up to the last hidden layer (default 784,500,500,2000)")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--dropout", action="store_true",
                   help="time the dropout recipe's step (keep 0.8 / 0.5, dampened momentum) instead of plain SGD's")
    p.add_argument("--headline", action="store_true",
                   help="record finetune_gemm_share_pct (phase 'all'; not with --dropout)")
    args = _bench.parse(p, argv)
    if args.sizes:
        SIZES[:] = [int(s) for s in args.sizes.split(",")]
        if SIZES[0] != 784 or len(SIZES) < 2:
            raise SystemExit(f"error: --sizes must start with 784 (MNIST) and name a hidden layer, got {args.sizes}")
    args.repeats = args.repeats or (2 if args.quick else 3)
    args.phases = [s.strip() for s in args.phases.split(",") if s.strip()]
    if not args.phases or set(args.phases) - {"all", "top"}:
        raise SystemExit(f"error: --phases must list all and/or top, got {args.phases}")
    if args.headline and args.dropout:
        raise SystemExit("error: --headline records the plain step's share (finetune_gemm_share_pct); "
                         "drop --dropout to record it, or --headline to time the dropout step")
    rows = args.rows or (6000 if args.quick else None)
    dev = _bench.resolve(args.device)
    from deepbelief.data import load_dataset

    ds = load_dataset("mnist", data_dir=args.data_dir, download=False)
    x, y = ds.x_train, ds.y_train
    if rows is not None:
        x, y = x[:rows], y[:rows]
    x, y = x.to(dev).contiguous(), y.to(dev).long()
    record = {"benchmark": "finetune_throughput", "machine": _bench.machine_info(dev), "quick": args.quick,
              "net": SIZES + [N_CLASSES], "activation": "sigmoid",
              "dropout": recipe_dropout() if args.dropout else None}
    r = run(args, dev, x, y)
    record["result"] = r
    print(f"\n{r['rows']} images, {SIZES + [N_CLASSES]}, batch {r['batch_size']} ({r['steps_per_epoch']} steps), "
          f"{'the dropout recipe step, ' if args.dropout else ''}"
          f"{record['machine']['device_name']}, medians of {r['repeats']}:")
    for phase, ph in r["phases"].items():
        med, ms = ph["median_seconds"], ph["median_ms_per_step"]
        print(f"  phase {phase}: autograd {med['autograd']:.3f} s ({ms['autograd']:.2f} ms/step), "
              f"fast {med['fast']:.3f} s ({ms['fast']:.2f} ms/step), matmuls alone {med['matmul']:.3f} s "
              f"({ph['matmul_gflops']:.0f} GFLOP/s), SGD updates alone {med['sgd']:.3f} s")
        mn = ph["min_seconds"]
        print(f"    fastest repeats (steadier on a shared machine): autograd {mn['autograd']:.3f} s, "
              f"fast {mn['fast']:.3f} s ({mn['autograd'] / mn['fast']:.2f}x), matmuls {mn['matmul']:.3f} s")
        print(f"    fast is {ph['speedup_fast_vs_autograd']:.2f}x autograd; fast reaches "
              f"{100 * ph['fast_fraction_of_matmul_rate']:.0f}% of the matmul rate, autograd "
              f"{100 * ph['autograd_fraction_of_matmul_rate']:.0f}%")
    _bench.write_json(args.out, record)
    if args.headline and not args.quick and "all" in r["phases"]:
        from _common import machine_name, record_headline

        share = 100 * r["phases"]["all"]["fast_fraction_of_matmul_rate"]
        record_headline({"finetune_gemm_share_pct": round(share, 1)}, machine=machine_name())


if __name__ == "__main__":
    main()
