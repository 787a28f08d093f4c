"""The fused momentum-SGD fine-tuning step against the unfused one, in one process (A/B).

``FastBackprop.step(..., sgd=opt)`` accumulates each weight's gradient product straight into
its momentum buffer (``addmm`` with beta = momentum) and updates the weight in place;
the unfused step writes the gradient into ``.grad`` and then calls ``opt.step()`` (torch's
foreach SGD: two more passes over every buffer and one over the gradients). Both arms train
their own 784-500-500-2000-10 sigmoid net on the same batches, in interleaved blocks whose
order alternates, so the machine's drift (large on a shared 2-core CPU: the whole-epoch
benchmark's repeats move by 15%) falls on both; the figure is the paired difference.

    python benchmarks/fused_sgd_ab.py --out fused_ab.json           # about 30 s on 2 CPU cores
"""

from __future__ import annotations

import statistics
import time

import torch

import _bench

SIZES, N_CLASSES, BATCH = [784, 500, 500, 2000], 10, 100


def main(argv=None):
    p = _bench.common_parser(__doc__.splitlines()[0], threads=True)
    p.add_argument("--blocks", type=int, default=20, help="blocks per arm (default 20)")
    p.add_argument("--steps", type=int, default=60, help="steps per block (default 60)")
    args = _bench.parse(p, argv)
    dev = _bench.resolve(args.device)
    from deepbelief.backprop import FastBackprop
    from deepbelief.finetune import FinetuneConfig, _sgd, random_classifier

    g = torch.Generator(device=dev).manual_seed(args.seed)
    n = args.steps * BATCH
    x = torch.rand(n, SIZES[0], generator=g, device=dev)
    y = torch.randint(0, N_CLASSES, (n,), generator=g, device=dev)
    arms = {}
    for name in ("unfused", "fused"):
        net = random_classifier(SIZES, N_CLASSES, activation="sigmoid",
                                generator=torch.Generator(device=dev).manual_seed(args.seed), device=dev)
        arms[name] = (FastBackprop(net), _sgd(list(net.parameters()), 0.1, FinetuneConfig(momentum=0.9)))
    loss = torch.zeros((), device=dev)

    def block(name: str, steps: int) -> float:
        fast, opt = arms[name]
        _bench.sync(dev)
        t = time.perf_counter()
        for s in range(steps):
            xb, yb = x[s * BATCH : (s + 1) * BATCH], y[s * BATCH : (s + 1) * BATCH]
            if name == "fused":
                fast.step(xb, yb, None, loss, sgd=opt)
            else:
                fast.step(xb, yb, None, loss)
                opt.step()
        _bench.sync(dev)
        return 1e3 * (time.perf_counter() - t) / steps

    for name in arms:  # warm-up
        block(name, min(10, args.steps))
    ms = {name: [] for name in arms}
    for r in range(args.blocks):
        for name in ("unfused", "fused") if r % 2 == 0 else ("fused", "unfused"):
            ms[name].append(block(name, args.steps))
    diff = [a - b for a, b in zip(ms["unfused"], ms["fused"])]
    med = {k: statistics.median(v) for k, v in ms.items()}
    print(f"ms per step, medians of {args.blocks} blocks of {args.steps}: unfused {med['unfused']:.3f}, "
          f"fused {med['fused']:.3f}; paired difference {statistics.median(diff):.3f} ms "
          f"({100 * statistics.median(diff) / med['unfused']:.1f}%), fused faster in {sum(d > 0 for d in diff)} "
          f"of {len(diff)} pairs")
    _bench.write_json(args.out, {"benchmark": "fused_sgd_ab", "machine": _bench.machine_info(dev),
                                 "net": SIZES + [N_CLASSES], "batch_size": BATCH, "ms_per_step": ms,
                                 "median_ms_per_step": med, "paired_difference_ms": diff,
                                 "median_paired_difference_ms": statistics.median(diff)})


if __name__ == "__main__":
    main()
