"""Hinton, Osindero & Teh (2006): the generative DBN on MNIST, classified by free energy.

784-500-500-(500 + 10 labels)-2000. Greedy training (each RBM CD-1), then contrastive
wake-sleep ("up-down") fine-tuning; after each stage the test error of free-energy
classification on the 10,000 MNIST test images (the paper: 2.49% after greedy training,
1.25% after up-down), and a 10 x N grid of class-conditional samples (Gibbs sampling in the
top RBM with the label clamped, then one top-down pass).

Are the samples digits of the requested class? An independent classifier (a 784-512-10
ReLU MLP trained here on the MNIST training pixels, sharing nothing with the DBN) labels a
larger set of samples per class; we report its agreement with the clamped label, per class.

The paper's schedule is 30 epochs of CD-1 per RBM and 300 up-down epochs (100 each with
3, 6, 10 top-level Gibbs iterations) on 44,000 images, then 59 more on 60,000: about a week
in 2006. The defaults here are sized for about 2.5 minutes of one H100 (see --help).

    python benchmarks/mnist_hot2006.py --device cuda --out hot2006.json
    python benchmarks/mnist_hot2006.py --quick            # about a minute on a laptop CPU
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from deepbelief.data import load_dataset  # noqa: E402
from deepbelief.training import pretrain_generative  # noqa: E402
from deepbelief.errors import resolve_device  # noqa: E402
from deepbelief.io import atomic_write_bytes, save_model  # noqa: E402
from deepbelief.plotting import save_tiles  # noqa: E402
from deepbelief.training import RBMTrainConfig, make_generator  # noqa: E402
from deepbelief.wake_sleep import UpDownConfig, up_down  # noqa: E402


def default_data_dir() -> str:
    local = ROOT.parent / "shared" / "data" / "mnist"
    return str(local if local.is_dir() else Path("/work/shared/data/mnist"))


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def train_mlp(x, y, xt, yt, *, epochs, gen, dev):
    """An independent judge of samples: 784-512-10 ReLU MLP, Adam, batch 100."""
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 512), torch.nn.ReLU(), torch.nn.Linear(512, 10)).to(dev)
    with torch.no_grad():  # initialise from the run's generator (never the global seed)
        for p in net.parameters():
            p.copy_((torch.rand(p.shape, generator=gen, device=dev) * 2 - 1) / p.shape[-1] ** 0.5)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    n = x.shape[0]
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen, device=dev)
        for i in range(n // 100):
            idx = perm[i * 100:(i + 1) * 100]
            loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        err = float((net(xt).argmax(1) != yt).float().mean())
    return net, err


def judge_samples(model, mlp, *, per_class, steps, gen, n_labels):
    """Class-conditional samples (per_class chains per class, in parallel) labelled by the MLP."""
    labels = torch.arange(n_labels, device=model.top.W.device).repeat_interleave(per_class)
    x = model.sample(labels.shape[0], label=labels, steps=steps, generator=gen)
    with torch.no_grad():
        pred = mlp(x).argmax(1)
    agree = (pred == labels).float().reshape(n_labels, per_class).mean(1)
    return x, agree.tolist()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None, help="MNIST IDX folder (default ../shared/data/mnist)")
    p.add_argument("--quick", action="store_true", help="small run to check the script (~1 min on a CPU)")
    p.add_argument("--out", default=None, help="write all figures and machine info as JSON here")
    p.add_argument("--pretrain-epochs", type=int, default=None, help="CD-1 epochs per RBM (paper 30; default 30)")
    p.add_argument("--updown-epochs", type=int, default=None, help="up-down epochs (paper 300 + 59; default 40)")
    p.add_argument("--updown-lr", type=float, default=0.01)
    p.add_argument("--updown-momentum", type=float, default=0.5)
    p.add_argument("--gibbs-steps", default="3,6,10", help="top-level Gibbs iterations per part of the run")
    p.add_argument("--n-train", type=int, default=None, help="training images (default all 60,000)")
    p.add_argument("--sample-steps", type=int, default=None, help="Gibbs steps per sample (default 1000)")
    p.add_argument("--grid", type=int, default=10, help="samples per class in the PNG grids")
    p.add_argument("--judge-per-class", type=int, default=None, help="samples per class judged by the MLP (100)")
    p.add_argument("--mlp-epochs", type=int, default=None, help="epochs of the independent MLP (default 5)")
    p.add_argument("--figures", default=None, help="folder for the PNG grids (default docs/; --quick: /tmp)")
    p.add_argument("--save-model", default=None, help="also write the fine-tuned model here (safetensors)")
    a = p.parse_args(argv)

    q = a.quick
    pre_epochs = a.pretrain_epochs if a.pretrain_epochs is not None else (2 if q else 30)
    ud_epochs = a.updown_epochs if a.updown_epochs is not None else (1 if q else 40)
    n_train = a.n_train or (3000 if q else 60000)
    sample_steps = a.sample_steps if a.sample_steps is not None else (100 if q else 1000)
    per_class = a.judge_per_class or (10 if q else 100)
    mlp_epochs = a.mlp_epochs if a.mlp_epochs is not None else (1 if q else 5)
    sizes = [784, 500, 500, 2000]
    figures = Path(a.figures) if a.figures else (Path("/tmp/deepbelief_hot2006_quick") if q else ROOT / "docs")
    figures.mkdir(parents=True, exist_ok=True)

    dev = resolve_device(a.device)
    t_all = time.perf_counter()
    ds = load_dataset("mnist", data_dir=a.data_dir or default_data_dir())
    x, y = ds.x_train[:n_train].to(dev), ds.y_train[:n_train].to(dev)
    xt, yt = ds.x_test.to(dev), ds.y_test.to(dev)
    gen = make_generator(a.seed, dev)
    res = {"paper": {"greedy_test_error": 0.0249, "updown_test_error": 0.0125, "pretrain_epochs": 30,
                     "updown_epochs": "300 on 44,000 images + 59 on 60,000", "gibbs_steps": [3, 6, 10]},
           "settings": {"sizes": sizes, "n_labels": 10, "n_train": int(x.shape[0]), "pretrain_epochs": pre_epochs,
                        "updown_epochs": ud_epochs, "updown_lr": a.updown_lr, "updown_momentum": a.updown_momentum,
                        "gibbs_steps": a.gibbs_steps, "sample_steps": sample_steps, "batch_size": 100,
                        "seed": a.seed, "quick": q}}

    def log(msg):
        print(f"[{time.perf_counter() - t_all:7.1f}s] {msg}", flush=True)

    log(f"device {dev}; train {x.shape[0]}, test {xt.shape[0]}; greedy {pre_epochs} epochs/RBM, up-down {ud_epochs}")
    # 1. greedy training with labels in the top RBM
    rbm_cfg = RBMTrainConfig(epochs=pre_epochs, batch_size=100, lr=0.1, momentum=0.5, final_momentum=0.9,
                             momentum_switch=min(5, max(0, pre_epochs - 1)), weight_decay=2e-4,
                             monitor_size=1000)
    sync(dev)
    t0 = time.perf_counter()
    model = pretrain_generative(x, y, sizes, rbm_cfg, generator=gen, n_labels=10,
                                callback=lambda layer, e, m: log(f"rbm {layer} epoch {e + 1}: recon "
                                                                 f"{m['recon_error']:.3f}") if e + 1 == pre_epochs else None)
    sync(dev)
    res["greedy_seconds"] = time.perf_counter() - t0
    res["greedy_test_error"] = float(model.error_rate(xt, yt))
    log(f"greedy: {res['greedy_seconds']:.1f}s, test error {100 * res['greedy_test_error']:.2f}% (paper 2.49%)")

    # the independent judge
    t0 = time.perf_counter()
    mlp, mlp_err = train_mlp(x, y, xt, yt, epochs=mlp_epochs, gen=gen, dev=dev)
    res["judge"] = {"model": "784-512-10 ReLU MLP, Adam 1e-3", "epochs": mlp_epochs, "test_error": mlp_err,
                    "seconds": time.perf_counter() - t0}
    log(f"judge MLP: test error {100 * mlp_err:.2f}%")

    def grids(tag):
        t0 = time.perf_counter()
        labels = torch.arange(10, device=dev).repeat_interleave(a.grid)
        xs = model.sample(labels.shape[0], label=labels, steps=sample_steps, generator=gen)
        path = figures / f"hot2006_samples_{tag}.png"
        save_tiles(path, xs, (28, 28), ncols=a.grid, normalize="none")
        _, agree = judge_samples(model, mlp, per_class=per_class, steps=sample_steps, gen=gen, n_labels=10)
        sync(dev)
        res[f"samples_{tag}"] = {"png": str(path), "per_class_agreement": agree,
                                 "mean_agreement": sum(agree) / len(agree), "per_class": per_class,
                                 "seconds": time.perf_counter() - t0}
        log(f"samples ({tag}): wrote {path}; judge agrees on {100 * sum(agree) / len(agree):.1f}% "
            f"(per class {[round(100 * v) for v in agree]})")

    grids("greedy")

    # 2. contrastive wake-sleep
    ud = UpDownConfig(epochs=ud_epochs, batch_size=100, lr=a.updown_lr, momentum=a.updown_momentum,
                      gibbs_steps=[int(s) for s in a.gibbs_steps.split(",")])
    sync(dev)
    t0 = time.perf_counter()
    hist = up_down(model, x, y, ud, generator=gen,
                   callback=lambda e, m: log(f"up-down epoch {e + 1} (K={m['gibbs_steps']}): recon "
                                             f"{m['recon_error']:.3f} ({m['seconds']:.2f}s)")
                   if (e + 1) % max(1, ud_epochs // 10) == 0 or e == 0 else None)
    sync(dev)
    res["updown_seconds"] = time.perf_counter() - t0
    res["updown_test_error"] = float(model.error_rate(xt, yt))
    res["updown_recon_error"] = [h["recon_error"] for h in hist]
    log(f"up-down: {res['updown_seconds']:.1f}s, test error {100 * res['updown_test_error']:.2f}% "
        f"(paper 1.25%, target <= 1.25%)")
    grids("updown")
    if a.save_model:
        save_model(a.save_model, model,
                   metrics={"greedy_test_error": res["greedy_test_error"], "test_error": res["updown_test_error"]},
                   recipe={"name": "hot2006", "dataset": "mnist", "n_valid": 0, "updown": ud.__dict__})
    res["total_seconds"] = time.perf_counter() - t_all
    res["machine"] = {"torch": torch.__version__, "device": str(dev),
                      "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor()
                      or platform.machine(), "threads": torch.get_num_threads(), "python": platform.python_version(),
                      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                      "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:])}
    log(f"total {res['total_seconds']:.1f}s")
    if a.out:
        atomic_write_bytes(a.out, json.dumps(res, indent=2).encode())
        log(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
