"""CD-1's two statistics products into W's velocity: two products of depth 100 or one of depth 200 (A/B).

``cd_fast.binary_cd_step`` writes W's velocity with two ``addmm_`` calls, one per phase
(``vel = m vel - lr/b vn^T pn``, then ``vel += lr/b v0^T p0``), so the 784x500 velocity is read
and written twice per step. The candidate stacks the phases (``V = [v0; vn]``, ``H = [p0; -pn]``)
and makes one product of depth 200: one pass over the velocity and a deeper, more efficient
GEMM, for the price of copying the data batch into ``V``. The reference is the benchmark's
own pair of plain products (``cd_throughput.matmul_epoch``). Blocks of 600 steps, the arms'
order rotating between repeats; medians in microseconds per step.

    python benchmarks/fused_stats_ab.py --threads 2 --out fused_stats.json   # about 15 s
"""

from __future__ import annotations

import statistics
import time

import torch

import _bench

B, NV, NH = 100, 784, 500


def main(argv=None):
    p = _bench.common_parser(__doc__.splitlines()[0], threads=True)
    p.add_argument("--repeats", type=int, default=7, help="blocks per arm (default 7)")
    p.add_argument("--steps", type=int, default=600, help="steps per block (default 600, one epoch)")
    args = _bench.parse(p, argv)
    dev = _bench.resolve(args.device)
    g = torch.Generator(device=dev).manual_seed(args.seed)
    vel = torch.randn(NV, NH, generator=g, device=dev) * 0.01
    v0 = (torch.rand(B, NV, generator=g, device=dev) < 0.2).float()
    vn = torch.rand(B, NV, generator=g, device=dev)
    p0, pn = torch.rand(B, NH, generator=g, device=dev), torch.rand(B, NH, generator=g, device=dev)
    V, H = torch.empty(2 * B, NV, device=dev), torch.empty(2 * B, NH, device=dev)
    V[B:], H[:B], H[B:] = vn, p0, -pn

    def two():
        vel.addmm_(vn.T, pn, beta=0.9, alpha=-1e-3)
        vel.addmm_(v0.T, p0, alpha=1e-3)

    def fused():
        V[:B].copy_(v0)
        vel.addmm_(V.T, H, beta=0.9, alpha=1e-3)

    def reference():
        torch.mm(v0.T, p0, out=vel)
        vel.addmm_(vn.T, pn)

    arms = {"two_depth100": two, "one_depth200": fused, "reference_pair": reference}
    us = {k: [] for k in arms}
    order = list(arms)
    for rep in range(args.repeats):
        for name in order[rep % 3:] + order[: rep % 3]:
            fn = arms[name]
            for _ in range(20):
                fn()
            _bench.sync(dev)
            t = time.perf_counter()
            for _ in range(args.steps):
                fn()
            _bench.sync(dev)
            us[name].append(1e6 * (time.perf_counter() - t) / args.steps)
    med = {k: statistics.median(v) for k, v in us.items()}
    for k, v in med.items():
        print(f"{k:15s} {v:7.1f} us per step")
    print(f"one product of depth 200 against two of depth 100: {med['two_depth100'] / med['one_depth200']:.3f}x")
    _bench.write_json(args.out, {"benchmark": "fused_stats_ab", "machine": _bench.machine_info(dev),
                                 "steps": args.steps, "us_per_step": us, "median_us_per_step": med})


if __name__ == "__main__":
    main()
