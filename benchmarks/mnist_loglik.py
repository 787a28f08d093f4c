"""Test log-likelihood of 500-hidden RBMs on binarised MNIST, and the 2-layer DBN bound.

Reproduces the set-up of Salakhutdinov & Murray (2008), "On the quantitative analysis of
deep belief networks": RBMs with 500 hidden units trained on the 60,000 stochastically
binarised MNIST training images (seed 0) with CD-k and with PCD, their partition
functions estimated by AIS (100 runs, 14,500 intermediate distributions by default),
the average log-probability of the 10,000 test images; then a second RBM trained on
samples of the first one's posterior Q(h | v) (a fresh draw in every mini-batch), and the
variational lower bound of the 2-layer DBN. The
paper: CD-1 -125.53, CD-3 -105.50, CD-25 -86.34 nats; DBN bound -85.97.

The second RBM starts as the transpose of the first (W2 = W1^T, biases swapped), where
the bound equals the RBM's log-likelihood exactly (Hinton, Osindero & Teh 2006); every
improvement of the bound is then due to the second layer.

    python benchmarks/mnist_loglik.py --quick                  # ~1 minute on a CPU
    python benchmarks/mnist_loglik.py --device cuda --out benchmarks/results/mnist_loglik_gpu.json
    python benchmarks/mnist_loglik.py --epochs 1000 --ais-runs 300 --layer2-epochs 60 --curve-points 2 \\
        --raise-test 500 --checkpoint-dir runs/ll --save-dir runs/ll --out ll.json --headline   # ~1.5 h on 2 CPU cores

Writes a JSON of every figure (``--out``) and the figure ``docs/results/mnist_loglik.png``
(log-likelihood against epochs and against the number of layers).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import zlib
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, field_values, machine_info, machine_name, parser, record_headline, write_json  # noqa: E402

from deepbelief.ais import ais_log_partition, rbm_log_likelihood, rbm_log_prob  # noqa: E402
from deepbelief.bound import dbn_lower_bound  # noqa: E402
from deepbelief.data import load_dataset  # noqa: E402
from deepbelief.errors import resolve_device  # noqa: E402
from deepbelief.io import save_model  # noqa: E402
from deepbelief.loglik import reliability_warnings  # noqa: E402
from deepbelief.rbm import RBM, batched  # noqa: E402
from deepbelief.stacking import transpose_into  # noqa: E402
from deepbelief.reverse_ais import raise_log_prob  # noqa: E402
from deepbelief.training import RBMTrainConfig, make_generator, train_rbm  # noqa: E402



#: the issue's level for the time-to-reach figure (Salakhutdinov & Murray's CD-25 row: -86.34)
REACH = -86.3


def resumed(results: dict, name: str) -> bool:
    """Whether model ``name`` or the CD model it started from was resumed from a checkpoint
    (its seconds then cover the resumed part only)."""
    m = results["models"][name]
    return bool(m.get("resumed") or (m.get("started_from") and results["models"][m["started_from"]].get("resumed")))


def drop_unsure(figures: dict, results: dict, best: str) -> dict:
    """The headline figures without those whose AIS estimate warns (``reliability_warnings``,
    e.g. an ESS below 10% of the runs), each dropped with the reason printed: at 14,500
    temperatures an ESS-15-of-500 estimate once read log Z 0.39 nats high (benchmarks/RESULTS.md,
    2026-12-05 seventh session)."""
    unsure = {"rbm500_loglik_ais_nats": results["models"][best].get("warnings", []),
              "dbn2_bound_nats": results.get("dbn", {}).get("warnings", [])}
    kept = dict(figures)
    for key, warns in unsure.items():
        if key in kept and warns:
            print(f"headline: {key} not recorded: {warns[0]}", flush=True)
            del kept[key]
    return kept


def minutes_to_reach(results: dict, name: str, level: float) -> float | None:
    """Training minutes of model ``name`` (with the CD model it started from; the curve's
    AIS runs not counted) at its first curve point, or its end, whose test log-likelihood
    is at least ``level``; None when none is, or when it was ``resumed``."""
    m = results["models"][name]
    if resumed(results, name):
        return None
    runs = [(0.0, m["curve"])]
    if m.get("started_from"):
        cd = results["models"][m["started_from"]]
        runs = [(0.0, cd["curve"]), (cd["train_seconds"], m["curve"][1:])]  # curve[0] is the CD model's end
    for offset, curve in runs:
        for point in curve:
            if point["test_loglik"] >= level:
                return (offset + point["train_seconds"]) / 60
    return None


def finished_key(args, name: str, cfg, n_ep: int) -> dict:
    """What a model's final figures depend on besides its checkpoint: a cached result
    (``<checkpoint-dir>/<name>.result.json``) is reused only when all of it matches."""
    return {"name": name, "epochs": n_ep, "config": _clean(dict(cfg.__dict__)), "seed": args.seed,
            "hidden": args.hidden, "train_size": args.train_size, "ais_runs": args.ais_runs,
            "ais_betas": args.ais_betas, "curve_points": args.curve_points, "curve_betas": args.curve_betas}


def load_finished(path: Path | None, key: dict, gen: torch.Generator):
    """The cached figures of a model whose training and final AIS an earlier run of the same
    command finished (None when there are none for ``key``). The run's generator is set to
    where that run's stood after the AIS, so what follows draws the numbers it drew: a run
    killed later (in the next model's training, say) and resumed makes the same figures
    without repeating the finished model's AIS (7.4 min at 500 x 50,000 on a 2-core CPU)."""
    if path is None or not path.exists():
        return None
    cached = json.loads(path.read_text())
    if cached.get("key") != json.loads(json.dumps(key)):
        print(f"  {path.name}: settings differ from this run's, so its figures are recomputed", flush=True)
        return None
    gen.set_state(torch.tensor(cached["generator_state"], dtype=torch.uint8))
    return cached["entry"]


def save_finished(path: Path | None, key: dict, entry: dict, gen: torch.Generator) -> None:
    if path is not None:
        write_json(str(path), {"key": key, "entry": _clean(entry), "generator_state": gen.get_state().tolist()})


def curve_generator(seed: int, name: str, epoch: int, dev) -> torch.Generator:
    """A curve point's AIS draws from a generator of its own, seeded by (run seed, model, epoch):
    measuring the curve does not move the training's random stream, so the trained model is the
    same whatever --curve-points says, and a resumed run's curve points are an unbroken run's.
    (Until 2026-12-05, ninth session, the curve drew from the training's generator.)"""
    return make_generator(zlib.crc32(f"{seed}/{name}/{epoch}".encode()), dev)


def parse_models(text: str) -> list[tuple[str, int]]:
    """'cd1,pcd1,cd25,fpcd1' -> [('cd', 1), ('pcd', 1), ('cd', 25), ('fpcd', 1)]."""
    out = []
    for tok in text.split(","):
        tok = tok.strip().lower()
        method = next((m for m in ("fpcd", "pcd", "cd") if tok.startswith(m)), None)
        if method is None or not tok[len(method):].isdigit():
            raise SystemExit(f"--models entries must look like cd1, cd25, pcd1 or fpcd1, got {tok!r}")
        out.append((method, int(tok[len(method):])))
    return out


TRAIN_DATA_NOTE = {"fixed": "", "fresh": "; training on a fresh binary draw of the intensities in every mini-batch",
                   "intensities": "; training on the grey-level intensities themselves"}


def main(argv=None) -> int:
    p = parser(__doc__)
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--models", default="cd1,pcd1", help="first-layer RBMs to train, e.g. cd1,cd25,pcd1")
    p.add_argument("--hidden", type=int, default=500)
    p.add_argument("--epochs", type=int, default=None, help="epochs of PCD models (default 150)")
    p.add_argument("--cd-epochs", type=int, default=None, help="epochs of CD models (default 30)")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=0.1, help="CD learning rate (momentum 0.5 -> 0.9)")
    p.add_argument("--pcd-lr", type=float, default=0.02, help="PCD learning rate, annealed linearly to ~0")
    p.add_argument("--pcd-momentum", type=float, default=0.5,
                   help="PCD momentum, kept all along (a pilot with lr 0.02 diverged after switching to 0.9)")
    p.add_argument("--pcd-from-cd", action=argparse.BooleanOptionalAction, default=True,
                   help="start PCD from the CD model trained before it in --models (as the paper raised k "
                        "during training); --no-pcd-from-cd trains PCD from scratch")
    p.add_argument("--weight-decay", type=float, default=2e-4)
    p.add_argument("--k-ramp", action="store_true",
                   help="CD-k models with k > 1 start at CD-1 and raise k linearly to k at the last epoch "
                        "(how Salakhutdinov & Murray 2008 trained CD-25)")
    p.add_argument("--cd-final-momentum", type=float, default=0.9,
                   help="CD momentum from epoch 5 on (0.5 before; default 0.9)")
    p.add_argument("--lr-final", type=float, default=None,
                   help="CD learning rate reached linearly at the last epoch (default: constant)")
    p.add_argument("--layer2", type=int, default=784,
                   help="hidden units of the second RBM (0: no DBN); 784 (the data's size) starts it as the "
                        "transpose of the first, where the bound equals the RBM's log-likelihood")
    p.add_argument("--layer3", type=int, default=0,
                   help="hidden units of an optional third RBM (0: none); the second RBM's input size (500) "
                        "starts it as the transpose of the second, where the 3-layer bound equals the 2-layer one")
    p.add_argument("--layer2-lr", type=float, default=0.005,
                   help="learning rate of the second RBM, annealed linearly to 1/100 of it (small: the "
                        "transposed start is already good, large noisy steps lower the bound)")
    p.add_argument("--layer2-data", choices=("sample", "resample"), default="resample",
                   help="what the upper RBMs train on: 'resample' (default) a fresh draw of Q(h | v) in every "
                        "mini-batch (RBMTrainConfig.sample_data on the probabilities: unbiased samples of the "
                        "aggregated posterior whose log-probability under the upper RBM the bound contains); "
                        "'sample' one draw per training image, fixed for all epochs (the runs before d593eb1: "
                        "the second RBM over-fits those draws and the bound falls)")
    p.add_argument("--layer2-epochs", type=int, default=None,
                   help="epochs of the second RBM (default 60); 0 with --layer2 784 trains nothing and reads the "
                        "bound at the transposed start, which equals the RBM's log-likelihood exactly: the "
                        "difference measures how far the two AIS estimates (log Z of each RBM) disagree")
    p.add_argument("--layer2-rbm", action="append", default=[], metavar="FIELD=VALUE",
                   help="set an RBMTrainConfig field of the second (and third) RBM, applied after it copies the "
                        "first's settings, e.g. --layer2-rbm average_decay=0 (repeatable)")
    p.add_argument("--rbm", action="append", default=[], metavar="FIELD=VALUE",
                   help="set an RBMTrainConfig field of every first-layer model, e.g. --rbm centering=true "
                        "--rbm method=pt --rbm pt_temperatures=10 (repeatable; applied last)")
    p.add_argument("--ais-runs", type=int, default=100)
    p.add_argument("--ais-betas", type=int, default=None, help="default: the paper's 14,500")
    p.add_argument("--curve-betas", type=int, default=5000, help="AIS temperatures for the per-epoch curve")
    p.add_argument("--curve-points", type=int, default=4, help="AIS evaluations during each training run")
    p.add_argument("--bound-samples", type=int, default=10)
    p.add_argument("--start-check", action=argparse.BooleanOptionalAction, default=True,
                   help="with a transposed second layer that trains: also estimate the bound at its start (one more "
                        "AIS), which equals the RBM's log-likelihood exactly, so the two AIS estimates' disagreement "
                        "and the layer's gain by one estimator are reported beside the bound")
    p.add_argument("--train-data", choices=("fixed", "fresh", "intensities"), default="fixed",
                   help="what the RBMs train on: 'fixed', the training images binarised once (seed 0, the "
                        "set every figure is measured on); 'fresh', a new binary draw of the training images' "
                        "intensities in every mini-batch (RBMTrainConfig.sample_data); 'intensities', the "
                        "grey levels themselves as the visible data (the expectation of the fresh draws: "
                        "the positive phase's p(h | v) and CD's chains start from them). The figures are "
                        "always on the fixed binarised sets")
    p.add_argument("--train-size", type=int, default=None, help="use the first N training images")
    p.add_argument("--checkpoint-dir", default=None,
                   help="checkpoint every RBM's training here (<model>.ckpt.safetensors); a rerun of the same "
                        "command resumes (its numbers then differ from an unbroken run's by sampling noise only); a "
                        "model whose training and final AIS finished leaves its figures in <model>.result.json, "
                        "which a rerun with the same settings reuses instead of repeating that AIS")
    p.add_argument("--save-dir", default=None, help="write every trained RBM here (<model>.safetensors)")
    p.add_argument("--raise-test", type=int, default=0,
                   help="reverse AIS (RAISE, the conservative estimate) of the best RBM on the first N test "
                        "images, with the forward AIS figure on the same images beside it (0: none)")
    p.add_argument("--headline", action="store_true",
                   help="record rbm500_loglik_ais_nats, rbm500_loglik_raise_nats, dbn2_bound_nats and "
                        "rbm500_minutes_to_86_3 (training minutes to the first curve point at or above -86.3 "
                        "nats; with --curve-betas 14500 only) in benchmarks/results/headline.json (500 hidden "
                        "units only)")
    p.add_argument("--headline-keys", default=None,
                   help="with --headline: record only these keys (comma list), e.g. rbm500_minutes_to_86_3 for a "
                        "short run that should not replace the best model's figures")
    p.add_argument("--figure", default=None,
                   help="PNG to write (default docs/results/mnist_loglik.png; none with --quick); '' for none")
    args = p.parse_args(argv)

    if args.figure is None:
        args.figure = "" if args.quick else str(ROOT / "docs" / "results" / "mnist_loglik.png")
    if args.quick:
        args.epochs = args.epochs or 2
        args.cd_epochs = args.cd_epochs or 2
        args.layer2_epochs = 1 if args.layer2_epochs is None else args.layer2_epochs
        args.train_size = args.train_size or 6000
        args.hidden = 100 if args.hidden == 500 else args.hidden
        args.ais_runs = min(args.ais_runs, 50)
        args.ais_betas = args.ais_betas or 1000
        args.curve_betas = min(args.curve_betas, 200)
        args.curve_points = min(args.curve_points, 2)
    epochs = args.epochs if args.epochs is not None else 150
    cd_epochs = args.cd_epochs if args.cd_epochs is not None else 30
    l2_epochs = args.layer2_epochs if args.layer2_epochs is not None else 60
    # the second layer's settings, checked before any training (a mistake would end a long run late)
    if l2_epochs < 0:
        raise SystemExit(f"--layer2-epochs must be >= 0, got {l2_epochs}")
    layer2_fields = field_values("--layer2-rbm", RBMTrainConfig, args.layer2_rbm)
    owned = sorted(set(layer2_fields) & {"epochs", "lr", "lr_final", "init_visible_bias", "sample_data"})
    if owned:
        raise SystemExit(f"--layer2-rbm cannot set {', '.join(owned)}: use --layer2-epochs / --layer2-lr (epochs, "
                         f"lr, lr_final = lr / 100) and --layer2-data (sample_data); the visible biases come from "
                         f"the start. Got {args.layer2_rbm}")
    if "sample_data" in field_values("--rbm", RBMTrainConfig, args.rbm):
        raise SystemExit(f"--rbm cannot set sample_data: use --train-data fresh (a new binary draw of the training "
                         f"images' intensities in every mini-batch) or fixed; got {args.rbm}")
    if args.layer2 and l2_epochs == 0 and (args.layer2 != 784 or args.layer3 not in (0, args.hidden)):
        raise SystemExit(f"--layer2-epochs 0 trains nothing, so it needs the transposed starts, where the bound is "
                         f"the RBM's: --layer2 784 and --layer3 0 or {args.hidden}; got --layer2 {args.layer2} "
                         f"--layer3 {args.layer3}")
    dev = resolve_device(args.device)
    started = time.perf_counter()

    ds = load_dataset("mnist-binarized", data_dir=args.data_dir, download=False)
    x_train = ds.x_train.to(dev)
    # the rows the RBMs train on: the fixed binary images, or the grey levels they were drawn from (fresh: a
    # new binary draw of them per mini-batch; intensities: used as they are)
    x_fit = x_train if args.train_data == "fixed" else \
        load_dataset("mnist", data_dir=args.data_dir, download=False).x_train.to(dev)
    if args.train_size:
        x_train, x_fit = x_train[: args.train_size], x_fit[: args.train_size]
    x_test = ds.x_test.to(dev)
    print(f"binarised MNIST: train {tuple(x_train.shape)}, test {tuple(x_test.shape)}, device {dev}"
          f"{TRAIN_DATA_NOTE[args.train_data]}")
    gen = make_generator(args.seed, dev)

    def ais(rbm, base, betas, generator=None):
        return ais_log_partition(rbm, n_runs=args.ais_runs, betas=betas, base_data=base, generator=generator or gen)

    results = {"models": {}, "n_train": int(x_train.shape[0]), "n_test": int(x_test.shape[0])}
    best = None
    last_cd = None  # (name, rbm, epochs) of the latest CD model, a starting point for PCD
    for method, k in parse_models(args.models):
        name = f"{method.upper()}-{k}"
        start, offset = None, 0
        persistent = method in ("pcd", "fpcd")  # the PCD settings apply to both
        if persistent and args.pcd_from_cd and last_cd is not None:
            start, offset = last_cd[1], last_cd[2]
            name = f"{last_cd[0]}+{name}"
        n_ep = cd_epochs if method == "cd" else epochs
        cfg = RBMTrainConfig(epochs=n_ep, batch_size=args.batch_size, weight_decay=args.weight_decay,
                             method=method, k=k)
        if persistent:
            # Tieleman (2008): a small learning rate decayed towards zero keeps the
            # persistent chains close to the model's distribution
            cfg.lr, cfg.lr_final, cfg.n_chains = args.pcd_lr, args.pcd_lr / 100, args.batch_size
            cfg.momentum = cfg.final_momentum = args.pcd_momentum
        else:
            cfg.lr, cfg.lr_final, cfg.final_momentum = args.lr, args.lr_final, args.cd_final_momentum
            if args.k_ramp and k > 1:  # Salakhutdinov & Murray (2008): k raised gradually to 25
                cfg.k, cfg.k_final = 1, k
        cfg.sample_data = args.train_data == "fresh"
        for field, value in field_values("--rbm", RBMTrainConfig, args.rbm).items():
            setattr(cfg, field, value)
        cfg.validate()
        # a centred start model carries its offsets (training state) in its state dict
        rbm = RBM(x_train.shape[1], args.hidden, generator=gen, centered=start is not None and start.centered)
        if start is not None:
            rbm.load_state_dict(start.state_dict())
            cfg.init_visible_bias = False
        curve = []
        curve_s = [0.0]
        every = max(1, n_ep // max(1, args.curve_points))

        def on_epoch(epoch, m, rbm=rbm, curve=curve, n_ep=n_ep, every=every, name=name, curve_s=curve_s,
                     offset=offset):
            if (epoch + 1) % every == 0 and epoch + 1 < n_ep:
                t = time.perf_counter()
                res = ais(rbm, x_train, args.curve_betas, curve_generator(args.seed, name, offset + epoch + 1, dev))
                # training seconds so far (this model's, without the curve's AIS runs)
                curve.append({"epoch": offset + epoch + 1, "test_loglik": rbm_log_likelihood(rbm, x_test, res),
                              "ais_betas": args.curve_betas, "train_seconds": t - t0 - curve_s[0]})
                print(f"  {name} epoch {epoch + 1}: test log-lik {curve[-1]['test_loglik']:.2f} "
                      f"(AIS {args.curve_betas} temperatures), recon {m['recon_error']:.2f}", flush=True)
                curve_s[0] += time.perf_counter() - t

        t0 = time.perf_counter()
        ckpt = Path(args.checkpoint_dir) / f"{name}.ckpt.safetensors" if args.checkpoint_dir else None
        if ckpt is not None:
            ckpt.parent.mkdir(parents=True, exist_ok=True)
        from_ckpt = ckpt is not None and ckpt.exists()  # then its seconds are the resumed part's only
        train_rbm(rbm, x_fit, cfg, generator=gen, callback=on_epoch, checkpoint=ckpt, resume=from_ckpt)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        train_s = time.perf_counter() - t0 - curve_s[0]  # the curve's AIS runs are not training
        if args.save_dir:
            Path(args.save_dir).mkdir(parents=True, exist_ok=True)
            save_model(Path(args.save_dir) / f"{name}.safetensors", rbm)
        done = ckpt.with_name(f"{name}.result.json") if ckpt is not None else None
        key = finished_key(args, name, cfg, n_ep)
        entry = load_finished(done, key, gen)
        if entry is not None:
            print(f"{name}: training and final AIS finished by an earlier run of this command; its figures "
                  f"({done}): test log-lik {entry['test_loglik']:.2f} nats", flush=True)
            results["models"][name] = {**entry, "reused": str(done)}
        else:
            res = ais(rbm, x_train, args.ais_betas)
            ll = rbm_log_likelihood(rbm, x_test, res)
            ll_train = rbm_log_likelihood(rbm, x_train[:10000], res)
            if offset:
                curve.insert(0, {**results["models"][last_cd[0]]["curve"][-1]})
            curve.append({"epoch": offset + n_ep, "test_loglik": ll, "ais_betas": res.n_betas, "train_seconds": train_s})
            down, up = res.uncertainty
            print(f"{name}: {n_ep} epochs in {train_s:.1f}s; log Z {res.log_z:.2f} (+{up:.2f}/-{down:.2f}, ESS "
                  f"{res.ess:.1f}, {res.seconds:.1f}s); test log-lik {ll:.2f} nats, train {ll_train:.2f}", flush=True)
            results["models"][name] = {
                "method": method, "k": k, "k_start": cfg.k, "epochs": n_ep, "started_from": last_cd[0] if offset else None, "lr": cfg.lr, "lr_final": cfg.lr_final,
                "train_seconds": train_s, "curve_ais_seconds": curve_s[0], "log_z": res.log_z, "log_z_low": res.log_z_low, "log_z_high": res.log_z_high,
                "ess": res.ess, "ais_runs": res.n_runs, "ais_betas": res.n_betas, "ais_seconds": res.seconds,
                "test_loglik": ll, "test_loglik_low": ll - up, "test_loglik_high": ll + down,
                "train_loglik_first10k": ll_train, "curve": curve, "config": dict(cfg.__dict__), "resumed": from_ckpt,
                "warnings": reliability_warnings(res, {"low": ll - up, "high": ll + down}),
            }
            save_finished(done, key, results["models"][name], gen)
            for w in results["models"][name]["warnings"]:
                print(f"  warning: {w}", flush=True)
        ll = results["models"][name]["test_loglik"]
        if best is None or ll > results["models"][best[0]]["test_loglik"]:
            best = (name, rbm, cfg)
        if method == "cd":
            last_cd = (name, rbm, n_ep)

    if args.raise_test and best is not None:
        results["raise"] = conservative(best, results, x_train, x_test[: args.raise_test], args, gen)

    if args.layer2 and best is not None:
        name, rbm1, cfg1 = best
        # the data the second RBM should model: samples of Q(h1 | v) over the training images,
        # one fixed draw per image ('sample') or a fresh draw in every mini-batch ('resample')
        resample = args.layer2_data == "resample"
        with torch.no_grad():
            h1 = batched(rbm1.mean_hidden if resample else (lambda v: rbm1.sample_hidden(v, gen)), x_train)
        rbm2 = RBM(args.hidden, args.layer2, generator=gen)
        transposed = transpose_into(rbm1, rbm2)  # where possible, start where the bound is the RBM's
        cfg2 = RBMTrainConfig(**{**cfg1.__dict__, **layer2_fields, "epochs": max(l2_epochs, 1),
                                 "init_visible_bias": not transposed, "lr": args.layer2_lr,
                                 "lr_final": args.layer2_lr / 100, "sample_data": resample}).validate()
        with torch.no_grad():
            base = batched(rbm1.mean_hidden, x_train)
        start_check = None
        if transposed and l2_epochs > 0 and args.start_check:
            # the bound at the transposed start is the RBM's log-likelihood in exact arithmetic, so
            # its estimate minus the RBM's measures how far the two AIS estimates of one log Z
            # disagree, and the trained bound minus it is the second layer's gain by one estimator
            # (its own generator: the run's stream stays the one runs without the check had)
            g0 = make_generator(args.seed + 2, dev)
            res0 = ais(rbm2, base, args.ais_betas, generator=g0)
            start_check = {"top_log_z": res0.log_z, "ess": res0.ess,
                           "test_bound": dbn_lower_bound([rbm1, rbm2], x_test, res0, n_samples=args.bound_samples,
                                                         generator=g0).value}
        t0 = time.perf_counter()
        if l2_epochs > 0:
            train_rbm(rbm2, h1, cfg2, generator=gen)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        train_s = time.perf_counter() - t0
        res2 = ais(rbm2, base, args.ais_betas)
        bound = dbn_lower_bound([rbm1, rbm2], x_test, res2, n_samples=args.bound_samples, generator=gen)
        # the same bound on the first 10,000 training images (the RBM's train figure's images), from
        # a generator of its own so the run's stream is the one runs before this figure had
        bound_train = dbn_lower_bound([rbm1, rbm2], x_train[:10_000], res2, n_samples=args.bound_samples,
                                      generator=make_generator(args.seed + 1, dev))
        down, up = res2.uncertainty
        rbm_ll = results["models"][name]["test_loglik"]
        rbm_ll_train = results["models"][name]["train_loglik_first10k"]
        print(f"DBN {name}({args.hidden})-{cfg1.method.upper()}-{cfg1.k}({args.layer2}): layer 2 {l2_epochs} epochs "
              f"in {train_s:.1f}s; top log Z {res2.log_z:.2f} (+{up:.2f}/-{down:.2f}, ESS {res2.ess:.1f}); "
              f"test bound {bound.value:.2f} nats (MC s.e. {bound.stderr:.3f}) vs RBM {rbm_ll:.2f}; train (first "
              f"10,000) {bound_train.value:.2f} vs RBM {rbm_ll_train:.2f}", flush=True)
        results["dbn"] = {
            "layer1": name, "layer2_hidden": args.layer2, "layer2_epochs": l2_epochs, "layer2_init_transposed": transposed,
            "layer2_data": args.layer2_data,
            "layer2_lr": args.layer2_lr, "layer2_overrides": list(args.layer2_rbm), "layer2_config": dict(cfg2.__dict__),
            "train_seconds": train_s, "top_log_z": res2.log_z, "top_log_z_low": res2.log_z_low,
            "top_log_z_high": res2.log_z_high, "ess": res2.ess, "ais_seconds": res2.seconds,
            "test_bound": bound.value, "test_bound_stderr": bound.stderr, "bound_samples": bound.n_samples,
            "test_bound_low": bound.value - up - 3 * bound.stderr, "test_bound_high": bound.value + down + 3 * bound.stderr,
            "rbm_test_loglik": rbm_ll, "improvement": bound.value - rbm_ll,
            "train_bound_first10k": bound_train.value, "rbm_train_loglik_first10k": rbm_ll_train,
            "train_improvement": bound_train.value - rbm_ll_train,
            "warnings": reliability_warnings(res2, {"low": bound.value - up, "high": bound.value + down}),
        }
        for w in results["dbn"]["warnings"]:
            print(f"  warning (top RBM): {w}", flush=True)
        if start_check is not None:
            start_check["estimator_gap"] = start_check["test_bound"] - rbm_ll
            start_check["gain_over_start"] = bound.value - start_check["test_bound"]
            results["dbn"]["start_check"] = start_check
            print(f"  at the transposed start: top log Z {start_check['top_log_z']:.2f} (ESS "
                  f"{start_check['ess']:.1f}), bound {start_check['test_bound']:.2f} (the RBM's log-likelihood in "
                  f"exact arithmetic: the two AIS estimates differ by {start_check['estimator_gap']:+.2f}); "
                  f"the second layer's gain by one estimator {start_check['gain_over_start']:+.2f}", flush=True)
        if args.layer3:
            # the same construction one level up: h2 ~ Q(h2 | h1) for the third RBM's data ('resample':
            # one fixed draw of h1 per image, and Q(h2 | h1) drawn afresh in every mini-batch)
            with torch.no_grad():
                if resample:
                    h2 = batched(lambda p: rbm2.mean_hidden(torch.bernoulli(p, generator=gen)), h1)
                else:
                    h2 = batched(lambda h: rbm2.sample_hidden(h, gen), h1)
            rbm3 = RBM(args.layer2, args.layer3, generator=gen)
            transposed3 = transpose_into(rbm2, rbm3)
            cfg3 = RBMTrainConfig(**{**cfg2.__dict__, "init_visible_bias": not transposed3})
            t0 = time.perf_counter()
            if l2_epochs > 0:
                train_rbm(rbm3, h2, cfg3, generator=gen)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            train3_s = time.perf_counter() - t0
            with torch.no_grad():
                base3 = batched(rbm2.mean_hidden, base)
            res3 = ais(rbm3, base3, args.ais_betas)
            bound3 = dbn_lower_bound([rbm1, rbm2, rbm3], x_test, res3, n_samples=args.bound_samples, generator=gen)
            down3, up3 = res3.uncertainty
            print(f"3-layer DBN (third RBM {args.layer3} units, {l2_epochs} epochs in {train3_s:.1f}s): top log Z "
                  f"{res3.log_z:.2f} (+{up3:.2f}/-{down3:.2f}, ESS {res3.ess:.1f}); test bound {bound3.value:.2f} "
                  f"nats (MC s.e. {bound3.stderr:.3f}) vs 2 layers {bound.value:.2f}", flush=True)
            results["dbn3"] = {
                "layer3_hidden": args.layer3, "layer3_epochs": l2_epochs, "layer3_init_transposed": transposed3,
                "train_seconds": train3_s, "top_log_z": res3.log_z, "top_log_z_low": res3.log_z_low,
                "top_log_z_high": res3.log_z_high, "ess": res3.ess, "ais_seconds": res3.seconds,
                "test_bound": bound3.value, "test_bound_stderr": bound3.stderr,
                "test_bound_low": bound3.value - up3 - 3 * bound3.stderr,
                "test_bound_high": bound3.value + down3 + 3 * bound3.stderr,
            }

    if best is not None:
        results["reach"] = {"level": REACH, "model": best[0], "curve_betas": args.curve_betas,
                            "minutes": minutes_to_reach(results, best[0], REACH)}
        r = results["reach"]
        print(f"{best[0]}: {REACH} nats " + (
            "not timed (resumed from a checkpoint)" if resumed(results, best[0]) else "not reached by the end of training"
            if r["minutes"] is None else
            f"reached after {r['minutes']:.1f} training minutes (curve AIS {args.curve_betas} temperatures)"))
    results["total_seconds"] = time.perf_counter() - started
    if args.headline and args.hidden == 500 and not args.quick and best is not None:
        # the best-RBM keys come from runs with a PCD model (our best); a CD-only run
        # (e.g. --models cd25) records only its own row
        figures = {}
        if any(m["method"] in ("pcd", "fpcd") for m in results["models"].values()):
            figures["rbm500_loglik_ais_nats"] = round(results["models"][best[0]]["test_loglik"], 2)
            if "raise" in results:
                figures["rbm500_loglik_raise_nats"] = round(results["raise"]["raise_loglik"], 2)
            if "dbn" in results and l2_epochs > 0:  # 0 epochs: a check of the estimates, not a DBN
                figures["dbn2_bound_nats"] = round(results["dbn"]["test_bound"], 2)
            # timed from the curve, so only where its AIS is the paper's (forward AIS with fewer
            # temperatures reads high); a run that never reaches the level has no figure to write
            if results["reach"]["minutes"] is not None and args.curve_betas >= 14_500:
                figures["rbm500_minutes_to_86_3"] = round(results["reach"]["minutes"], 1)
        if "CD-25" in results["models"]:
            figures["rbm500_cd25_loglik_nats"] = round(results["models"]["CD-25"]["test_loglik"], 2)
        if args.headline_keys is not None:
            figures = {k: v for k, v in figures.items() if k in args.headline_keys.split(",")}
        figures = drop_unsure(figures, results, best[0])
        if figures:
            record_headline(figures, machine=machine_name() if dev.type == "cpu" else str(dev))
    results["machine"] = {**machine_info(str(dev)), "device": str(dev)}
    results["args"] = vars(args)
    print(f"total {results['total_seconds']:.1f}s")
    write_json(args.out, _clean(results))  # atomic
    if args.figure:
        plot(results, args.figure)
    return 0


def conservative(best, results: dict, x_train, x_sub, args, gen) -> dict:
    """RAISE (Burda, Grosse & Salakhutdinov 2015) on ``x_sub``, one reverse chain per image
    with the forward run's schedule and base model: a stochastic lower bound on the mean
    log p(v); the forward AIS figure on the same images beside it (the truth lies between)."""
    name, rbm, _ = best
    m = results["models"][name]
    t0 = time.perf_counter()
    rv = raise_log_prob(rbm, x_sub, betas=args.ais_betas, base_data=x_train, generator=gen)
    seconds = time.perf_counter() - t0
    forward = float(rbm_log_prob(rbm, x_sub, m["log_z"]).mean())
    print(f"RAISE {name} on the first {x_sub.shape[0]} test images: {rv.value:.2f} nats (s.e. {rv.stderr:.2f}, "
          f"{seconds:.1f}s); forward AIS on the same images {forward:.2f}", flush=True)
    return {"model": name, "n_test": int(x_sub.shape[0]), "raise_loglik": rv.value, "raise_stderr": rv.stderr,
            "forward_loglik_same_images": forward, "gap": forward - rv.value, "seconds": seconds,
            "ais_betas": args.ais_betas or 14500}


def _clean(x):
    """Strict JSON: non-finite floats (an AIS interval open at one end) become strings."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for name, m in results["models"].items():
        ep = [c["epoch"] for c in m["curve"]]
        ax1.plot(ep, [c["test_loglik"] for c in m["curve"]], marker="o", label=f"{name}: {m['test_loglik']:.2f}")
    ax1.axhline(-86.34, color="grey", ls=":", label="paper CD-25 (-86.34)")
    ax1.set_xlabel("training epochs (PCD continues from CD where marked +)")
    ax1.set_ylabel("test log-likelihood (nats)")
    ax1.set_title(f"RBM, binarised MNIST (AIS; inner points {results['args']['curve_betas']} temperatures)",
                  fontsize=9)
    ax1.legend(fontsize=8)
    if "dbn" in results:
        d = results["dbn"]
        ys = [d["rbm_test_loglik"], d["test_bound"]]
        lo = [d["rbm_test_loglik"] - results["models"][d["layer1"]]["test_loglik_low"], d["test_bound"] - d["test_bound_low"]]
        hi = [results["models"][d["layer1"]]["test_loglik_high"] - d["rbm_test_loglik"], d["test_bound_high"] - d["test_bound"]]
        xs, ticks = [1, 2], ["1 (RBM, log p)", "2 (DBN, bound)"]
        if "dbn3" in results:
            d3 = results["dbn3"]
            ys.append(d3["test_bound"])
            lo.append(d3["test_bound"] - d3["test_bound_low"])
            hi.append(d3["test_bound_high"] - d3["test_bound"])
            xs.append(3)
            ticks.append("3 (DBN, bound)")
        finite = [[e if math.isfinite(e) else float("nan") for e in row] for row in (lo, hi)]
        ax2.errorbar(xs, ys, yerr=finite, marker="o", capsize=4)
        for x, y in zip(xs, ys):
            ax2.annotate(f"{y:.2f}", (x, y), textcoords="offset points", xytext=(8, 4), fontsize=8)
        ax2.axhline(-85.97, color="grey", ls=":", label="paper 2-layer bound (-85.97)")
        ax2.set_xticks(xs, ticks)
        ax2.legend(fontsize=8)
    ax2.set_xlabel("layers")
    ax2.set_ylabel("test log-likelihood / lower bound (nats)")
    ax2.set_title("adding a layer")
    m, a = results["machine"], results["args"]
    fig.suptitle(f"{results['n_train']} training images, {a['hidden']} hidden units; AIS {a['ais_runs']} runs x "
                 f"{a['ais_betas'] or 14500} temperatures; {m['device_name']} ({m['date'][:10]})", fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    raise SystemExit(main())
