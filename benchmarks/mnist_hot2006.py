"""Hinton, Osindero & Teh (2006): the ``hot2006`` recipe on MNIST, its samples, and a judge.

Runs the library's ``hot2006`` recipe (recipes.py: the paper's protocol, 784-500-500-
(500 + 10 labels)-2000, 50,000 training / 10,000 validation images, class-balanced
batches, greedy CD-1, 300 up-down epochs with K = 3, 6, 10, then 59 on all 60,000) and
reports the free-energy test error after greedy training and after up-down (the paper:
2.49% and 1.25%).

Samples as the paper shows them, after each stage:
  * figure 8: a label clamped, 1,000 Gibbs iterations in the top RBM from random binary
    states of its 2,000 hidden units (``--sample-init top-noise``, the start of Hinton's
    movies; the paper does not say where its chains began; ``--sample-init biases``: features
    drawn from their biases, this benchmark's protocol until 2026-12-06), then one top-down
    pass (``samples_<stage>.png``: 10 classes x 10);
  * figure 9: a label clamped, the chain started from the up-pass of a random binary
    image (each pixel on with probability 0.5), a frame every 20 iterations
    (``chains_<stage>.png``: one row per class).
An independent judge (benchmarks/_judge.py, a small CNN trained on MNIST pixels only, its
test error reported) labels 500 figure-8 samples per class; we report its agreement with
the clamped label overall and per class (targets: >= 95% overall, >= 90% every class).

Everything checkpoints in ``--work``; run the same command again to resume a killed run.
Times: ``recipe_seconds_this_run`` is the recipe's own wall time as ``deepbelief train
--recipe hot2006`` spends it (greedy training, up-down, the test error), without the judge's
training and the judged samples; ``total_seconds_this_run`` is the whole benchmark. With
``--headline`` a run that resumed nothing records the first as ``hot2006_cpu_minutes``
(until 2026-12-07 the second: the 111.9 min of 2026-12-05 were 110.2 min of greedy training
and up-down and 1.7 min of judging, at 100 samples per class then, 500 now).

    python benchmarks/mnist_hot2006.py --out benchmarks/results/hot2006_cpu.json
    python benchmarks/mnist_hot2006.py --updown-epochs 10 --final-epochs 0     # a short variant
    python benchmarks/mnist_hot2006.py --quick                               # ~1 min, small slice
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from _common import ROOT, field_values, machine_info, machine_name, parser, record_headline, write_json

from _judge import agreement, predict, train_judge
from deepbelief.data import Dataset, load_dataset
from deepbelief.metrics_log import MetricsLogger
from deepbelief.plotting import save_tiles
from deepbelief.recipes import get_recipe
from deepbelief.runner import run_recipe
from deepbelief.training import make_generator


def judge_samples(model, judge, *, per_class: int, steps: int, gen, init: str = "top-noise") -> dict:
    labels = torch.arange(model.n_labels, device=model.top.W.device).repeat_interleave(per_class)
    x = model.sample(labels.shape[0], label=labels, steps=steps, generator=gen, init=init)
    return {**agreement(predict(judge, x), labels, model.n_labels), "per_class": per_class, "gibbs_steps": steps,
            "init": init}


def figures(model, tag: str, folder: Path, *, steps: int, gen, init: str = "top-noise") -> dict:
    """Figure 8 (clamped, ``steps`` iterations from ``init``, see ``DBN.sample``) and figure 9
    (from the up-pass of random binary images, a frame every 20 iterations) for every class."""
    dev = model.top.W.device
    labels = torch.arange(10, device=dev).repeat_interleave(10)
    xs = model.sample(100, label=labels, steps=steps, generator=gen, init=init)
    fig8 = folder / f"hot2006_samples_{tag}.png"
    save_tiles(fig8, xs, (28, 28), ncols=10, normalize="none")
    noise = (torch.rand(10, 784, generator=gen, device=dev) < 0.5).float()
    first, _, frames = model.sample(10, label=list(range(10)), steps=180, generator=gen, start=noise,
                                    return_frames=True, frames_every=20)
    start = model.down(model.features(noise))  # the first column: a down-pass from the initial state
    grid = torch.stack([start] + frames, 1).reshape(-1, 784)  # (10 rows, 10 columns)
    fig9 = folder / f"hot2006_chains_{tag}.png"
    save_tiles(fig9, grid, (28, 28), ncols=10, normalize="none")
    return {"fig8_png": str(fig8), "fig9_png": str(fig9)}


def override_top(recipe, top_k: int | None, pairs: list[str]) -> None:
    """Apply ``--top-k`` and ``--top FIELD=VALUE`` (an ``RBMTrainConfig`` field) to the
    recipe's top RBM (its layer override)."""
    from deepbelief.training import RBMTrainConfig

    top = {} if top_k is None else {"k": top_k}
    top.update(field_values("--top", RBMTrainConfig, pairs))
    if top:
        over = recipe.layer_overrides + [{}] * (len(recipe.layers) - len(recipe.layer_overrides))
        recipe.layer_overrides = over[:-1] + [{**over[-1], **top}]


def subset(ds: Dataset, n_train: int) -> Dataset:
    import dataclasses

    return dataclasses.replace(ds, x_train=ds.x_train[:n_train], y_train=ds.y_train[:n_train],
                               x_test=ds.x_test[:2000], y_test=ds.y_test[:2000], n_valid=1000)


def main(argv=None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--work", default="hot2006-work", help="checkpoints (a rerun resumes) and the metrics CSV")
    p.add_argument("--pretrain-epochs", type=int, default=None, help="CD-1 epochs per RBM (recipe: 30)")
    p.add_argument("--updown-epochs", type=int, default=None, help="up-down epochs on the training split (300)")
    p.add_argument("--final-epochs", type=int, default=None,
                   help="at most this many up-down epochs on all 60,000 afterwards (recipe: the paper's 59, "
                        "ended earlier by the paper's rule)")
    p.add_argument("--sample-steps", type=int, default=None, help="Gibbs iterations per figure-8 sample (1000)")
    p.add_argument("--sample-init", default="top-noise", choices=["top-noise", "biases"],
                   help="where the figure-8 chains start: random binary states of the top RBM's hidden units "
                        "(top-noise, the start of Hinton's movies; default) or features drawn from their biases "
                        "(the protocol until 2026-12-06: its chains for the 1s stayed in other digits' modes)")
    p.add_argument("--judge-per-class", type=int, default=None,
                   help="samples per class for the judge (500: a class's agreement near 85%% then has a binomial "
                        "standard error of 1.6 points; at 100 it was 3.6)")
    p.add_argument("--figures", default=None, help="folder for the PNGs (default docs/results/; --quick: the work folder)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--greedy-only", action="store_true",
                   help="stop after greedy training (its test error and samples; no up-down)")
    p.add_argument("--top-k", type=int, default=None, help="CD-k of the top RBM (default: the recipe's)")
    p.add_argument("--top", action="append", default=[], metavar="FIELD=VALUE",
                   help="override an RBM training field of the top RBM, e.g. --top method=pcd --top lr=0.01 "
                        "(repeatable)")
    p.add_argument("--updown", action="append", default=[], metavar="FIELD=VALUE",
                   help="override an up-down field (UpDownConfig), e.g. --updown persistent=true --updown lr=0.02 "
                        "(repeatable)")
    p.add_argument("--headline", action="store_true",
                   help="record the figures in benchmarks/results/headline.json (full runs only)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    q = a.quick
    recipe = get_recipe("hot2006")
    if a.pretrain_epochs is not None or q:
        recipe.set_rbm("epochs", a.pretrain_epochs if a.pretrain_epochs is not None else 2)
    for flag, key, quick in ((a.updown_epochs, "epochs", 2), (a.final_epochs, "final_epochs", 1)):
        if flag is not None or q:
            setattr(recipe.updown, key, flag if flag is not None else quick)
    if a.greedy_only:
        recipe.updown.epochs, recipe.updown.final_epochs = 0, 0
    override_top(recipe, a.top_k, a.top)
    if a.updown:
        import dataclasses

        from deepbelief.wake_sleep import UpDownConfig

        recipe.updown = dataclasses.replace(recipe.updown, **field_values("--updown", UpDownConfig, a.updown))
    if q:
        recipe.n_valid = 1000
    recipe.validate()
    steps = a.sample_steps or (100 if q else 1000)
    per_class = a.judge_per_class or (10 if q else 500)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    folder = Path(a.figures) if a.figures else (work if q else ROOT / "docs" / "results")
    folder.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - t_all:8.1f}s] {msg}", flush=True)

    ds = load_dataset("mnist", data_dir=a.data_dir)
    if q:
        ds = subset(ds, 6000)
    judge, judge_err = train_judge(ds.x_train, ds.y_train, ds.x_test, ds.y_test, epochs=1 if q else 3,
                                   cache=work / "judge.safetensors", log=log)
    log(f"judge (CNN on MNIST pixels, never sees the DBN): test error {100 * judge_err:.2f}%")
    res = {"paper": {"greedy_test_error_pct": 2.49, "updown_test_error_pct": 1.25},
           "recipe": recipe.to_dict(), "judge_test_error_pct": 100 * judge_err, "quick": q}
    gen_fig = make_generator(a.seed + 1000)  # the figures' own stream: the run's stays untouched

    def judged(model, tag):  # the judge's agreement on figure-8 samples, and the figures
        draw = {"steps": steps, "gen": gen_fig, "init": a.sample_init}
        return {**judge_samples(model, judge, per_class=per_class, **draw), **figures(model, tag, folder, **draw)}

    measuring = [0.0]  # seconds inside run_recipe spent judging samples (not the recipe's work)

    def after_greedy(model, result):
        t_cb = time.perf_counter()
        res["greedy_test_error_pct"] = 100 * result["greedy_test_error"]
        res["greedy_valid_error_pct"] = 100 * result.get("greedy_valid_error", float("nan"))
        res["greedy_seconds"] = result["pretrain_seconds"]
        res["samples_greedy"] = judged(model, "greedy")
        log(f"greedy samples: judge agrees {res['samples_greedy']['agreement_pct']:.1f}% "
            f"(lowest class {res['samples_greedy']['min_class_agreement_pct']:.0f}%)")
        write_json(a.out, res)
        measuring[0] += time.perf_counter() - t_cb

    resume = (work / "run.json").exists()
    logger = MetricsLogger(work / "metrics.csv")
    t_recipe = time.perf_counter()
    out = run_recipe(recipe, data_dir=a.data_dir, device=a.device, seed=a.seed, log=log, checkpoint_dir=work,
                     resume=resume, dataset=ds, logger=logger, after_greedy=after_greedy)
    # the recipe's own wall time, as `deepbelief train --recipe hot2006` spends it (greedy training,
    # up-down, the test error), without the judge's training and the judged figure-8 samples
    res["recipe_seconds_this_run"] = time.perf_counter() - t_recipe - measuring[0]
    model = out["dbn"]
    if a.greedy_only:
        res["total_seconds_this_run"] = time.perf_counter() - t_all
        res["resumed"], res["machine"] = resume, machine_info(a.device)
        res["finished"] = True
        write_json(a.out, res)
        if a.headline and not q:
            record_headline({"hot2006_greedy_test_error_pct": round(res["greedy_test_error_pct"], 2)},
                            machine=machine_name())
        return 0
    res["updown_test_error_pct"] = 100 * out["test_error"]
    res["updown_seconds"] = out.get("updown_seconds")
    if "updown_train_error" in out:  # --updown final_until_train_error=true: the final epochs' target
        res["updown_train_split_error_pct"] = 100 * out["updown_train_error"]
    res["history"] = {k: out[k] for k in ("updown_history", "updown_all_history") if k in out}
    res["samples_updown"] = judged(model, "updown")
    log(f"up-down: test error {res['updown_test_error_pct']:.2f}%; samples: judge agrees "
        f"{res['samples_updown']['agreement_pct']:.1f}% (lowest class "
        f"{res['samples_updown']['min_class_agreement_pct']:.0f}%)")
    res["total_seconds_this_run"] = time.perf_counter() - t_all
    log(f"the recipe (greedy, up-down, test error) {res['recipe_seconds_this_run'] / 60:.1f} min; this whole run, "
        f"with the judge and its samples, {res['total_seconds_this_run'] / 60:.1f} min"
        + (" (resumed: not the recipe's time)" if resume else ""))
    res["resumed"] = resume
    res["machine"] = machine_info(a.device)
    res["finished"] = True  # the JSON is written in parts (after greedy too): this marks the whole run
    from deepbelief.io import save_model

    save_model(work / "hot2006.safetensors", model, metrics={"test_error": out["test_error"]},
               recipe=recipe.to_dict())
    write_json(a.out, res)
    if a.headline and not q:
        su = res["samples_updown"]
        figs = {"hot2006_updown_test_error_pct": round(res["updown_test_error_pct"], 2),
                "hot2006_sample_agreement_pct": round(su["agreement_pct"], 1),
                "hot2006_sample_agreement_min_class_pct": round(su["min_class_agreement_pct"], 1)}
        if "greedy_test_error_pct" in res:
            figs["hot2006_greedy_test_error_pct"] = round(res["greedy_test_error_pct"], 2)
        if not resume:  # a resumed run's wall time is not the recipe's
            figs["hot2006_cpu_minutes"] = round(res["recipe_seconds_this_run"] / 60, 1)
        record_headline(figs, machine=machine_name())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
