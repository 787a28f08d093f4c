"""Where the time of a CD-1 step goes: the plain update rule against our fused step.

Variants, timed alternately in one process on the same MNIST batches (784x500, batch 100):
  matmul   the five matrix products of a CD-1 batch alone (the floor);
  plain    the textbook loop: free-energy gradients of both phases as separate tensors
           (``RBM.free_energy_grad``), per-parameter momentum updates, torch.bernoulli;
  fused    ``training.RBMTrainer.step``: W statistics by mm + addmm_ into a preallocated
           flat buffer, bias statistics from column sums already at hand, momentum as two
           kernels on one flat velocity buffer, uniforms compared with probabilities.
  draw_*   one 100x500 block of binary states per batch: torch.bernoulli, (u < p).to(float),
           and torch.lt(u, p, out=u) (what units.Bernoulli.sample does).

    python benchmarks/step_ablation.py --quick
"""

from __future__ import annotations

import torch

import _bench
from _bench import median, timed

N_VIS, N_HID, B = 784, 500, 100


def plain_steps(rbm, batches, gen, lr=0.1, mom=0.5, wd=2e-4):
    params = dict(rbm.named_parameters())
    vel = {n: torch.zeros_like(p) for n, p in params.items()}
    with torch.no_grad():
        for v0 in batches:
            x0 = rbm.hidden_input(v0)
            h = torch.bernoulli(rbm.hidden.mean(x0), generator=gen)
            vn = rbm.mean_visible(h)
            pos, neg = rbm.free_energy_grad(v0, x0), rbm.free_energy_grad(vn)
            for n, p in params.items():
                g = (neg[n] - pos[n]) / B
                if n == "W":
                    g = g - wd * p
                vel[n] = mom * vel[n] + lr * g
                p.add_(vel[n])


def main(argv=None):
    p = _bench.common_parser(__doc__.splitlines()[0], threads=True)
    p.add_argument("--rows", type=int, default=None, help="rows per timing (default 60000; quick 6000)")
    p.add_argument("--repeats", type=int, default=None, help="alternating repeats (default 5; quick 3)")
    args = _bench.parse(p, argv)
    from deepbelief.rbm import RBM
    from deepbelief.training import RBMTrainConfig, RBMTrainer

    dev = _bench.resolve(args.device)
    x = _bench.mnist_train(args.data_dir, args.rows or (6000 if args.quick else None), dev)
    batches = [x[i : i + B] for i in range(0, x.shape[0] - B + 1, B)]
    gen = torch.Generator(device=dev).manual_seed(args.seed)
    rbm_p, rbm_f = RBM(N_VIS, N_HID, generator=gen), RBM(N_VIS, N_HID, generator=gen)
    trainer = RBMTrainer(rbm_f, RBMTrainConfig(batch_size=B), gen)
    W = rbm_p.W.detach().clone()
    h = torch.rand(B, N_HID, generator=gen, device=dev)
    a, r, s = (torch.empty(B, N_HID, device=dev), torch.empty(B, N_VIS, device=dev),
               torch.empty(N_VIS, N_HID, device=dev))

    def matmul():
        for v in batches:
            torch.mm(v, W, out=a); torch.mm(h, W.T, out=r); torch.mm(r, W, out=a)
            torch.mm(v.T, h, out=s); s.addmm_(r.T, a)

    def fused():
        for v in batches:
            trainer.step(v, 0.1, 0.5)

    # three ways to draw a 100x500 block of binary hidden states from probabilities
    pr = torch.rand(B, N_HID, generator=gen, device=dev)

    def draws(kind):
        def run():
            for _ in batches:
                if kind == "bernoulli":
                    torch.bernoulli(pr, generator=gen)
                elif kind == "compare_cast":
                    (torch.rand(pr.shape, generator=gen, device=dev) < pr).to(pr.dtype)
                else:  # compare into the uniforms' buffer (units.Bernoulli.sample)
                    u = torch.rand(pr.shape, generator=gen, device=dev)
                    torch.lt(u, pr, out=u)
        return run

    variants = {"matmul": matmul, "plain": lambda: plain_steps(rbm_p, batches, gen), "fused": fused,
                "draw_bernoulli": draws("bernoulli"), "draw_compare_cast": draws("compare_cast"),
                "draw_compare_inplace": draws("inplace")}
    for fn in variants.values():  # warm-up
        fn()
    times = {k: [] for k in variants}
    for rep in range(args.repeats or (3 if args.quick else 5)):
        for k, fn in variants.items():
            times[k].append(timed(fn, dev))
        print(f"repeat {rep + 1}: " + ", ".join(f"{k} {v[-1] / len(batches) * 1e3:.3f} ms/step" for k, v in times.items()))
    med = {k: median(v) / len(batches) * 1e3 for k, v in times.items()}
    res = {"ms_per_step_median": med, "seconds": times, "steps": len(batches),
           "fused_fraction_of_matmul": med["matmul"] / med["fused"],
           "plain_fraction_of_matmul": med["matmul"] / med["plain"], "fused_speedup_over_plain": med["plain"] / med["fused"]}
    print("medians (ms/step): " + ", ".join(f"{k} {v:.3f}" for k, v in med.items()))
    print(f"fused = {100 * res['fused_fraction_of_matmul']:.0f}% of the matmul floor, plain = "
          f"{100 * res['plain_fraction_of_matmul']:.0f}%; fused is {res['fused_speedup_over_plain']:.2f}x faster than plain")
    _bench.write_json(args.out, {"benchmark": "step_ablation", "machine": _bench.machine_info(dev), "quick": args.quick,
                                 "results": res})


if __name__ == "__main__":
    main()
