"""The PCD iterate against averages of the iterates (``RBMTrainConfig.average_decay``).

A 500-hidden RBM on binarised MNIST (Salakhutdinov & Murray's set-up, as mnist_loglik.py):
CD-1 (lr 0.1, momentum 0.5 -> 0.9, as mnist_loglik.py) for ``--cd-epochs``, then PCD-1 on
a schedule of ``--schedule`` epochs (lr annealed linearly to 1/100 of ``--lr``, momentum
0.5, 100 chains), stopped after ``--epochs`` of them. At ``--points`` evenly
spaced epochs the test log-likelihood (forward AIS) is measured for the iterate (the
parameters training goes on from, what PCD returns) and for each moving average of the
iterates, one per ``--decays`` value (deepbelief.averaging: the plain mean of the first
1/(1 - d) updates from the PCD start, then a <- d a + (1 - d) theta; runs before 2026-12-05's
warm-up started the moving average at the PCD start itself, which with d = 0.9999 still
weighed about 5% at PCD epoch 50). All averages ride along one training run, so the iterate is the same
for every row, and averaging never changes it (tests/test_averaging.py).

    python benchmarks/iterate_averaging.py --data-dir ../shared/data/mnist --out avg.json   # ~9 min on 2 CPU cores
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, parser, write_json  # noqa: E402

from deepbelief.ais import ais_log_partition, rbm_log_likelihood  # noqa: E402
from deepbelief.averaging import IterateAverage  # noqa: E402
from deepbelief.data import load_dataset  # noqa: E402
from deepbelief.errors import resolve_device  # noqa: E402
from deepbelief.rbm import RBM  # noqa: E402
from deepbelief.trainer import RBMTrainer  # noqa: E402
from deepbelief.training import RBMTrainConfig, make_generator, train_rbm  # noqa: E402


def main(argv=None) -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--hidden", type=int, default=500)
    p.add_argument("--cd-epochs", type=int, default=30)
    p.add_argument("--schedule", type=int, default=300, help="PCD epochs the learning-rate schedule spans")
    p.add_argument("--epochs", type=int, default=100, help="PCD epochs run (<= --schedule)")
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--decays", default="0.999,0.9999", help="comma-separated average_decay values")
    p.add_argument("--points", type=int, default=2, help="evaluations, evenly spaced over --epochs")
    p.add_argument("--ais-runs", type=int, default=100)
    p.add_argument("--ais-betas", type=int, default=14500)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.hidden, args.cd_epochs, args.schedule, args.epochs = 50, 1, 4, 2
        args.ais_runs, args.ais_betas = 20, 500
    if args.threads:
        torch.set_num_threads(args.threads)
    decays = [float(d) for d in args.decays.split(",") if d]
    dev = resolve_device(args.device)
    ds = load_dataset("mnist-binarized", data_dir=args.data_dir, download=False)
    x, xt = ds.x_train.to(dev), ds.x_test.to(dev)
    if args.quick:
        x, xt = x[:2000], xt[:1000]
    gen = make_generator(args.seed, dev)
    rbm = RBM(x.shape[1], args.hidden, generator=gen).to(dev)
    t0 = time.perf_counter()
    train_rbm(rbm, x, RBMTrainConfig(epochs=args.cd_epochs, batch_size=100, lr=0.1), generator=gen)
    cd_s = time.perf_counter() - t0
    cfg = RBMTrainConfig(epochs=args.schedule, batch_size=100, method="pcd", k=1, n_chains=100, lr=args.lr,
                         lr_final=args.lr / 100, momentum=0.5, final_momentum=0.5, init_visible_bias=False)
    tr = RBMTrainer(rbm, cfg, gen)
    averages = {d: IterateAverage(tr.params, d) for d in decays}
    base_step = tr.step

    def step(v0, lr, momentum):  # the trainer's update, then every average moves
        base_step(v0, lr, momentum)
        for a in averages.values():
            a.update_()

    tr.step = step
    every = max(1, args.epochs // max(1, args.points))
    rows, train_s = [], [0.0]

    class Done(Exception):
        pass

    def evaluate(tag: str, epoch: int) -> None:
        res = ais_log_partition(rbm, n_runs=args.ais_runs, betas=args.ais_betas, base_data=x, generator=gen)
        ll = rbm_log_likelihood(rbm, xt, res)
        down, up = res.uncertainty
        rows.append(dict(epoch=epoch, model=tag, test_loglik=ll, log_z=res.log_z, log_z_up=up, log_z_down=down,
                         ess=res.ess, train_seconds=train_s[0]))
        print(f"PCD epoch {epoch}: {tag:>16}: test log-lik {ll:8.2f} (log Z +{up:.2f}/-{down:.2f}, ESS "
              f"{res.ess:.1f} of {args.ais_runs})", flush=True)

    t_pcd = [time.perf_counter()]

    def on_epoch(epoch: int, metrics: dict) -> None:
        if (epoch + 1) % every and epoch + 1 < args.epochs:
            return
        train_s[0] += time.perf_counter() - t_pcd[0]
        evaluate("iterate", epoch + 1)
        for d, a in averages.items():
            with a.swapped():
                evaluate(f"average d={d:g}", epoch + 1)
        t_pcd[0] = time.perf_counter()
        if epoch + 1 >= args.epochs:
            raise Done

    try:
        tr.fit(x, callback=on_epoch)
    except Done:
        pass
    write_json(args.out, {"benchmark": "iterate_averaging", "machine": machine_info(str(dev)), "args": vars(args),
                          "cd_seconds": cd_s, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
