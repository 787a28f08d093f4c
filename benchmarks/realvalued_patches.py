"""Gaussian-Bernoulli RBMs on natural image patches: learned vs fixed visible variances.

Lecture 14d / Cho, Ilin & Raiko (2011) / Hinton's practical guide (2010). Data: 8x8 grey
patches of scikit-learn's two sample photographs (data.load_patches_dataset). Defaults,
and why (the measurements are in benchmarks/RESULTS.md, issue 5, and docs/3-units.md):

  - contrast selection: patches whose own standard deviation (grey levels in [0, 1]) is
    below ``--min-contrast 0.03`` are dropped, train and test alike (about 60% of the
    patches: sky, walls and background of the two photographs are flat to within JPEG
    noise; the median patch has std 0.009). The selection is the library's
    (``load_patches_dataset(min_contrast=...)``, ``deepbelief train --min-contrast``): it
    draws candidates until ``--n-train`` / ``--n-test`` patches have passed (runs recorded
    up to commit c90098a drew 100,000 / 25,000 and kept the ~39% that passed, so their
    patches differ, not their distribution). Kept, they make the whitened data a scale
    mixture (per-pixel kurtosis ~14) that an RBM -- a mixture of Gaussians with one shared
    diagonal covariance -- can only model with hidden units that each fire on one extreme
    whitened pixel: the "single-pixel spike" filters. ``--min-contrast 0`` keeps all.
  - each patch's own mean removed (row centring), then ZCA whitening with eps = 1.0 of
    the mean eigenvalue (``--whiten-eps``; about 0.1 of the top eigenvalue): eps = 0.1
    lifted the high-frequency, noise-dominated components to nearly unit variance and
    the filters looked like noise. The row-centred data have rank 63 (the constant
    direction is empty); not row-centring was measured worse for the RBM.
  - CD-1, 30 epochs, batch 100, momentum 0.5 -> 0.9, weight decay 1e-4, sparsity target
    0.05 with cost 0.5, and learning rate 0.01: Gaussian visibles want a rate one or two
    orders of magnitude below a binary RBM's (the guide, section 13.2). At 0.02 the
    learned-variance model fell to -120 nats/patch, below the independent Gaussian.
  - learned per-pixel variances (log sigma^2 in [-4, 2], variance learning rate x 0.1)
    vs fixed unit variances, the same seed, rate and budget.

Reports: test reconstruction error (squared error per patch in the whitened space,
mean-field reconstruction), the learned variances (min / median / max), the test
log-likelihood per patch by AIS over the hidden units (densities in the whitened,
row-centred space) and two reference points fitted to the same whitened training
patches: an independent (factorial) Gaussian -- exactly an RBM with W = 0, so a trained
RBM should beat it -- and a full-covariance Gaussian (covariance + e^-4 I, the smallest
variance the RBM may use: the row-centred data are rank 63). Filters go to docs/results/ as PNGs,
in pixel space: ``patches_filters_<model>.png`` is the generative ("colouring") view, the
mean change in the patch when the hidden unit turns on, W_j mapped back through the
inverse of the whitening; ``..._recognition.png`` the receptive field (the pixel weights
of the hidden unit's input, A W_j / sigma^2 with A the whitening matrix);
``..._whitened.png`` W_j / sigma^2 in the whitened space the RBM sees.

The learned-variance model from the command line (docs/3-units.md, "Natural image patches"):

    deepbelief train --dataset patches --min-contrast 0.03 --visible gaussian --hidden bernoulli \
        --transform zca --whiten-eps 1.0 --row-center --layers 100 --epochs 30 --batch-size 100 \
        --lr 0.01 --weight-decay 1e-4 --sparsity-target 0.05 --sparsity-cost 0.5 --finetune-epochs 0

    python benchmarks/realvalued_patches.py --quick          # seconds on a laptop CPU
    python benchmarks/realvalued_patches.py --device cuda --out results.json
"""

from __future__ import annotations

import argparse
import sys
import math
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

from deepbelief.data import load_patches_dataset  # noqa: E402
from deepbelief.errors import resolve_device  # noqa: E402
from deepbelief.plotting import save_tiles  # noqa: E402
from _common import machine_info, write_json  # noqa: E402
from deepbelief.rbm import RBM, batched  # noqa: E402
from deepbelief.training import RBMTrainConfig, make_generator, train_rbm  # noqa: E402
from deepbelief.transforms import Whiten  # noqa: E402
from deepbelief.units import Gaussian  # noqa: E402


def machine(dev) -> dict:
    return machine_info(str(dev))


def gaussian_baselines(x_tr: torch.Tensor, x_te: torch.Tensor) -> dict:
    """Test log-likelihood per patch (nats) of Gaussians fitted by maximum likelihood to the
    training rows: independent components (an RBM with W = 0) and a full covariance
    (+ e^-4 I, the smallest variance units.Gaussian allows, as the row-centred data are
    rank-deficient)."""
    mu, var = x_tr.mean(0), x_tr.var(0, unbiased=False)
    fact = (-0.5 * ((x_te - mu) ** 2 / var + torch.log(2 * math.pi * var))).sum(1).mean()
    xc = x_tr - mu
    cov = xc.T @ xc / len(x_tr) + math.exp(-4.0) * torch.eye(x_tr.shape[1], dtype=x_tr.dtype)
    full = torch.distributions.MultivariateNormal(mu, covariance_matrix=cov).log_prob(x_te).mean()
    return {"factorial_gaussian": float(fact), "full_cov_gaussian": float(full)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None, help="unused: the patches ship with scikit-learn")
    p.add_argument("--quick", action="store_true", help="small run to check the script (about a minute on CPU)")
    p.add_argument("--out", default=None, help="write all figures as JSON here")
    p.add_argument("--epochs", type=int, default=None, help="CD epochs (default 30, quick 3)")
    p.add_argument("--hidden", type=int, default=100)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--whiten-eps", type=float, default=1.0, help="ZCA eps, relative to the mean eigenvalue")
    p.add_argument("--min-contrast", type=float, default=0.03,
                   help="drop patches whose std (grey levels in [0, 1]) is below this; 0 keeps all")
    p.add_argument("--n-train", type=int, default=None,
                   help="training patches, after the contrast selection (default 40000, quick 5000)")
    p.add_argument("--n-test", type=int, default=None, help="test patches, likewise (default 10000, quick 2000)")
    p.add_argument("--ais-runs", type=int, default=None, help="AIS runs (default 100, quick 20)")
    p.add_argument("--ais-betas", type=int, default=None, help="AIS temperatures (default 10000, quick 500)")
    p.add_argument("--png-dir", default=str(ROOT / "docs" / "results"), help="where the filter PNGs go")
    p.add_argument("--png-suffix", default="", help="appended to the PNG names, e.g. _cpu")
    a = p.parse_args(argv)
    dev = resolve_device(a.device)
    epochs = a.epochs or (3 if a.quick else 30)
    n_train = a.n_train or (5000 if a.quick else 40_000)
    n_test = a.n_test or (2000 if a.quick else 10_000)
    ais_runs = a.ais_runs or (20 if a.quick else 100)
    ais_betas = a.ais_betas or (500 if a.quick else 10_000)

    t_all = time.perf_counter()
    ds = load_patches_dataset(8, n_train=n_train, n_test=n_test, seed=a.seed, min_contrast=a.min_contrast)
    raw_tr, raw_te = ds.x_train, ds.x_test
    tf = Whiten(method="zca", eps=a.whiten_eps, row_center=True).fit(raw_tr)
    x_tr = tf(raw_tr).float().to(dev)
    x_te = tf(raw_te).float().to(dev)
    baselines = gaussian_baselines(tf(raw_tr).double(), tf(raw_te).double())
    print(f"{len(raw_tr)} training / {len(raw_te)} test patches with std > {a.min_contrast}; test log-lik of the references: independent Gaussian "
          f"{baselines['factorial_gaussian']:.2f}, full-covariance Gaussian {baselines['full_cov_gaussian']:.2f} "
          "nats/patch", flush=True)
    cfg = RBMTrainConfig(epochs=epochs, batch_size=100, lr=a.lr, weight_decay=1e-4, sparsity_target=0.05,
                         sparsity_cost=0.5, monitor_size=1000)
    out = {"machine": machine(dev),
           "config": {"epochs": epochs, "min_contrast": a.min_contrast, "n_train": len(raw_tr), "n_test": len(raw_te),
                      "hidden": a.hidden, "lr": a.lr, "weight_decay": 1e-4, "sparsity_target": 0.05,
                      "sparsity_cost": 0.5, "method": "CD-1", "ais_runs": ais_runs, "ais_betas": ais_betas,
                      "transform": f"row-centre + ZCA (eps {a.whiten_eps} of the mean eigenvalue)",
                      "quick": a.quick},
           "baselines_test_loglik_per_patch": baselines, "models": {}}
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
            A = tf.linear_part()  # (64, 64): x' = (x - .) @ A
            w_white = (rbm.W * rbm.visible.inv_var().unsqueeze(1)).T.cpu().double()
            w_recog = w_white @ A.T  # hidden input = (x - .) @ A @ (W / sigma^2): pixel weights
            w_gen = rbm.W.T.cpu().double() @ torch.linalg.pinv(A)  # mean change of x when h_j turns on
        res = {"train_seconds": round(train_s, 2), "test_recon_error_per_patch": recon,
               "data_variance_per_patch": float(x_te.var(0).sum()),
               "variance_min": float(var.min()), "variance_median": float(var.median()),
               "variance_max": float(var.max()),
               "recon_per_epoch": [round(e["recon_error"], 4) for e in hist.epochs]}
        png = Path(a.png_dir) / f"patches_filters_{name}{'_quick' if a.quick else ''}{a.png_suffix}.png"
        save_tiles(png, w_gen, (8, 8), scale=4)
        save_tiles(png.with_name(png.stem + "_recognition.png"), w_recog, (8, 8), scale=4)
        save_tiles(png.with_name(png.stem + "_whitened.png"), w_white, (8, 8), scale=4)
        res["filters_png"] = str(png.relative_to(ROOT) if png.is_relative_to(ROOT) else png)
        if ais_log_partition is not None:
            t0 = time.perf_counter()
            r = ais_log_partition(rbm, n_runs=ais_runs, betas=ais_betas, base_data=x_tr[:5000],
                                  over="hidden", generator=make_generator(a.seed + 1, dev))
            res.update(log_z=r.log_z, log_z_low=r.log_z_low, log_z_high=r.log_z_high, ais_ess=r.ess,
                       ais_seconds=round(time.perf_counter() - t0, 2),
                       test_loglik_per_patch=rbm_log_likelihood(rbm, x_te, r),
                       train_loglik_per_patch=rbm_log_likelihood(rbm, x_tr[:10_000], r))
            res["test_loglik_minus_factorial_gaussian"] = res["test_loglik_per_patch"] - baselines["factorial_gaussian"]
        out["models"][name] = res
        print(f"{name}: recon {recon:.3f} (data variance {res['data_variance_per_patch']:.1f}) variances "
              f"{res['variance_min']:.3f}/{res['variance_median']:.3f}/{res['variance_max']:.3f} "
              + (f"test log-lik {res['test_loglik_per_patch']:.2f} nats/patch (log Z in "
                 f"[{res['log_z_low']:.2f}, {res['log_z_high']:.2f}]; "
                 f"{res['test_loglik_minus_factorial_gaussian']:+.2f} vs the independent Gaussian) "
                 if "log_z" in res else "")
              + f"train {train_s:.1f}s -> {res['filters_png']}", flush=True)
    out["total_seconds"] = round(time.perf_counter() - t_all, 2)
    print(f"total {out['total_seconds']}s")
    write_json(a.out, out)  # atomic
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
