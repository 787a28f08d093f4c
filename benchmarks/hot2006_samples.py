"""Why the hot2006 model's class-conditional samples disagree with their labels: one trained
model, several ways of sampling it, each judged by the same independent CNN.

Loads the model a ``mnist_hot2006.py --work DIR`` run left there (its completed checkpoints
resume at once; ``--greedy-only`` samples the run's greedy model), then for each variant
draws ``--per-class`` samples of every class with the label clamped, and reports the judge's
agreement with the clamped label (overall, per class) and the share of near-blank images
(mean pixel probability below 0.05):

  * ``biases-K``: the figure-8 protocol, features started from their biases, K Gibbs
    iterations (K = 10, 100, 1000, 5000: do the chains drift away from the class?);
  * ``top-noise``: started from random binary states of the top RBM's 2,000 hidden units (the
    start of Hinton's digit-generation movies), 1000 iterations (``top-noise-5000``: 5000);
  * ``noise``: started from the up-pass of a random binary image (figure 9), 1000 iterations;
  * ``data``: started from the up-pass of a random training image of *another* class
    (a realistic feature vector that the clamped label must pull over), 1000 iterations;
  * ``sampled-down``: ``biases-1000`` with the top-down pass sampled layer by layer;
  * ``label-free``: the label sampled with the rest (not clamped), the judge's label
    compared with the chain's own final label.

    python benchmarks/hot2006_samples.py --work runs/hot2006 --greedy-only --out samples.json

It never trains: without ``--greedy-only`` a folder whose run has not finished (no
``hot2006.safetensors``) is refused, and with it no up-down epoch runs whatever ``--updown``
says (an ``--updown final_epochs=100`` given with ``--greedy-only`` once trained an up-down epoch
into the folder). The flags that changed the recipe of that run (``--top``, ``--top-k``, ``--updown``) must be
given again: the model is reloaded through the run's checkpoints, which are checked against
the recipe. ``--variants`` picks some of the variants (default: all). Each variant's JSON has
the confusion counts (requested class x the judge's class); ``--figures DIR`` also draws its
misjudged samples (``DIR/misjudged_<variant>.png``), to see whether the judge or the sample
is at fault.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from _common import field_values, machine_info, parser, write_json
from _judge import agreement, predict, train_judge
from mnist_hot2006 import override_top

from deepbelief.data import load_dataset
from deepbelief.recipes import get_recipe
from deepbelief.runner import run_recipe
from deepbelief.training import make_generator

#: how each variant without a start image draws (``GenerativeDBN.sample``'s arguments). The start is
#: named in every one: ``DBN.sample``'s default start changed from the biases to top-noise on
#: 2026-12-06 (534be84), and until 2026-12-06 (evening) the ``biases-K``, ``sampled-down`` and
#: ``label-free`` variants here left it to the default, so they silently drew from top-noise.
DRAWS = {
    **{f"biases-{k}": {"steps": k, "init": "biases"} for k in (10, 100, 1000, 5000)},
    "top-noise": {"steps": 1000, "init": "top-noise"},
    "top-noise-5000": {"steps": 5000, "init": "top-noise"},
    "sampled-down": {"steps": 1000, "init": "biases", "sample_down": True},
    "label-free": {"steps": 1000, "init": "biases", "return_frames": True},
}
BLANK = 0.05  # mean pixel probability below which an image counts as blank
VARIANTS = ["biases-10", "biases-100", "biases-1000", "biases-5000", "top-noise", "top-noise-5000", "noise", "data",
            "sampled-down", "label-free"]


def judge(model, judge_net, x, labels, pred=None) -> dict:
    pred = predict(judge_net, x) if pred is None else pred
    keep = x.mean(1) >= BLANK
    return {**agreement(pred, labels, model.n_labels), "blank_pct": 100 * float((~keep).float().mean()),
            "agreement_non_blank_pct": 100 * float((pred == labels)[keep].float().mean()) if bool(keep.any()) else None}


def misjudged_figure(path: Path, x: torch.Tensor, labels: torch.Tensor, pred: torch.Tensor, limit: int = 100) -> dict:
    """Tiles of the first ``limit`` samples the judge disagrees with, by requested class."""
    from deepbelief.plotting import save_tiles

    wrong = torch.nonzero(pred != labels).flatten()
    wrong = wrong[torch.argsort(labels[wrong], stable=True)][:limit]
    if wrong.numel():
        path.parent.mkdir(parents=True, exist_ok=True)
        save_tiles(path, x[wrong], (28, 28), ncols=10, normalize="none")
    return {"png": str(path) if wrong.numel() else None,
            "requested_judged": [[int(labels[i]), int(pred[i])] for i in wrong.tolist()]}


def main(argv=None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--work", required=True, help="the mnist_hot2006.py run's --work folder")
    p.add_argument("--greedy-only", action="store_true", help="that run was --greedy-only")
    p.add_argument("--top-k", type=int, default=None, help="that run's --top-k, if it had one")
    p.add_argument("--top", action="append", default=[], metavar="FIELD=VALUE", help="that run's --top, if any")
    p.add_argument("--updown", action="append", default=[], metavar="FIELD=VALUE", help="that run's --updown, if any")
    p.add_argument("--variants", default=None,
                   help="comma-separated subset of: " + ", ".join(VARIANTS) + " (default: all)")
    p.add_argument("--per-class", type=int, default=None, help="samples per class (100; --quick: 10)")
    p.add_argument("--sample-seed", type=int, default=None,
                   help="seed of the samples' own stream (default: --seed, which must be the run's seed)")
    p.add_argument("--figures", default=None,
                   help="write each variant's misjudged samples here, misjudged_<variant>.png (up to 100, "
                        "in order of the requested class; the JSON lists requested -> judged for each)")
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    recipe = get_recipe("hot2006")  # the same changes as mnist_hot2006.py makes for these flags
    if a.quick:  # mnist_hot2006.py --quick's recipe and data
        recipe.set_rbm("epochs", 2)
        recipe.updown.epochs, recipe.updown.final_epochs, recipe.n_valid = 2, 1, 1000
    override_top(recipe, a.top_k, a.top)
    if a.updown:
        import dataclasses

        from deepbelief.wake_sleep import UpDownConfig

        recipe.updown = dataclasses.replace(recipe.updown, **field_values("--updown", UpDownConfig, a.updown))
    if a.greedy_only:  # after --updown: a final_epochs given there must not train up-down epochs here
        recipe.updown.epochs, recipe.updown.final_epochs = 0, 0
    elif not (Path(a.work) / "hot2006.safetensors").exists():  # else run_recipe would go on training it
        raise SystemExit(f"--work {a.work!r} holds no finished run (no hot2006.safetensors): this script samples a "
                         "finished model and never trains; finish the run with mnist_hot2006.py, or pass "
                         "--greedy-only to sample its greedy model")
    chosen = VARIANTS if a.variants is None else [v.strip() for v in a.variants.split(",")]
    unknown = sorted(set(chosen) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"--variants must be a comma-separated subset of {', '.join(VARIANTS)}; got {unknown}")
    work = Path(a.work)
    ds = load_dataset("mnist", data_dir=a.data_dir)
    if a.quick:
        from mnist_hot2006 import subset

        ds = subset(ds, 6000)
    per_class = a.per_class or (10 if a.quick else 100)
    judge_net, judge_err = train_judge(ds.x_train, ds.y_train, ds.x_test, ds.y_test,
                                       cache=work / "judge.safetensors")
    out = run_recipe(recipe, data_dir=a.data_dir, device=a.device, seed=a.seed, log=None, checkpoint_dir=work,
                     resume=True, dataset=ds)
    model = out["dbn"]
    dev = model.top.W.device
    sample_seed = a.seed if a.sample_seed is None else a.sample_seed
    gen = make_generator(sample_seed + 2000, dev)
    labels = torch.arange(model.n_labels, device=dev).repeat_interleave(per_class)
    n = labels.shape[0]
    res = {"work": str(work), "sample_seed": sample_seed,
           "greedy_only": a.greedy_only, "judge_test_error_pct": 100 * judge_err,
           "test_error_pct": 100 * out["test_error"], "per_class": per_class, "variants": {}}

    def run(name, **kw):
        if name not in chosen:
            return
        t = time.perf_counter()
        x = model.sample(n, generator=gen, **kw)
        if isinstance(x, tuple):  # return_frames: (x, labels, frames)
            x, lab, _ = x
        else:
            lab = labels
        pred = predict(judge_net, x)
        r = judge(model, judge_net, x, lab, pred)
        r["seconds"] = time.perf_counter() - t
        if a.figures:
            r["misjudged"] = misjudged_figure(Path(a.figures) / f"misjudged_{name}.png", x, lab, pred)
        res["variants"][name] = r
        nb = r["agreement_non_blank_pct"]
        print(f"{name:>14}: agreement {r['agreement_pct']:5.1f}% (min class {r['min_class_agreement_pct']:5.1f}%), "
              f"blank {r['blank_pct']:5.1f}%, agreement among the non-blank "
              f"{'-' if nb is None else f'{nb:.1f}%'}", flush=True)

    for name in ("biases-10", "biases-100", "biases-1000", "biases-5000", "top-noise", "top-noise-5000"):
        run(name, label=labels.tolist(), **DRAWS[name])
    noise = (torch.rand(n, 784, generator=gen, device=dev) < 0.5).float()
    run("noise", label=labels.tolist(), steps=1000, start=noise)
    pick = torch.randint(0, ds.x_train.shape[0], (n,), generator=gen, device=dev)
    y_tr = ds.y_train.to(dev)
    for _ in range(20):  # redraw the picks of the clamped class: every start image is of another class
        same = y_tr[pick] == labels
        if not bool(same.any()):
            break
        pick = torch.where(same, torch.randint(0, ds.x_train.shape[0], (n,), generator=gen, device=dev), pick)
    run("data", label=labels.tolist(), steps=1000, start=ds.x_train.to(dev)[pick])
    run("sampled-down", label=labels.tolist(), **DRAWS["sampled-down"])
    run("label-free", **DRAWS["label-free"])
    res["machine"] = machine_info(a.device)
    write_json(a.out, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
