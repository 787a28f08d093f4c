"""AIS at the paper's settings on a 784x500 RBM: 100 runs x 14,500 temperatures, side by side
with the same matrix products alone (two per temperature: a W and o W^T, 100 x 784 x 500).

Target (issue 14): <= 90 s on the 2-core CPU. The RBM's weights are N(0, 0.05^2) with
biases from MNIST's base rates; AIS's cost does not depend on the values.

    python benchmarks/ais_speed.py --out benchmarks/results/ais_speed_cpu.json [--headline]
    python benchmarks/ais_speed.py --quick        # 1,450 temperatures
"""

from __future__ import annotations

import time

import torch

import _bench


def matmuls_alone(n_runs: int, K: int, dev) -> float:
    g = torch.Generator(device=dev).manual_seed(0)
    W = torch.randn(784, 500, generator=g, device=dev)
    a, o = torch.rand(n_runs, 784, generator=g, device=dev), torch.rand(n_runs, 500, generator=g, device=dev)
    x, v = torch.empty(n_runs, 500, device=dev), torch.empty(n_runs, 784, device=dev)
    wt = W.T.contiguous()
    t0 = time.perf_counter()
    for _ in range(K):
        torch.mm(a, W, out=x)
        torch.mm(o, wt, out=v)
    _bench.sync(dev)
    return time.perf_counter() - t0


def main(argv=None):
    from deepbelief.ais import ais_log_partition
    from deepbelief.rbm import RBM

    p = _bench.common_parser(__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--float64", action="store_true", help="also time the all-float64 path")
    p.add_argument("--headline", action="store_true", help="record ais_paper_schedule_seconds in headline.json")
    args = p.parse_args(argv)
    dev = _bench.resolve(args.device)
    K = 1450 if args.quick else 14_500
    x = _bench.mnist_train(args.data_dir, 10_000, dev)
    v = (x > 0.5).float()
    rbm = RBM(784, 500, weight_std=0.05, generator=torch.Generator(device=dev).manual_seed(0)).to(dev)
    rbm.init_visible_bias_(v)
    record = {"benchmark": "ais_speed", "machine": _bench.machine_info(dev), "runs": args.runs, "temperatures": K}
    record["matmul_seconds"] = matmuls_alone(args.runs, K, dev)
    t0 = time.perf_counter()
    res = ais_log_partition(rbm, n_runs=args.runs, betas=K, base_data=v, generator=torch.Generator(device=dev).manual_seed(1))
    record["mixed_seconds"] = time.perf_counter() - t0
    record["mixed_log_z"] = res.log_z
    print(f"{args.runs} runs x {K} temperatures: mixed precision {record['mixed_seconds']:.1f}s "
          f"(the products alone {record['matmul_seconds']:.1f}s), log Z {res.log_z:.2f}")
    if args.float64:
        t0 = time.perf_counter()
        r64 = ais_log_partition(rbm, n_runs=args.runs, betas=K, base_data=v, mixed=False,
                                generator=torch.Generator(device=dev).manual_seed(1))
        record["float64_seconds"] = time.perf_counter() - t0
        record["float64_log_z"] = r64.log_z
        print(f"  all float64: {record['float64_seconds']:.1f}s, log Z {r64.log_z:.2f}")
    _bench.write_json(args.out, record)
    if args.headline and not args.quick:
        from _common import machine_name, record_headline

        record_headline({"ais_paper_schedule_seconds": round(record["mixed_seconds"], 1)}, machine=machine_name())


if __name__ == "__main__":
    main()
