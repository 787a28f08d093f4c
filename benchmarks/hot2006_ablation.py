"""Why is greedy HOT 2006 at 5.7% and not 2.49%? One arm per candidate, measured on validation.

The paper's protocol (Hinton, Osindero & Teh 2006, section 6): the first 50,000 MNIST
training images are the training pool and the last 10,000 the validation set; the model
is 784-500-500-(500 + 10 labels)-2000, each RBM trained for 30 epochs of CD-1. Every arm
below changes one or two settings against that and reports the free-energy
classification error of the validation images after every epoch of the top RBM.

An arm is ``lower`` (the settings of the two label-free RBMs) + ``top`` (the top RBM's).
Lower stacks are cached, so arms that share one reuse it; everything checkpoints in
``--work`` and a killed run resumes where it stopped (``--arms`` picks arms by name).

    python benchmarks/hot2006_ablation.py --out benchmarks/results/hot2006_ablation_cpu.json
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from _common import machine_info, parser, write_json

from deepbelief.data import load_dataset
from deepbelief.dbn import GenerativeDBN
from deepbelief.rbm import RBM, batched
from deepbelief.stacking import pretrain_stack
from deepbelief.training import RBMTrainConfig, make_generator, train_rbm
from deepbelief.units import Bernoulli, Joint, Softmax

BASE = dict(epochs=30, batch_size=100, lr=0.1, momentum=0.5, final_momentum=0.9, momentum_switch=5,
            weight_decay=2e-4)

# lower-stack variants: RBMTrainConfig changes for the 784-500 and 500-500 RBMs
LOWER = {
    "base": {},
    "w0.1": {"weight_std": 0.1},
    "w0.1-zerovb": {"weight_std": 0.1, "init_visible_bias": False},
    "w0.1-bal": {"weight_std": 0.1, "balanced_batches": True},
}

# arm -> (lower variant, top RBM changes)
ARMS = {
    "base": ("base", {}),
    "top-w0.1": ("base", {"weight_std": 0.1}),
    "all-w0.1": ("w0.1", {"weight_std": 0.1}),
    "all-w0.1-zerovb": ("w0.1-zerovb", {"weight_std": 0.1, "init_visible_bias": False}),
    "all-w0.1-bal": ("w0.1-bal", {"weight_std": 0.1, "balanced_batches": True}),
    "all-w0.1-bal-cd3": ("w0.1-bal", {"weight_std": 0.1, "balanced_batches": True, "k": 3}),
    "all-w0.1-bal-lr0.05": ("w0.1-bal", {"weight_std": 0.1, "balanced_batches": True, "lr": 0.05}),
    "all-w0.1-bal-60ep": ("w0.1-bal", {"weight_std": 0.1, "balanced_batches": True, "epochs": 60}),
    "all-w0.1-bal-cd10": ("w0.1-bal", {"weight_std": 0.1, "balanced_batches": True, "k": 10}),
    "all-w0.1-bal-wd0": ("w0.1-bal", {"weight_std": 0.1, "balanced_batches": True, "weight_decay": 0.0}),
    # the top RBM's validation error swings by +-0.5 points from epoch to epoch at lr 0.1 and
    # momentum 0.9: a learning rate annealed linearly to 0 over its epochs lets it settle
    "all-w0.1-bal-lr0.2": ("w0.1-bal", {"weight_std": 0.1, "balanced_batches": True, "lr": 0.2}),
    "all-w0.1-bal-100ep": ("w0.1-bal", {"weight_std": 0.1, "balanced_batches": True, "epochs": 100}),
    "top-w0.1-anneal": ("base", {"weight_std": 0.1, "lr_final": 0.0}),
    "all-w0.1-anneal": ("w0.1", {"weight_std": 0.1, "lr_final": 0.0}),
    "all-w0.1-bal-anneal": ("w0.1-bal", {"weight_std": 0.1, "balanced_batches": True, "lr_final": 0.0}),
    "all-w0.1-bal-anneal-60ep": ("w0.1-bal", {"weight_std": 0.1, "balanced_batches": True, "lr_final": 0.0,
                                              "epochs": 60}),
}


def lower_stack(name, x, y, work, seed):
    cfg = RBMTrainConfig(**{**BASE, **LOWER[name]})
    folder = work / f"lower-{name}"
    t0 = time.perf_counter()
    stack = pretrain_stack(x, [784, 500, 500], cfg, generator=make_generator(seed), checkpoint_dir=folder,
                           resume=True, labels=y,
                           callback=lambda i, e, m: print(f"  lower {name} rbm {i} epoch {e + 1}/{cfg.epochs}: "
                                                          f"recon {m['recon_error']:.4f} ({m['seconds']:.1f}s)",
                                                          flush=True))
    return stack, time.perf_counter() - t0


def run_arm(arm, data, work, seed, done):
    lname, top_over = ARMS[arm]
    (x, y), (xv, yv) = data
    stack, lower_s = lower_stack(lname, x, y, work, seed)
    f, fv = stack.transform(x), stack.transform(xv)
    cfg = RBMTrainConfig(**{**BASE, **top_over})
    gen = make_generator(seed + 1)
    top = RBM(Joint([Bernoulli(500), Softmax(10)]), Bernoulli(2000), weight_std=cfg.weight_std, generator=gen)
    model = GenerativeDBN(list(stack.rbms), top)
    curve_path = work / f"top-{arm}.curve.json"
    curve = json.loads(curve_path.read_text()) if curve_path.exists() else {}

    def err(feats, labels):
        with torch.no_grad():
            pred = batched(lambda t: model.label_free_energies(t).argmin(1), feats, 1000)
        return float((pred != labels).float().mean())

    def cb(e, m):
        curve[str(e + 1)] = ve = err(fv, yv)
        write_json(str(curve_path), curve)
        print(f"  top {arm} epoch {e + 1}/{cfg.epochs}: valid error {100 * ve:.2f}% ({m['seconds']:.1f}s)", flush=True)

    joint = torch.cat([f, torch.nn.functional.one_hot(y, 10).float()], 1)
    t0 = time.perf_counter()
    train_rbm(top, joint, cfg, generator=gen, callback=cb, checkpoint=work / f"top-{arm}.ckpt.safetensors",
              resume=True, labels=y)
    top_s = time.perf_counter() - t0
    last5 = [v for _, v in sorted(curve.items(), key=lambda kv: int(kv[0]))][-5:]
    return {"lower": lname, "lower_config": LOWER[lname], "top_config": top_over,
            "valid_error_pct": 100 * err(fv, yv), "train_error_pct_first10k": 100 * err(f[:10_000], y[:10_000]),
            "valid_curve_pct": {k: 100 * v for k, v in sorted(curve.items(), key=lambda kv: int(kv[0]))},
            "valid_error_last5_mean_pct": 100 * sum(last5) / len(last5),
            "lower_seconds_this_run": lower_s, "top_seconds_this_run": top_s}


def markdown(out: dict) -> str:
    """The arms measured so far as a markdown table (for RESULTS.md)."""
    rows = ["| arm | lower RBMs | top RBM | valid error, last epoch | mean of last 5 | train error (first 10k) |",
            "| --- | --- | --- | ---: | ---: | ---: |"]
    for name, r in out["arms"].items():
        last5 = r.get("valid_error_last5_mean_pct")
        if last5 is None:  # arms recorded before the field existed: from the stored curve
            vals = list(r["valid_curve_pct"].values())[-5:]
            last5 = sum(vals) / len(vals)
        rows.append(f"| {name} | {json.dumps(r['lower_config']) if r['lower_config'] else 'base'} | "
                    f"{json.dumps(r['top_config']) if r['top_config'] else 'base'} | {r['valid_error_pct']:.2f}% | "
                    f"{last5:.2f}% | {r['train_error_pct_first10k']:.2f}% |")
    return "\n".join(rows)


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--arms", default=",".join(ARMS), help="comma-separated arm names")
    p.add_argument("--work", default="hot2006-ablation-work", help="checkpoint folder (resumable)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--epochs", type=int, default=None, help="override every arm's epochs (smoke tests)")
    p.add_argument("--markdown", action="store_true", help="print the table of the arms in --out and exit")
    a = p.parse_args()
    if a.markdown:
        print(markdown(json.loads(Path(a.out).read_text())))
        return
    if a.epochs is not None:
        BASE["epochs"] = a.epochs
        for _, top in ARMS.values():
            top.pop("epochs", None)
    if a.threads:
        torch.set_num_threads(a.threads)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    ds = load_dataset("mnist", data_dir=a.data_dir)
    x, y = ds.x_train.float(), ds.y_train.long()
    data = ((x[:50_000], y[:50_000]), (x[50_000:], y[50_000:]))
    out = json.loads(Path(a.out).read_text()) if a.out and Path(a.out).exists() else {}
    out.setdefault("arms", {})
    out["protocol"] = "train rows 0-49,999, valid rows 50,000-59,999; base: " + json.dumps(BASE)
    for arm in a.arms.split(","):
        if arm in out["arms"]:
            print(f"{arm}: done ({out['arms'][arm]['valid_error_pct']:.2f}%)")
            continue
        print(f"== {arm}", flush=True)
        out["arms"][arm] = run_arm(arm, data, work, a.seed, out["arms"])
        out["machine"] = machine_info("cpu")
        write_json(a.out, out)
        print(f"{arm}: valid error {out['arms'][arm]['valid_error_pct']:.2f}%", flush=True)


if __name__ == "__main__":
    main()
