"""torch.profiler breakdown of the CD-1 step (784x500, batch 100, MNIST batches):
the share of each aten op in the step's self CPU time (CUDA time as well on a GPU).

    python benchmarks/profile_step.py --quick --threads 1
"""

from __future__ import annotations

import torch

import _bench


def main(argv=None):
    p = _bench.common_parser(__doc__.splitlines()[0], threads=True)
    p.add_argument("--steps", type=int, default=None,
                   help="profiled steps (default 200; quick 60; at most 580: 60,000 images, 20 warm-up batches of 100)")
    args = _bench.parse(p, argv)
    from torch.profiler import ProfilerActivity, profile

    from deepbelief.rbm import RBM
    from deepbelief.training import RBMTrainConfig, RBMTrainer

    dev = _bench.resolve(args.device)
    steps = args.steps or (60 if args.quick else 200)
    if not 1 <= steps <= 580:
        raise SystemExit(f"error: --steps must be between 1 and 580 (60,000 MNIST images in batches of 100, "
                         f"20 of them for warm-up), got {steps}")
    x = _bench.mnist_train(args.data_dir, (steps + 20) * 100, dev)
    gen = torch.Generator(device=dev).manual_seed(args.seed)
    trainer = RBMTrainer(RBM(784, 500, generator=gen), RBMTrainConfig(), gen)
    for i in range(20):  # warm-up
        trainer.step(x[i * 100 : (i + 1) * 100], 0.1, 0.5)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=acts) as prof:
        for i in range(20, 20 + steps):
            trainer.step(x[i * 100 : (i + 1) * 100], 0.1, 0.5)
        _bench.sync(dev)
    ev = prof.key_averages()
    key = "self_device_time_total" if dev.type == "cuda" else "self_cpu_time_total"
    total = sum(getattr(e, key) for e in ev) or 1
    rows = sorted(({"op": e.key, "calls": e.count, "share": getattr(e, key) / total,
                    "us_per_step": getattr(e, key) / steps} for e in ev), key=lambda r: -r["share"])
    mm = sum(r["share"] for r in rows if r["op"] in ("aten::mm", "aten::addmm_", "aten::addmm"))
    print(f"{steps} steps, {total / steps:.0f} us of profiled {key} per step (threads {torch.get_num_threads()}); "
          "share per op:")
    for r in rows[:15]:
        print(f"  {r['op']:28s} {100 * r['share']:5.1f}%  {r['us_per_step']:7.1f} us/step  ({r['calls']} calls)")
    print(f"matrix products: {100 * mm:.1f}% of the step")
    _bench.write_json(args.out, {"benchmark": "profile_step", "machine": _bench.machine_info(dev), "steps": steps,
                                 "time_key": key, "us_per_step": total / steps, "threads": torch.get_num_threads(),
                                 "matmul_share": mm, "ops": rows[:30]})


if __name__ == "__main__":
    main()
