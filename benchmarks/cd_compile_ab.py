"""CD-1 step eager against ``torch.compile`` (A/B), beside the bare products.

Four arms, 600 steps each (one MNIST epoch of batch 100 on a 784x500 binary RBM), the
arms' order rotating between repeats:
  products     the five products of a CD-1 step alone (``cd_throughput.matmul_epoch``);
  ours         ``RBMTrainer.step``, our fast binary step as shipped;
  plain        the same CD-1 update (momentum, weight decay) written as plain tensor code
               with ``torch.rand_like`` (no generator argument), eager;
  compiled     ``plain`` under ``torch.compile`` (inductor; on the CPU it needs a C++
               compiler; compiled during the warm-up, which is not timed).
Our step itself cannot be compiled whole: ``torch.rand(..., generator=gen)`` breaks the
graph, and dynamo then runs the step eagerly. ``plain`` leaves the generator out so that
inductor draws the numbers with its own generator inside the compiled kernels; its updates
therefore differ from ours, and only its speed is compared. Medians in seconds per epoch,
each arm's share of the products' rate, and dynamo's count of graph breaks.

    python benchmarks/cd_compile_ab.py --threads 2 --out cd_compile.json   # about 1.5 min
"""

from __future__ import annotations

import time

import torch

import _bench
from _bench import median, timed
from cd_throughput import matmul_epoch

from deepbelief.cli.args import positive_int

B, NV, NH = 100, 784, 500


def main(argv=None):
    p = _bench.common_parser(__doc__.splitlines()[0], threads=True)
    p.add_argument("--repeats", type=positive_int("--repeats", "epochs per arm"), default=3,
                   help="epochs per arm (default 3)")
    args = _bench.parse(p, argv)
    from deepbelief.rbm import RBM
    from deepbelief.training import RBMTrainConfig, RBMTrainer

    dev = _bench.resolve(args.device)
    x = _bench.mnist_train(args.data_dir, 60_000, dev)
    n = x.shape[0] // B

    gen = torch.Generator(device=dev).manual_seed(args.seed)
    ours = RBMTrainer(RBM(NV, NH, generator=gen), RBMTrainConfig(batch_size=B, lr=0.1), gen)
    wd = ours.cfg.weight_decay

    def state():
        W = torch.randn(NV, NH, generator=gen, device=dev) * 0.01
        return [W, torch.zeros(NV, device=dev), torch.zeros(NH, device=dev), torch.zeros_like(W),
                torch.zeros(NV, device=dev), torch.zeros(NH, device=dev)]

    @torch.no_grad()
    def plain(v0, lr, mom, W, vb, hb, vel, vvb, vhb):
        p0 = torch.sigmoid(torch.addmm(hb, v0, W))
        h = (torch.rand_like(p0) < p0).to(p0.dtype)
        pv = torch.sigmoid(torch.addmm(vb, h, W.T))
        pn = torch.sigmoid(torch.addmm(hb, pv, W))
        vel.mul_(mom).addmm_(v0.T, p0, alpha=lr / B).addmm_(pv.T, pn, alpha=-lr / B).add_(W, alpha=-lr * wd)
        vvb.mul_(mom).add_(v0.sum(0) - pv.sum(0), alpha=lr / B)
        vhb.mul_(mom).add_(p0.sum(0) - pn.sum(0), alpha=lr / B)
        W.add_(vel)
        vb.add_(vvb)
        hb.add_(vhb)

    from torch._dynamo.utils import counters

    compiled = torch.compile(plain)
    s_plain, s_comp = state(), state()
    t0 = time.perf_counter()
    for i in range(20):  # warm-up, and the compilation of the compiled arm
        ours.step(x[i * B : (i + 1) * B], 0.1, 0.5)
        plain(x[i * B : (i + 1) * B], 0.1, 0.5, *s_plain)
        compiled(x[i * B : (i + 1) * B], 0.1, 0.5, *s_comp)
    _bench.sync(dev)
    warm = time.perf_counter() - t0
    breaks = sum(counters["graph_break"].values())

    def epoch(fn):
        def run():
            for i in range(n):
                fn(x[i * B : (i + 1) * B], 0.1, 0.5)
        return run

    arms = {"products": lambda: matmul_epoch(x, B, dev), "ours": lambda: timed(epoch(ours.step), dev),
            "plain": lambda: timed(epoch(lambda v, lr, m: plain(v, lr, m, *s_plain)), dev),
            "compiled": lambda: timed(epoch(lambda v, lr, m: compiled(v, lr, m, *s_comp)), dev)}
    secs = {k: [] for k in arms}
    order = list(arms)
    for rep in range(args.repeats):
        for name in order[rep % len(order) :] + order[: rep % len(order)]:
            secs[name].append(arms[name]())
        print(f"repeat {rep + 1}/{args.repeats}: " + ", ".join(f"{k} {v[-1]:.3f}s" for k, v in secs.items()))
    med = {k: median(v) for k, v in secs.items()}
    share = {k: med["products"] / med[k] for k in ("ours", "plain", "compiled")}
    print(f"warm-up with compilation {warm:.1f} s, graph breaks {breaks}; medians: "
          + ", ".join(f"{k} {v:.3f}s" for k, v in med.items()))
    print("share of the products' rate: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in share.items()))
    _bench.write_json(args.out, {"benchmark": "cd_compile_ab", "machine": _bench.machine_info(dev),
                                 "repeats": args.repeats, "warmup_seconds": warm, "graph_breaks": breaks,
                                 "seconds": secs, "median_seconds": med, "share_of_products_rate": share})


if __name__ == "__main__":
    main()
