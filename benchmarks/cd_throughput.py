"""One epoch of CD-1 on MNIST (784x500 binary RBM, batch 100, fp32), side by side.

In the same process, alternating repeats, medians and ratios:
  1. the machine's fp32 matmul throughput at exactly the shapes of a CD-1 batch (the five
     products v@W, h@W^T, v'@W, v^T h, v'^T h'), over as many batches as one epoch;
  2. our epoch (training.RBMTrainer.fit, monitors included);
  3. scikit-learn's BernoulliRBM (n_iter=1, batch_size=100);
  4. learnergy's bernoulli RBM (if installed: ``pip install --no-deps learnergy``);
  5. with ``--bf16``, our epoch again with bf16 matmuls (``precision="bf16"``).
Targets: ours >= 88% of the matmul rate for its FLOPs (issue 14; issue 7 asked 85%), >= 2x sklearn,
>= 3x learnergy.

``--gpu``: CD-1 samples per second on CUDA at batch 100 and 1000 for fp32, tf32, bf16.

    python benchmarks/cd_throughput.py --quick                 # ~1 min on 2 CPU cores
    python benchmarks/cd_throughput.py --out cpu.json          # full: 60,000 images, 3 repeats
    python benchmarks/cd_throughput.py --gpu --device cuda --out gpu.json
"""

from __future__ import annotations

import logging

import torch

import _bench
from _bench import median, timed

N_VIS, N_HID = 784, 500


def matmul_epoch(x: torch.Tensor, batch: int, dev) -> float:
    """Seconds for the five CD-1 products of every batch of ``x`` (preallocated outputs)."""
    g = torch.Generator(device=dev).manual_seed(0)
    W = torch.randn(N_VIS, N_HID, generator=g, device=dev) * 0.01
    h = torch.rand(batch, N_HID, generator=g, device=dev)
    a = torch.empty(batch, N_HID, device=dev)
    r = torch.empty(batch, N_VIS, device=dev)
    s = torch.empty(N_VIS, N_HID, device=dev)
    n = x.shape[0] // batch

    def run():
        for i in range(n):
            v = x[i * batch : (i + 1) * batch]
            torch.mm(v, W, out=a)
            torch.mm(h, W.T, out=r)
            torch.mm(r, W, out=a)
            torch.mm(v.T, h, out=s)
            s.addmm_(r.T, a)

    return timed(run, dev)


def ours_epoch(x: torch.Tensor, batch: int, dev, seed: int, precision: str = "fp32") -> float:
    from deepbelief.rbm import RBM
    from deepbelief.training import RBMTrainConfig, RBMTrainer

    gen = torch.Generator(device=dev).manual_seed(seed)
    rbm = RBM(N_VIS, N_HID, generator=gen)
    cfg = RBMTrainConfig(epochs=1, batch_size=batch, lr=0.1, precision=precision)
    trainer = RBMTrainer(rbm, cfg, gen)
    return timed(lambda: trainer.fit(x), dev)


def sklearn_epoch(xnp, batch: int, seed: int) -> float:
    import time

    from sklearn.neural_network import BernoulliRBM

    m = BernoulliRBM(n_components=N_HID, learning_rate=0.1, batch_size=batch, n_iter=1, random_state=seed)
    t0 = time.perf_counter()
    m.fit(xnp)
    return time.perf_counter() - t0


def learnergy_epoch(x: torch.Tensor, batch: int):
    import time

    try:
        from learnergy.models.bernoulli import RBM as LRBM
    except Exception as exc:  # not a dependency: report its absence
        return None, f"learnergy not available: {exc}"
    logging.getLogger("learnergy").setLevel(logging.ERROR)
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("learnergy"):
            logging.getLogger(name).setLevel(logging.ERROR)
    ds = torch.utils.data.TensorDataset(x.cpu(), torch.zeros(x.shape[0]))
    m = LRBM(n_visible=N_VIS, n_hidden=N_HID, steps=1, learning_rate=0.1)
    t0 = time.perf_counter()
    m.fit(ds, batch_size=batch, epochs=1)
    return time.perf_counter() - t0, None


def cpu_run(args, dev, x) -> dict:
    batch = 100
    n = x.shape[0]
    flops = 5 * 2 * batch * N_VIS * N_HID * (n // batch)  # the five products per batch
    xnp = x.cpu().numpy()
    times = {"matmul": [], "ours": [], "ours_bf16": [], "sklearn": [], "learnergy": []}
    notes = {}
    ours_epoch(x[: 10 * batch], batch, dev, args.seed)  # warm-up (allocator, thread pool)
    for rep in range(args.repeats):
        times["matmul"].append(matmul_epoch(x, batch, dev))
        times["ours"].append(ours_epoch(x, batch, dev, args.seed + rep))
        if args.bf16:
            times["ours_bf16"].append(ours_epoch(x, batch, dev, args.seed + rep, "bf16"))
        if not args.skip_others:
            times["sklearn"].append(sklearn_epoch(xnp, batch, args.seed + rep))
            t, why = learnergy_epoch(x, batch)
            if t is None:
                notes["learnergy"] = why
            else:
                times["learnergy"].append(t)
        print(f"repeat {rep + 1}/{args.repeats}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items() if v))
    med = {k: median(v) for k, v in times.items()}
    res = {
        "rows": n, "batch_size": batch, "matmul_flops_per_epoch": flops, "repeats": args.repeats,
        "seconds": times, "median_seconds": med,
        "matmul_gflops": flops / med["matmul"] / 1e9,
        "ours_gflops": flops / med["ours"] / 1e9,
        "ours_fraction_of_matmul_rate": med["matmul"] / med["ours"],
        "notes": notes,
    }
    if med["ours_bf16"]:
        res["bf16_speedup_vs_fp32"] = med["ours"] / med["ours_bf16"]
    if med["sklearn"]:
        res["speedup_vs_sklearn"] = med["sklearn"] / med["ours"]
    if med["learnergy"]:
        res["speedup_vs_learnergy"] = med["learnergy"] / med["ours"]
    return res


def gpu_run(args, dev, x) -> dict:
    out = {"rows": x.shape[0], "points": []}
    for batch in (100, 1000):
        flops = 5 * 2 * batch * N_VIS * N_HID * (x.shape[0] // batch)
        matmul_epoch(x, batch, dev)  # warm-up
        mm = median([matmul_epoch(x, batch, dev) for _ in range(args.repeats)])
        for precision in ("fp32", "tf32", "bf16"):
            ours_epoch(x[: 20 * batch], batch, dev, args.seed, precision)  # warm-up
            t = median([ours_epoch(x, batch, dev, args.seed + r, precision) for r in range(args.repeats)])
            p = {"batch_size": batch, "precision": precision, "seconds": t, "samples_per_s": x.shape[0] / t,
                 "ours_gflops": flops / t / 1e9, "fp32_matmul_gflops": flops / mm / 1e9}
            out["points"].append(p)
            print(f"batch {batch:5d} {precision}: {p['samples_per_s']:,.0f} samples/s "
                  f"({t:.3f}s per epoch; fp32 matmuls alone {mm:.3f}s)")
    return out


def main(argv=None):
    p = _bench.common_parser(__doc__.splitlines()[0], threads=True)
    p.add_argument("--gpu", action="store_true", help="CUDA samples/s at batch 100 and 1000 (fp32/tf32/bf16)")
    p.add_argument("--repeats", type=int, default=None, help="alternating repeats (default 3; quick 2)")
    p.add_argument("--rows", type=int, default=None, help="training rows (default 60000; quick 6000)")
    p.add_argument("--skip-others", action="store_true", help="only matmul and ours (no sklearn/learnergy)")
    p.add_argument("--bf16", action="store_true",
                   help="also time our epoch with bf16 matmuls (precision=\"bf16\", autocast)")
    p.add_argument("--headline", action="store_true", help="record cd1_gemm_share_pct in headline.json")
    args = _bench.parse(p, argv)
    args.repeats = args.repeats or (2 if args.quick else 3)
    rows = args.rows or (6000 if args.quick else None)
    dev = _bench.resolve("cuda" if args.gpu and args.device == "auto" else args.device)
    x = _bench.mnist_train(args.data_dir, rows, dev)
    record = {"benchmark": "cd_throughput", "machine": _bench.machine_info(dev), "quick": args.quick}
    if args.gpu:
        if dev.type != "cuda":
            raise SystemExit("error: --gpu needs --device cuda (or auto with a GPU present)")
        record["gpu"] = gpu_run(args, dev, x)
    else:
        r = cpu_run(args, dev, x)
        record["cpu"] = r
        print(f"\n{r['rows']} images, batch 100, medians of {r['repeats']}:")
        for k, v in r["median_seconds"].items():
            if v:
                print(f"  {k:10s} {v:7.3f} s")
        print(f"  matmul rate {r['matmul_gflops']:.1f} GFLOP/s; ours {r['ours_gflops']:.1f} GFLOP/s "
              f"= {100 * r['ours_fraction_of_matmul_rate']:.0f}% (target >= 88%)")
        if "bf16_speedup_vs_fp32" in r:
            print(f"  ours in bf16: {r['bf16_speedup_vs_fp32']:.2f}x the speed of ours in fp32")
        if "speedup_vs_sklearn" in r:
            print(f"  ours vs sklearn: {r['speedup_vs_sklearn']:.2f}x faster (target >= 2x)")
        if "speedup_vs_learnergy" in r:
            print(f"  ours vs learnergy: {r['speedup_vs_learnergy']:.2f}x faster (target >= 3x)")
        for k, v in r["notes"].items():
            print(f"  note: {v}")
    _bench.write_json(args.out, record)
    if args.headline and not args.quick and not args.gpu:
        from _common import machine_name, record_headline

        record_headline({"cd1_gemm_share_pct": round(100 * record["cpu"]["ours_fraction_of_matmul_rate"], 1)},
                        machine=machine_name())


if __name__ == "__main__":
    main()
