"""Gaussian-Bernoulli RBMs on natural image patches: learned vs fixed visible variances.

Lecture 14d / Cho, Ilin & Raiko (2011). Data: 8x8 grey patches of scikit-learn's two
sample photographs (data.load_patches_dataset), each patch's mean removed, then ZCA
whitened (transforms.Whiten, eps = 0.1 of the mean eigenvalue). Two RBMs with the same
seed and budget, CD-1 with sampled visibles, sparsity target 0.05:

  - learned per-pixel variances (log sigma^2 in [-4, 2], variance learning rate x 0.1);
  - fixed unit variances.

Reports: test reconstruction error (squared error per patch in the whitened space,
mean-field reconstruction), the learned variances (min / median / max), the test
log-likelihood per patch by AIS over the hidden units (deepbelief.ais, if available;
densities are in the whitened, row-centred space), and writes the input-space filters
(A W / sigma^2) as PNGs to docs/.

    python benchmarks/realvalued_patches.py --quick          # ~1 minute on a laptop CPU
    python benchmarks/realvalued_patches.py --device cuda --out results.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

from deepbelief.data import load_patches_dataset  # noqa: E402
from deepbelief.errors import resolve_device  # noqa: E402
from deepbelief.io import atomic_write_bytes  # noqa: E402
from deepbelief.plotting import save_tiles  # noqa: E402
from _common import machine_info  # noqa: E402
from deepbelief.rbm import RBM, batched  # noqa: E402
from deepbelief.training import RBMTrainConfig, make_generator, train_rbm  # noqa: E402
from deepbelief.transforms import Whiten  # noqa: E402
from deepbelief.units import Gaussian  # noqa: E402


def machine(dev) -> dict:
    return machine_info(str(dev))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None, help="unused: the patches ship with scikit-learn")
    p.add_argument("--quick", action="store_true", help="small run to check the script (about a minute on CPU)")
    p.add_argument("--out", default=None, help="write all figures as JSON here")
    p.add_argument("--epochs", type=int, default=None, help="CD epochs (default 30, quick 3)")
    p.add_argument("--hidden", type=int, default=100)
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--n-train", type=int, default=None, help="training patches (default 40000, quick 5000)")
    p.add_argument("--ais-runs", type=int, default=None, help="AIS runs (default 100, quick 20)")
    p.add_argument("--ais-betas", type=int, default=None, help="AIS temperatures (default 10000, quick 500)")
    p.add_argument("--png-dir", default=str(ROOT / "docs"), help="where the filter PNGs go")
    a = p.parse_args(argv)
    dev = resolve_device(a.device)
    epochs = a.epochs or (3 if a.quick else 30)
    n_train = a.n_train or (5000 if a.quick else 40_000)
    ais_runs = a.ais_runs or (20 if a.quick else 100)
    ais_betas = a.ais_betas or (500 if a.quick else 10_000)

    t_all = time.perf_counter()
    ds = load_patches_dataset(8, n_train=n_train, n_test=2000 if a.quick else 10_000, seed=a.seed)
    tf = Whiten(method="zca", eps=0.1, row_center=True).fit(ds.x_train)
    x_tr = tf(ds.x_train).float().to(dev)
    x_te = tf(ds.x_test).float().to(dev)
    cfg = RBMTrainConfig(epochs=epochs, batch_size=100, lr=a.lr, weight_decay=1e-4, sparsity_target=0.05,
                         sparsity_cost=0.5, monitor_size=1000)
    out = {"machine": machine(dev), "config": {"epochs": epochs, "n_train": n_train, "hidden": a.hidden,
                                               "lr": a.lr, "ais_runs": ais_runs, "ais_betas": ais_betas,
                                               "transform": "row-centre + ZCA (eps 0.1)", "quick": a.quick},
           "models": {}}
    try:
        from deepbelief.ais import ais_log_partition, rbm_log_likelihood
    except ImportError:
        ais_log_partition = None
        out["ais"] = "AIS not available (deepbelief.ais missing)"
    # warm-up (thread pools, kernels) so that the first model's time is not inflated
    train_rbm(RBM(Gaussian(64), 16, generator=make_generator(0, dev)), x_tr[:1000],
              RBMTrainConfig(epochs=1, batch_size=100, monitor_size=100), generator=make_generator(0, dev))
    for name, learn in (("learned_var", True), ("fixed_var", False)):
        gen = make_generator(a.seed, dev)
        rbm = RBM(Gaussian(64, learn_var=learn), a.hidden, generator=gen)
        t0 = time.perf_counter()
        hist = train_rbm(rbm, x_tr, cfg, generator=gen)
        train_s = time.perf_counter() - t0
        with torch.no_grad():
            recon = float(batched(lambda v: ((v - rbm.reconstruct(v)) ** 2).sum(-1), x_te).mean())
            var = torch.exp(rbm.visible.log_var).cpu()
            w = (rbm.W * rbm.visible.inv_var().unsqueeze(1)).T.cpu().double() @ tf.linear_part().T
        res = {"train_seconds": round(train_s, 2), "test_recon_error_per_patch": recon,
               "data_variance_per_patch": float(x_te.var(0).sum()),
               "variance_min": float(var.min()), "variance_median": float(var.median()),
               "variance_max": float(var.max()),
               "recon_per_epoch": [round(e["recon_error"], 4) for e in hist.epochs]}
        png = Path(a.png_dir) / f"patches_filters_{name}{'_quick' if a.quick else ''}.png"
        save_tiles(png, w, (8, 8), scale=4)
        # the same filters in the whitened space the RBM sees (W / sigma^2), the usual display
        save_tiles(png.with_name(png.stem + "_whitened.png"), (rbm.W * rbm.visible.inv_var().unsqueeze(1)).T.cpu(),
                   (8, 8), scale=4)
        res["filters_png"] = str(png.relative_to(ROOT) if png.is_relative_to(ROOT) else png)
        if ais_log_partition is not None:
            t0 = time.perf_counter()
            r = ais_log_partition(rbm, n_runs=ais_runs, betas=ais_betas, base_data=x_tr[:5000],
                                  over="hidden", generator=make_generator(a.seed + 1, dev))
            res.update(log_z=r.log_z, log_z_low=r.log_z_low, log_z_high=r.log_z_high, ais_ess=r.ess,
                       ais_seconds=round(time.perf_counter() - t0, 2),
                       test_loglik_per_patch=rbm_log_likelihood(rbm, x_te, r),
                       train_loglik_per_patch=rbm_log_likelihood(rbm, x_tr[:10_000], r))
        out["models"][name] = res
        print(f"{name}: recon {recon:.3f} (data variance {res['data_variance_per_patch']:.1f}) variances "
              f"{res['variance_min']:.3f}/{res['variance_median']:.3f}/{res['variance_max']:.3f} "
              + (f"test log-lik {res['test_loglik_per_patch']:.2f} nats/patch (log Z in "
                 f"[{res['log_z_low']:.2f}, {res['log_z_high']:.2f}]) " if "log_z" in res else "")
              + f"train {train_s:.1f}s -> {res['filters_png']}", flush=True)
    out["total_seconds"] = round(time.perf_counter() - t_all, 2)
    print(f"total {out['total_seconds']}s")
    if a.out:
        atomic_write_bytes(a.out, json.dumps(out, indent=2).encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
