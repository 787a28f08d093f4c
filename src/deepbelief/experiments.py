"""The lecture's claims as experiments: each is one function, one command, one report.

- ``lecture14``: the MNIST table of Hinton's lecture 14 ("Learning layers of features
  by stacking RBMs"): backprop from random initialisation, pre-training + backprop,
  pre-training + dropout backprop (Srivastava et al. 2014, table 2), and the generative
  DBN after up-down fine-tuning (Hinton, Osindero & Teh 2006; not run by this command,
  since ``benchmarks/mnist_hot2006.py`` trains that model: "not run", with a recorded
  run's figure beside it when ``--results`` names a folder of benchmark JSONs), each
  beside the published number, with wall times.
- ``erhan``: does pre-training help, and why? (Erhan et al. 2009, 2010): networks of
  depth 1..4 with and without pre-training over several seeds; test error mean and
  spread per depth, a histogram, and the function-space trajectories (each network's
  outputs on a fixed test subset after each epoch, embedded in 2-D with t-SNE).
- ``posterior``: on tiny models where everything is enumerable (``deepbelief.exact``),
  the aggregated posterior of a trained RBM is not factorial, and stacking a second and
  third RBM raises the variational bound on log p(v) (Hinton, Osindero & Teh 2006).

Each writes a markdown report and PNG figures to ``./deepbelief-results/<experiment>/``
(``--output-dir``; benchmarks/ pass ``--docs-dir docs`` to update ``docs/results/``) and, with ``out``, a
JSON of every measured figure plus machine information. Sizes: ``quick`` (minutes on a
2-core CPU, a subset of MNIST), ``reduced`` (erhan: under 30 minutes on that CPU) and
``full`` (sized for about a minute of an H100; see docs/experiments.md).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from deepbelief.errors import ConfigError, check_fields, check_int, resolve_device
from deepbelief.finetune import (
    FinetuneConfig,
    error_rate,
    finetune,
    random_classifier,
    unroll,
)
from deepbelief.progress import Progress, epoch_of
from deepbelief.training import RBMTrainConfig, make_generator, pretrain_stack

#: published test errors (%) on permutation-invariant MNIST for the lecture's table
PUBLISHED = {
    "backprop_random_init": (1.6, "Hinton, lecture 14 (backprop from small random weights)"),
    "pretrain_backprop": (1.18, "Srivastava et al. 2014, table 2 (DBN + finetuning); 1.2% in Hinton & Salakhutdinov 2006"),
    "pretrain_dropout": (0.92, "Srivastava et al. 2014, table 2 (DBN + dropout finetuning)"),
    "generative_updown": (1.25, "Hinton, Osindero & Teh 2006 (generative DBN after up-down)"),
}
#: Erhan et al. (2010), JMLR, table/figure of MNIST test error (%) by depth
ERHAN_PUBLISHED = {1: (1.81, 1.41), 2: (1.77, 1.37)}


def _from_dict(cls, d: dict):
    return cls(**check_fields(cls, d, f"{cls.__name__} option"))


# -- data -------------------------------------------------------------------------------
def mnist_subset(n_train: int, n_valid: int, n_test: int, *, data_dir=None, device="cpu"):
    """(x_tr, y_tr, x_va, y_va, x_te, y_te) on ``device``: the first ``n_train`` training
    images, the last ``n_valid`` of the 60,000 (the usual validation split) and the first
    ``n_test`` test images. Falls back to the embedded 8x8 digits if MNIST is absent
    only when ``data_dir == "digits"``."""
    from deepbelief.data import load_dataset

    ds = load_dataset("digits" if data_dir == "digits" else "mnist", data_dir=None if data_dir == "digits" else data_dir)
    n_all = ds.x_train.shape[0]
    n_valid = min(n_valid, n_all // 4)
    n_train = min(n_train, n_all - n_valid)
    x, y = ds.x_train, ds.y_train
    out = (x[:n_train], y[:n_train], x[n_all - n_valid:], y[n_all - n_valid:], ds.x_test[:n_test], ds.y_test[:n_test])
    return tuple(t.to(device).contiguous() for t in out)


def machine_info(device) -> dict:
    dev = torch.device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else _cpu_name()
    return {"torch": torch.__version__, "device": str(dev), "device_name": name, "threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": " ".join(["deepbelief"] + sys.argv[1:]) if sys.argv and "deepbelief" in sys.argv[0]
            else " ".join(sys.argv)}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


# -- lecture 14 -------------------------------------------------------------------------
#: the rows of the table and the recipe (recipes.RECIPES) that defines each: the same
#: settings as ``deepbelief train --recipe NAME``, so a row's figure is the same wherever shown
LECTURE14_ROWS = {
    "backprop_random_init": "random_init",
    "pretrain_backprop": "hinton2006",
    "pretrain_dropout": "hinton2006_dropout",
}


@dataclass
class Lecture14Config:
    """Which rows to run, on how many seeds, and what (if anything) differs from the recipes.

    Every field left at None means "as in the recipe"; the full size changes nothing, so
    each row is exactly ``deepbelief train --recipe <its recipe>`` (LECTURE14_ROWS).
    """

    #: recipe names to run (the other rows of the table say "not run")
    rows: list = field(default_factory=lambda: list(LECTURE14_ROWS.values()))
    #: seeds seed, seed + 1, ...: each row reports the mean and spread over them
    seeds: int = 1
    #: the first n_train of the 60,000 training images (None: all)
    n_train: int | None = None
    #: the first n_test test images (None: all 10,000)
    n_test: int | None = None
    #: validation split of the recipes that have one (None: theirs, 10,000)
    n_valid: int | None = None
    #: RBM epochs per layer (None: the recipe's)
    pretrain_epochs: int | None = None
    #: fine-tuning epochs of every row (None: the recipe's); top-only epochs shrink with it
    finetune_epochs: int | None = None
    #: hidden layer sizes (None: the recipes' 500-500-2000)
    layers: list | None = None
    #: more recipe fields for every row, as nested tables (e.g. {"finetune": {"cg_batch_size": 500}})
    recipe_overrides: dict = field(default_factory=dict)

    @classmethod
    def preset(cls, size: str) -> "Lecture14Config":
        if size == "quick":  # minutes on a 2-core CPU: 10,000 images, short schedules
            return cls(n_train=12_000, n_valid=2_000, pretrain_epochs=5, finetune_epochs=10)
        return cls()

    def recipe(self, name: str):
        """The recipe of one row with this configuration's changes applied."""
        from deepbelief.recipes import Recipe, get_recipe

        d = get_recipe(name).to_dict()
        if self.layers is not None:
            d["layers"] = list(self.layers)
            d["layer_overrides"] = d["layer_overrides"][: len(self.layers)]
        if self.n_valid is not None and d["n_valid"]:
            d["n_valid"] = self.n_valid
        if self.pretrain_epochs is not None:
            d["rbm"]["epochs"] = self.pretrain_epochs
            d["rbm"]["momentum_switch"] = min(d["rbm"]["momentum_switch"], self.pretrain_epochs // 2)
        if self.finetune_epochs is not None and d["finetune"]:
            ft = d["finetune"]
            scale = self.finetune_epochs / max(1, ft["epochs"])
            ft["top_only_epochs"] = min(ft["top_only_epochs"], self.finetune_epochs // 3)
            ft["momentum_ramp_epochs"] = int(round(ft["momentum_ramp_epochs"] * scale))
            ft["patience"] = min(ft["patience"], self.finetune_epochs)
            ft["epochs"] = self.finetune_epochs
        for key, value in self.recipe_overrides.items():
            d[key] = {**d[key], **value} if isinstance(value, dict) and isinstance(d.get(key), dict) else value
        return Recipe.from_dict(d)


def _subset_dataset(n_train, n_test, *, data_dir):
    """MNIST (or the embedded digits when ``data_dir == "digits"``) cut to the first
    ``n_train`` training and ``n_test`` test images; the recipes cut their validation split
    from the end of what is left, as they do from the full set."""
    import dataclasses as dc

    from deepbelief.data import load_dataset

    ds = load_dataset("digits" if data_dir == "digits" else "mnist", data_dir=None if data_dir == "digits" else data_dir)
    if n_train is None and n_test is None:
        return ds
    n_tr = ds.x_train.shape[0] if n_train is None else min(n_train, ds.x_train.shape[0])
    n_te = ds.x_test.shape[0] if n_test is None else min(n_test, ds.x_test.shape[0])
    return dc.replace(ds, x_train=ds.x_train[:n_tr].contiguous(), y_train=ds.y_train[:n_tr].contiguous(),
                      x_test=ds.x_test[:n_te].contiguous(), y_test=ds.y_test[:n_te].contiguous())


def _commit() -> str | None:
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=5, cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() + ("+changes" if dirty else "")) if out.returncode == 0 else None


def lecture14(cfg: Lecture14Config, *, device="auto", seed=0, data_dir=None, results_dir=None,
              log=print) -> dict:
    """Run the rows of the lecture's MNIST table; returns ``{"rows": [...], "config": ...}``.

    Each row is its recipe (LECTURE14_ROWS) run by ``recipes.run_recipe`` for ``cfg.seeds``
    seeds; a row's ``test_errors`` are the seeds' test errors (%), ``test_error`` their mean,
    ``std`` their sample standard deviation. Rows not in ``cfg.rows`` have ``test_error``
    None ("not run"). The two pre-trained rows use the same pre-training, so the second
    reuses the first's stack (``run_recipe(pretrained=...)``: the same weights and the same
    generator state as pre-training afresh); its time is counted in both rows. The
    generative DBN's row is never run here (``benchmarks/mnist_hot2006.py`` trains it); with
    ``results_dir`` a recorded run's figure is attached as ``recorded``, reported beside,
    never in place of, what this run measured.
    """
    from deepbelief.recipes import RECIPES, pretraining_key, run_recipe

    check_int("seeds", cfg.seeds, minimum=1)
    unknown = sorted(set(cfg.rows) - set(LECTURE14_ROWS.values()))
    if unknown:
        raise ConfigError(f"rows must name recipes of the table {sorted(LECTURE14_ROWS.values())}, got {unknown}")
    if not all(name in RECIPES for name in cfg.rows):  # pragma: no cover - the table names recipes
        raise ConfigError(f"rows: unknown recipe in {cfg.rows}")
    dev = resolve_device(device)
    t_start = time.perf_counter()
    ds = _subset_dataset(cfg.n_train, cfg.n_test, data_dir=data_dir)
    log(f"[lecture14] {ds.x_train.shape[0]} training and {ds.x_test.shape[0]} test images; rows {cfg.rows}; "
        f"{cfg.seeds} seed(s) from {seed}; {dev}")
    rows, stacks = [], {}
    for name, recipe_name in LECTURE14_ROWS.items():
        pub, src = PUBLISHED[name]
        row = {"name": name, "recipe": recipe_name, "published": pub, "source": src, "test_error": None,
               "std": None, "test_errors": [], "seconds": None, "n_seeds": 0}
        if recipe_name in cfg.rows:
            recipe = cfg.recipe(recipe_name)
            row["settings"] = recipe.to_dict()
            seconds = []
            for s in range(seed, seed + cfg.seeds):
                key = pretraining_key(recipe, s)
                _sync(dev)
                t0 = time.perf_counter()
                res = run_recipe(recipe, dataset=ds, device=dev, seed=s, log=log, pretrained=stacks.get(key))
                _sync(dev)
                extra = res["pretrain_seconds"] if key in stacks else 0.0  # the shared stack's time, counted here too
                if "pretrained" in res:
                    stacks.setdefault(key, res["pretrained"])
                seconds.append(time.perf_counter() - t0 + extra)
                row["test_errors"].append(100 * res["test_error"])
                log(f"  {name} ({recipe_name}) seed {s}: test error {100 * res['test_error']:.2f}% "
                    f"(published {pub}%) in {seconds[-1]:.1f}s")
            e = np.array(row["test_errors"])
            row.update(test_error=float(e.mean()), std=float(e.std(ddof=1)) if len(e) > 1 else None,
                       n_seeds=len(e), seconds=float(np.mean(seconds)), epochs=recipe.finetune.epochs,
                       method=recipe.finetune.method)
        rows.append(row)
    recorded = read_recorded_updown(results_dir) if results_dir is not None else {}
    pub, src = PUBLISHED["generative_updown"]
    rows.append({"name": "generative_updown", "recipe": "hot2006", "test_error": None, "std": None, "test_errors": [],
                 "n_seeds": 0, "published": pub, "source": src, "seconds": None, "recorded": recorded or None})
    return {"experiment": "lecture14", "config": dataclasses.asdict(cfg), "rows": rows, "seed": seed,
            "n_train_images": int(ds.x_train.shape[0]), "n_test_images": int(ds.x_test.shape[0]),
            "seconds": time.perf_counter() - t_start, "commit": _commit(), "machine": machine_info(dev)}


def read_recorded_updown(results_dir) -> dict:
    """The generative DBN's test error from a recorded benchmark JSON, if one exists.

    Looks in ``results_dir`` for JSON files whose name mentions up-down or the generative
    DBN and takes the first numeric ``test_error`` (a fraction or a percentage) found at the
    top level or one level down. Returns {} when none is recorded.
    """
    folder = Path(results_dir)
    if not folder.is_dir():
        return {}
    for path in sorted(folder.glob("*.json")):
        stem = path.stem.lower()
        if not any(k in stem for k in ("updown", "up_down", "up-down", "gendbn", "generative")):
            continue
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if not isinstance(doc, dict):
            continue
        # benchmarks/mnist_hot2006.py writes "updown_test_error" (a fraction) and
        # "updown_seconds" at the top level; its "paper" and "judge" dicts hold other
        # models' errors (the published figure, an MLP judging the samples) and are skipped
        v = doc.get("updown_test_error")
        if isinstance(v, (int, float)):
            return {"test_error": float(v) if v > 1 else 100 * float(v), "file": str(path),
                    "seconds": doc.get("updown_seconds") or doc.get("total_seconds")}
        for d in [doc] + [v for k, v in doc.items() if isinstance(v, dict) and k not in ("paper", "judge")]:
            for key in ("test_error_percent", "test_error"):
                v = d.get(key)
                if isinstance(v, (int, float)):
                    pct = float(v) if key.endswith("percent") or v > 1 else 100 * float(v)
                    secs = d.get("seconds") or d.get("total_seconds") or doc.get("total_seconds")
                    return {"test_error": pct, "seconds": secs, "file": str(path)}
    return {}


def lecture14_markdown(res: dict, size: str) -> str:
    names = {"backprop_random_init": "backprop from random initialisation",
             "pretrain_backprop": "pre-training + backprop",
             "pretrain_dropout": "pre-training + dropout backprop",
             "generative_updown": "generative DBN after up-down"}
    c, m = res["config"], res["machine"]
    changed = {k: v for k, v in c.items() if k not in ("rows", "seeds") and v not in (None, {}, [])}
    out = [f"# Lecture 14's MNIST table ({size})", "",
           f"`{m['command']}` on {m['device_name']} ({m['device']}, {m['threads']} threads), torch {m['torch']}, "
           f"{m['date']}; commit {res.get('commit') or 'unknown'}; {res['seconds']:.0f} s wall in all; seeds "
           f"{res['seed']}..{res['seed'] + c['seeds'] - 1}.", "",
           f"{res['n_train_images']} training images (each recipe cuts its own validation split from their end) "
           f"and {res['n_test_images']} test images. Each row is its recipe (`deepbelief train --recipe NAME`, "
           f"settings in docs/training.md)" + (f", changed here by {changed}" if changed else ", unchanged") + ".", "",
           "| method | recipe | our test error: mean ± sd (seeds) | published | wall time per seed | source |",
           "| --- | --- | --- | --- | --- | --- |"]
    for r in res["rows"]:
        if r.get("test_error") is None:
            ours = "not run"
        else:
            sd = f" ± {r['std']:.2f}" if r.get("std") is not None else ""
            ours = f"{r['test_error']:.2f}%{sd} ({r['n_seeds']})"
        secs = f"{r['seconds']:.1f} s" if r.get("seconds") is not None else "-"
        rec = r.get("recorded")
        src = r["source"] + (f"; not run here, a recorded run (`{rec['file']}`, another machine) measured "
                             f"{rec['test_error']:.2f}%" if rec else "")
        out.append(f"| {names[r['name']]} | `{r.get('recipe', '-')}` | {ours} | {r['published']}% | {secs} | {src} |")
    out += ["", "The pre-trained rows use the same pre-training (the same stack for each seed); its time is "
            "included in both.", ""]
    if changed:
        out.append("The settings differ from the recipes (above): compare the ordering of the rows, not the "
                   "absolute numbers, with the published column.")
    return "\n".join(out) + "\n"


def lecture14_figure(res: dict, path) -> None:
    from deepbelief.plotting import _pyplot, figure_png

    plt = _pyplot()
    rows = [r for r in res["rows"]]
    labels = ["random init\n+ backprop", "pre-train\n+ backprop", "pre-train\n+ dropout", "generative\nup-down"]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=120)
    ours = [r["test_error"] if r.get("test_error") is not None else np.nan for r in rows]
    ax.bar(x - 0.2, ours, 0.4, label="ours")
    ax.bar(x + 0.2, [r["published"] for r in rows], 0.4, label="published", alpha=0.7)
    for xi, v in zip(x, ours):
        ax.text(xi - 0.2, 0 if np.isnan(v) else v, "not run" if np.isnan(v) else f"{v:.2f}", ha="center",
                va="bottom", fontsize=8)
    ax.set_xticks(x, labels[: len(rows)], fontsize=8)
    ax.set_ylabel("MNIST test error (%)")
    ax.set_title("Lecture 14: permutation-invariant MNIST")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    figure_png(path, fig)


# -- Erhan et al. -------------------------------------------------------------------------
@dataclass
class ErhanConfig:
    """Sizes of the Erhan et al. experiment (their nets: 800-1200 units per layer, full MNIST)."""

    n_train: int = 20_000
    n_valid: int = 5_000
    n_test: int = 10_000
    width: int = 500
    depths: list = field(default_factory=lambda: [1, 2, 3, 4])
    seeds: int = 3
    pretrain_epochs: int = 10  # >= 1
    finetune_epochs: int = 20
    batch_size: int = 100
    lr: float = 0.1
    pretrain_lr: float = 0.05
    #: test images whose outputs trace each network's path in function space
    n_trajectory: int = 300

    @classmethod
    def preset(cls, size: str) -> "ErhanConfig":
        if size == "quick":
            return cls(n_train=5_000, n_valid=1_000, n_test=10_000, width=300, depths=[1, 2, 3], seeds=3,
                       pretrain_epochs=5, finetune_epochs=20, n_trajectory=200)
        if size == "reduced":
            return cls(n_train=10_000, n_valid=2_000, n_test=10_000, width=400, depths=[1, 2, 3, 4], seeds=3,
                       pretrain_epochs=5, finetune_epochs=15)
        return cls()


def erhan(cfg: ErhanConfig, *, device="auto", seed=0, data_dir=None, log=print) -> dict:
    """Depth x {pre-trained, random} x seeds; returns per-network test errors and trajectories.

    For each seed one stack of ``max(depths)`` RBMs is pre-trained greedily; the depth-d
    network unrolls its first d layers (greedy training of layer i never sees the layers
    above it, so this equals pre-training a depth-d stack with the same seed).
    """
    dev = resolve_device(device)
    check_int("seeds", cfg.seeds, minimum=1)
    x_tr, y_tr, x_va, y_va, x_te, y_te = mnist_subset(cfg.n_train, cfg.n_valid, cfg.n_test, data_dir=data_dir,
                                                      device=dev)
    x_traj = x_te[: cfg.n_trajectory]
    n_in = x_tr.shape[1]
    log(f"[erhan] train {x_tr.shape[0]}, valid {x_va.shape[0]}, test {x_te.shape[0]}; width {cfg.width}, "
        f"depths {cfg.depths}, {cfg.seeds} seeds; {dev}")
    rbm_cfg = RBMTrainConfig(epochs=cfg.pretrain_epochs, batch_size=cfg.batch_size, lr=cfg.pretrain_lr,
                             momentum_switch=min(5, cfg.pretrain_epochs // 2), weight_decay=2e-4)
    runs, t_start = [], time.perf_counter()
    n_nets, prog = cfg.seeds * len(cfg.depths) * 2, Progress()
    n_rbms = max(cfg.depths)
    for s in range(cfg.seeds):
        gen = make_generator(seed + s, dev)
        t_rbm = [time.perf_counter()]

        def rbm_epoch(i, epoch, m, s=s, t_rbm=t_rbm):  # progress of pre-training: RBM i, epoch i/N
            now = time.perf_counter()
            log(f"  seed {seed + s} rbm {i + 1}/{n_rbms} epoch {epoch_of(epoch, cfg.pretrain_epochs)} "
                f"({prog.times(epoch, cfg.pretrain_epochs, now - t_rbm[0], key=('rbm', s, i))})")
            t_rbm[0] = now

        dbn = pretrain_stack(x_tr, [n_in] + [cfg.width] * max(cfg.depths), rbm_cfg, generator=gen,
                             callback=rbm_epoch)
        for depth in cfg.depths:
            for pre in (True, False):
                gen_ft, t_net = make_generator(10_000 * (seed + s) + 100 * depth + int(pre), dev), time.perf_counter()
                if pre:
                    net = unroll(list(dbn.rbms)[:depth], 10, generator=gen_ft)
                else:
                    net = random_classifier([n_in] + [cfg.width] * depth, 10, generator=gen_ft, device=dev)
                outputs = []
                ft = FinetuneConfig(epochs=cfg.finetune_epochs, batch_size=cfg.batch_size, lr=cfg.lr, lr_decay=0.97,
                                    top_only_epochs=0)
                # the function-space trajectory: softmax outputs on a fixed test subset after each epoch
                # (one small device-to-host copy per epoch, outside the batch loop)
                hist = finetune(net, x_tr, y_tr, ft, generator=gen_ft, valid=(x_va, y_va),
                                callback=lambda e, m, net=net: outputs.append(
                                    net.predict_proba(x_traj).float().cpu().numpy().ravel()))
                err = 100 * float(error_rate(net, x_te, y_te))
                runs.append({"seed": seed + s, "depth": depth, "pretrained": pre, "test_error": err,
                             "best_epoch": hist[-1].get("best_epoch"), "trajectory": np.stack(outputs)})
                k = len(runs) - 1
                log(f"  network {k + 1}/{n_nets}: seed {seed + s} depth {depth} "
                    f"{'pre-trained' if pre else 'random     '}: test error {err:.2f}% "
                    f"({prog.times(k, n_nets, time.perf_counter() - t_net, key='nets')})")
    summary = []
    for depth in cfg.depths:
        for pre in (True, False):
            e = np.array([r["test_error"] for r in runs if r["depth"] == depth and r["pretrained"] == pre])
            summary.append({"depth": depth, "pretrained": pre, "mean": float(e.mean()),
                            "std": float(e.std(ddof=1)) if len(e) > 1 else 0.0, "n": int(len(e))})
    return {"experiment": "erhan", "config": dataclasses.asdict(cfg), "runs": runs, "summary": summary, "seed": seed,
            "seconds": time.perf_counter() - t_start, "machine": machine_info(dev)}


def erhan_markdown(res: dict, size: str, figures: dict) -> str:
    c, m = res["config"], res["machine"]
    out = [f"# Does pre-training help? Erhan et al. 2010 ({size})", "",
           f"`{m['command']}` on {m['device_name']} ({m['device']}), torch {m['torch']}, {m['date']}; "
           f"{res['seconds']:.0f} s in all.", "",
           f"{c['n_train']} MNIST training images ({c['n_valid']} for early stopping, {c['n_test']} test), "
           f"{c['width']} sigmoid units per layer, {c['pretrain_epochs']} CD-1 epochs per layer, "
           f"{c['finetune_epochs']} backprop epochs, {c['seeds']} seeds; test error at the best validation epoch.", "",
           "| depth | pre-trained: mean ± sd | random init: mean ± sd | paper (random -> pre-trained) |",
           "| --- | --- | --- | --- |"]
    for depth in c["depths"]:
        p = next(s for s in res["summary"] if s["depth"] == depth and s["pretrained"])
        r = next(s for s in res["summary"] if s["depth"] == depth and not s["pretrained"])
        pub = ERHAN_PUBLISHED.get(depth)
        pub_s = f"{pub[0]}% -> {pub[1]}%" if pub else "-"
        out.append(f"| {depth} | {p['mean']:.2f}% ± {p['std']:.2f} (n={p['n']}) | "
                   f"{r['mean']:.2f}% ± {r['std']:.2f} (n={r['n']}) | {pub_s} |")
    out += ["", f"![test errors]({figures['hist']})", "", f"![function-space trajectories]({figures['tsne']})", "",
            "Trajectories: each network's softmax outputs on the same "
            f"{c['n_trajectory']} test images after every epoch, concatenated into one vector, all networks "
            "embedded together with t-SNE; colour is the epoch, filled markers are pre-trained networks.", ""]
    if size != "full":
        out.append("A reduced configuration (a subset of MNIST, narrower/shallower, fewer epochs than the paper): "
                   "the absolute errors are higher than the paper's; the comparison is between the columns.")
    return "\n".join(out) + "\n"


def erhan_figures(res: dict, hist_path, tsne_path, seed: int = 0) -> None:
    from sklearn.manifold import TSNE

    from deepbelief.plotting import _pyplot, figure_png

    plt = _pyplot()
    depths = res["config"]["depths"]
    fig, axes = plt.subplots(1, len(depths), figsize=(3.2 * len(depths), 3.0), dpi=120, squeeze=False, sharey=True)
    errs = [r["test_error"] for r in res["runs"]]
    bins = np.linspace(min(errs) - 0.05, max(errs) + 0.05, 16)
    for ax, d in zip(axes[0], depths):
        for pre, colour in ((True, "tab:blue"), (False, "tab:red")):
            e = [r["test_error"] for r in res["runs"] if r["depth"] == d and r["pretrained"] == pre]
            ax.hist(e, bins=bins, alpha=0.6, color=colour, label="pre-trained" if pre else "random init")
        ax.set_title(f"{d} layer{'s' if d > 1 else ''}")
        ax.set_xlabel("test error (%)")
    axes[0][0].set_ylabel("networks")
    axes[0][0].legend(fontsize=8)
    figure_png(hist_path, fig)

    traj = [r["trajectory"] for r in res["runs"]]
    pts = np.concatenate(traj)
    perplexity = float(min(30, max(2, (pts.shape[0] - 1) // 3)))
    emb = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(pts)
    fig, ax = plt.subplots(figsize=(6.0, 5.0), dpi=120)
    i = 0
    for r, t in zip(res["runs"], traj):
        e = emb[i: i + len(t)]
        i += len(t)
        ax.plot(e[:, 0], e[:, 1], color="0.8", lw=0.5, zorder=1)
        sc = ax.scatter(e[:, 0], e[:, 1], c=np.arange(len(t)), cmap="viridis", s=14, zorder=2,
                        marker="o" if r["pretrained"] else "x", vmin=0, vmax=len(t) - 1)
    ax.scatter([], [], marker="o", c="k", label="pre-trained")
    ax.scatter([], [], marker="x", c="k", label="random init")
    ax.legend(fontsize=8)
    fig.colorbar(sc, ax=ax, label="epoch")
    ax.set_title("function-space trajectories (t-SNE)")
    ax.set_xticks([])
    ax.set_yticks([])
    figure_png(tsne_path, fig)


# -- the aggregated posterior and the bound, exactly ------------------------------------
@torch.no_grad()
def _layer_conditionals(rbm, states_below, states_above):
    """log q(h | v) for all pairs (rows: below states, columns: above states), and
    log p(v | h) for all pairs, of a Bernoulli-Bernoulli RBM; both (S_below, S_above)."""
    import torch.nn.functional as F

    # log sigmoid(x) and log sigmoid(-x) rather than log(p): exact for saturated units too
    xh = rbm.hidden.preact(rbm.hidden_input(states_below))                          # (S_b, n_h)
    log_q = F.logsigmoid(xh) @ states_above.T + F.logsigmoid(-xh) @ (1 - states_above).T  # (S_b, S_a)
    xv = rbm.visible.preact(rbm.visible_input(states_above))                        # (S_a, n_v)
    log_p = states_below @ F.logsigmoid(xv).T + (1 - states_below) @ F.logsigmoid(-xv).T  # (S_b, S_a)
    return log_q, log_p


@torch.no_grad()
def variational_bound_exact(rbms, v) -> torch.Tensor:
    """The DBN's variational lower bound on log p(v), by enumeration, shape (batch,).

    With recognition q(h_1..h_{L-1} | v) = prod_i q(h_i | h_{i-1}) (each RBM's factorial
    posterior) and the generative model p(h_{L-1}) prod_i p(h_{i-1} | h_i), where the top
    RBM gives p(h_{L-1}) by its free energy (Hinton, Osindero & Teh 2006, eq. 8):

        log p(v) >= sum_h q(h | v) [log p(h_{L-1}) + sum_i log p(h_{i-1} | h_i) - log q(h | v)]

    For one RBM this is exactly log p(v). Float64, tiny layers only.
    """
    import copy

    from deepbelief import exact

    rbms = [copy.deepcopy(r).to(torch.float64) for r in rbms]
    v = v.to(torch.float64)
    top = rbms[-1]
    log_z = exact.log_partition(top)
    if len(rbms) == 1:
        return -top.free_energy(v) - log_z
    # log-weights over joint states of h_1..h_{L-1}, built layer by layer: (batch, S_1, ..., S_{L-1})
    below = v
    log_w = torch.zeros(v.shape[0], 1, dtype=torch.float64)   # sum of log p - log q so far, per path
    log_qp = torch.zeros(v.shape[0], 1, dtype=torch.float64)  # log q of the path
    for rbm in rbms[:-1]:
        states = exact.all_binary(rbm.n_hidden)
        lq, lp = _layer_conditionals(rbm, below if below is v else exact.all_binary(rbm.n_visible), states)
        if below is v:
            lq_path, lp_path = lq, lp  # (batch, S)
            log_qp = lq_path
            log_w = lp_path - lq_path
        else:
            # extend every path by the next layer's state: (batch, S_prev) x (S_prev, S) -> (batch, S_prev * S)
            log_qp = (log_qp.unsqueeze(-1) + lq.unsqueeze(0)).flatten(1)
            log_w = (log_w.unsqueeze(-1) + (lp - lq).unsqueeze(0)).flatten(1)
        below = states
    top_states = exact.all_binary(top.n_visible)
    log_prior = -top.free_energy(top_states) - log_z          # (S_top,)
    s_top = top_states.shape[0]
    log_w = log_w + log_prior.repeat(log_w.shape[1] // s_top)  # the last layer's state is the fastest index
    return (log_qp.exp() * log_w).sum(1)


@dataclass
class PosteriorConfig:
    n_visible: int = 10
    n_hidden: int = 6
    n_data: int = 2000
    epochs: int = 60
    lr: float = 0.05


def posterior_example(cfg: PosteriorConfig | None = None, *, seed: int = 0, log=print) -> dict:
    """A worked example on tiny enumerable models (all numbers exact, float64).

    Data: ``n_data`` noisy copies of four 10-bit prototypes. An RBM with ``n_hidden`` units is
    trained with CD-1. Then:

    1. the aggregated posterior q(h) = (1/N) sum_n p(h | v_n) against its factorial
       approximation prod_j q(h_j): the KL divergence between them (the multi-information
       of the hidden code) is > 0, so the next layer has structure to model;
    2. the variational bound on the mean log p(v) with 1, 2 and 3 layers: a second RBM
       initialised with W_2 = W_1^T gives exactly the same bound (the bound is tight for
       one RBM), and training it on samples of q(h | v) raises the bound; likewise a third.
    """
    from deepbelief import exact
    from deepbelief.rbm import RBM
    from deepbelief.training import train_rbm

    cfg = cfg or PosteriorConfig()
    t_start = time.perf_counter()
    gen = make_generator(seed)
    protos = (torch.rand(4, cfg.n_visible, generator=gen) < 0.5).double()
    idx = torch.randint(0, 4, (cfg.n_data,), generator=gen)
    flip = (torch.rand(cfg.n_data, cfg.n_visible, generator=gen) < 0.1).double()
    data = (protos[idx] - flip).abs()

    train = RBMTrainConfig(epochs=cfg.epochs, batch_size=20, lr=cfg.lr, weight_decay=0.0,
                           monitor_size=min(1000, cfg.n_data))
    r1 = RBM(cfg.n_visible, cfg.n_hidden, generator=gen).double()
    train_rbm(r1, data, train, generator=gen)
    bound1 = float(variational_bound_exact([r1], data).mean())

    hs = exact.all_binary(cfg.n_hidden)
    with torch.no_grad():
        ph = r1.mean_hidden(data)                                           # (N, n_h)
        log_post = torch.log(ph) @ hs.T + torch.log1p(-ph) @ (1 - hs).T     # (N, S_h): log p(h | v_n)
        agg = log_post.exp().mean(0)                                        # q(h), (S_h,)
        marg = agg @ hs                                                     # q(h_j = 1)
        fact = (torch.log(marg) @ hs.T + torch.log1p(-marg) @ (1 - hs).T).exp()
        kl_fact = float((agg * (agg.log() - fact.log())).sum())
        log_prior1 = -r1.free_energy_hidden(hs) - exact.log_partition(r1)  # layer 1's own prior p(h)
        kl_prior = float((agg * (agg.log() - log_prior1)).sum())
        top = torch.argsort(agg, descending=True)[:6]
        top_states = [{"h": "".join(str(int(b)) for b in hs[i]), "q": float(agg[i]), "factorial": float(fact[i]),
                       "prior": float(log_prior1[i].exp())} for i in top]
    log(f"[posterior] log p(v) of RBM 1 (= the 1-layer bound): {bound1:.4f} nats")
    log(f"  KL(q(h) || prod_j q(h_j)) = {kl_fact:.4f} nats; KL(q(h) || p_1(h)) = {kl_prior:.4f} nats")

    def next_layer(below_rbm, below_data, train_it: bool):
        # initialised as the transpose of the layer below: the bound is then unchanged
        r = RBM(below_rbm.n_hidden, below_rbm.n_visible, generator=gen).double()
        with torch.no_grad():
            r.W.copy_(below_rbm.W.T)
            r.visible.bias.copy_(below_rbm.hidden.bias)
            r.hidden.bias.copy_(below_rbm.visible.bias)
        samples = below_rbm.sample_hidden(below_data, gen)  # one posterior sample per row
        if train_it:
            train_rbm(r, samples, dataclasses.replace(train, init_visible_bias=False), generator=gen)
        return r, samples

    r2_init, _ = next_layer(r1, data, train_it=False)
    bound2_init = float(variational_bound_exact([r1, r2_init], data).mean())
    r2, h1 = next_layer(r1, data, train_it=True)
    bound2 = float(variational_bound_exact([r1, r2], data).mean())
    r3_init, _ = next_layer(r2, h1, train_it=False)
    bound3_init = float(variational_bound_exact([r1, r2, r3_init], data).mean())
    r3, _ = next_layer(r2, h1, train_it=True)
    bound3 = float(variational_bound_exact([r1, r2, r3], data).mean())
    log(f"  bound, 2 layers: {bound2_init:.4f} at W2 = W1^T, {bound2:.4f} after training layer 2")
    log(f"  bound, 3 layers: {bound3_init:.4f} at W3 = W2^T, {bound3:.4f} after training layer 3")
    # the theorem's conditions: each new layer maximises E_q[log p(h)] under the exact
    # aggregated posterior q of the layers below (exact gradient ascent from W = W_below^T)
    q1 = _aggregated_posterior([r1], data)
    r2e = _fit_exact(r2_init, q1)
    q2 = _aggregated_posterior([r1, r2e], data)
    r3e = _fit_exact(next_layer(r2e, h1, train_it=False)[0], q2)
    exact_ml = {"2_init": bound2_init, "2": float(variational_bound_exact([r1, r2e], data).mean())}
    exact_ml["3_init"] = float(variational_bound_exact([r1, r2e, next_layer(r2e, h1, train_it=False)[0]],
                                                       data).mean())
    exact_ml["3"] = float(variational_bound_exact([r1, r2e, r3e], data).mean())
    log(f"  exact maximum likelihood on q: 2 layers {exact_ml['2']:.4f}, 3 layers {exact_ml['3_init']:.4f} at "
        f"W3 = W2^T, {exact_ml['3']:.4f} trained")
    return {"bound_exact_ml": exact_ml,"experiment": "posterior", "config": dataclasses.asdict(cfg), "seed": seed,
            "log_p_rbm1": bound1, "kl_factorial": kl_fact, "kl_prior": kl_prior, "top_states": top_states,
            "bound": {"1": bound1, "2_init": bound2_init, "2": bound2, "3_init": bound3_init, "3": bound3},
            "seconds": time.perf_counter() - t_start, "machine": machine_info("cpu")}


def _aggregated_posterior(rbms, data) -> torch.Tensor:
    """q(h_L) = mean over the data of the recognition distribution of the top hidden layer,
    over all its states (stacked factorial posteriors, enumerated): shape (2^n_L,)."""
    from deepbelief import exact

    below, dist = data, None
    for r in rbms:
        states = exact.all_binary(r.n_hidden)
        rows = below if dist is None else exact.all_binary(r.n_visible)
        lq, _ = _layer_conditionals(r, rows, states)
        cond = lq.exp()  # (rows, S): q(h | row)
        dist = cond.mean(0) if dist is None else dist @ cond
        below = states
    return dist


def _fit_exact(rbm, q, steps: int = 400, lr: float = 0.1):
    """Gradient ascent on E_q[log p(v)] of ``rbm``'s visible marginal, with the exact
    gradient (enumeration): a copy, float64. Small steps of exact ascent cannot lower it."""
    import copy

    from deepbelief import exact

    r = copy.deepcopy(rbm).to(torch.float64)
    states = exact.all_binary(r.n_visible)
    for _ in range(steps):
        g = exact.log_likelihood_grad(r, states, q)
        with torch.no_grad():
            for name, p in r.named_parameters():
                p.add_(g[name], alpha=lr)
    return r


def posterior_markdown(res: dict) -> str:
    c, b, m = res["config"], res["bound"], res["machine"]
    out = ["# The aggregated posterior is not factorial, and when an added layer improves the bound", "",
           f"`{m['command']}` on {m['device_name']} (cpu, {m['threads']} threads), torch {m['torch']}, {m['date']}; "
           f"{res['seconds']:.0f} s; seed {res['seed']}; "
           "every number is exact (enumeration in float64, `deepbelief.exact`), none is sampled.", "",
           f"Data: {c['n_data']} noisy copies (10% bit flips) of four random {c['n_visible']}-bit prototypes. "
           f"RBM 1: {c['n_visible']} visible, {c['n_hidden']} hidden units, CD-1, {c['epochs']} epochs.", "",
           "## 1. The aggregated posterior q(h) = mean over the data of p(h | v)", "",
           f"- KL(q(h) || prod_j q(h_j)) = **{res['kl_factorial']:.4f} nats**: the hidden code's units are "
           "dependent when averaged over the data, although p(h | v) factorises for each v.",
           f"- KL(q(h) || p_1(h)) = **{res['kl_prior']:.4f} nats**: RBM 1's own prior over h is not the "
           "aggregated posterior either; a better model of q(h) makes a better generative model.", "",
           "| h | q(h) | prod_j q(h_j) | p_1(h) |", "| --- | --- | --- | --- |"]
    out += [f"| `{s['h']}` | {s['q']:.4f} | {s['factorial']:.4f} | {s['prior']:.4f} |" for s in res["top_states"]]
    out += ["", "## 2. Each layer improves the variational bound on log p(v)", "",
            "| model | mean bound on log p(v) (nats) |", "| --- | --- |",
            f"| RBM 1 alone (exact log p(v)) | {b['1']:.4f} |",
            f"| + RBM 2 initialised W2 = W1^T | {b['2_init']:.4f} |",
            f"| + RBM 2 trained on samples of q(h1 \\| v) | {b['2']:.4f} |",
            f"| + RBM 3 initialised W3 = W2^T | {b['3_init']:.4f} |",
            f"| + RBM 3 trained | {b['3']:.4f} |", "",
            "With the transposed initialisation the bound equals the layer below's value exactly (the argument "
            "of Hinton, Osindero & Teh 2006). The theorem then says the bound rises if the new layer raises "
            "E_q[log p(h)], the log-likelihood of the *exact* aggregated posterior q of the layers below. The "
            "rows above train with CD-1 on one posterior sample per datum: CD-1 is not maximum likelihood, and "
            "2,000 samples are not q, so nothing guarantees the rise, and a layer can lower the bound. The "
            "table below meets the conditions: each new layer is fitted by exact gradient ascent on "
            "E_q[log p(h)] (enumeration) from the transposed initialisation, and the bound cannot fall.", "",
            "| model, new layers fitted by exact maximum likelihood on q | mean bound (nats) |", "| --- | --- |",
            f"| + RBM 2 initialised W2 = W1^T | {res['bound_exact_ml']['2_init']:.4f} |",
            f"| + RBM 2 fitted | {res['bound_exact_ml']['2']:.4f} |",
            f"| + RBM 3 initialised W3 = W2^T | {res['bound_exact_ml']['3_init']:.4f} |",
            f"| + RBM 3 fitted | {res['bound_exact_ml']['3']:.4f} |", ""]
    return "\n".join(out) + "\n"


# -- command line -------------------------------------------------------------------------
def main_from_args(args) -> int:
    size = "quick" if args.quick else "reduced" if args.reduced else "full"
    overrides = {}
    if args.config:
        from deepbelief.config import load_toml

        overrides = load_toml(args.config)
    overrides.update(parse_sets(getattr(args, "set", None) or []))
    results = _output_folder(args)
    data_dir = args.data_dir or _default_data_dir()
    if args.experiment == "lecture14":
        if args.reduced:
            raise ConfigError("--reduced applies to 'erhan'; lecture14 has --quick and the full size")
        cfg = _from_dict(Lecture14Config, {**dataclasses.asdict(Lecture14Config.preset(size)), **overrides})
        res = lecture14(cfg, device=args.device, seed=args.seed, data_dir=data_dir, results_dir=args.results)
        md, fig = results / f"lecture14-{size}.md", results / f"lecture14-{size}.png"
        lecture14_figure(res, fig)
        text = lecture14_markdown(res, size) + f"\n![lecture 14 table]({fig.name})\n"
    elif args.experiment == "erhan":
        cfg = _from_dict(ErhanConfig, {**dataclasses.asdict(ErhanConfig.preset(size)), **overrides})
        res = erhan(cfg, device=args.device, seed=args.seed, data_dir=data_dir)
        md = results / f"erhan-{size}.md"
        figs = {"hist": f"erhan-{size}-hist.png", "tsne": f"erhan-{size}-tsne.png"}
        erhan_figures(res, results / figs["hist"], results / figs["tsne"], seed=args.seed)
        text = erhan_markdown(res, size, figs)
        for r in res["runs"]:  # the trajectories are in the figure; keep the JSON small
            r.pop("trajectory")
    else:
        cfg = _from_dict(PosteriorConfig, {**dataclasses.asdict(PosteriorConfig()), **overrides})
        res = posterior_example(cfg, seed=args.seed)
        md = results / "posterior.md"
        text = posterior_markdown(res)
    from deepbelief.io import atomic_write_bytes

    atomic_write_bytes(md, text.encode())
    print(text)
    print(f"wrote {md}")
    if args.out:
        atomic_write_bytes(args.out, json.dumps(res, indent=2, default=_json_default).encode())
        print(f"wrote {args.out}")
    return 0


def _output_folder(args) -> Path:
    """Where the report goes: ``--output-dir``, else ``<--docs-dir>/results`` (how
    benchmarks/ update the repository's docs), else ``./deepbelief-results/<experiment>``
    under the working directory: never the package's own docs by default. Created and
    checked for writing before the experiment runs."""
    import os

    if args.output_dir:
        flag, folder = "--output-dir", Path(args.output_dir)
    elif args.docs_dir:
        flag, folder = "--docs-dir", Path(args.docs_dir) / "results"
    else:
        flag, folder = "--output-dir", Path("deepbelief-results") / args.experiment
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        file = next((f for f in (folder, *folder.parents) if f.is_file()), None)
        why = f"cannot be created: {str(file)!r} is a file, not a folder" if file else f"cannot be created: {exc.strerror}"
        raise ConfigError(f"{flag}: folder {str(folder)!r} {why}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag}: folder {str(folder)!r} is not writable")
    return folder


def parse_sets(items: list[str]) -> dict:
    """``["a=1", "b=[1,2]", "c=name"]`` -> ``{"a": 1, "b": [1, 2], "c": "name"}`` (TOML values,
    bare words as strings)."""
    from deepbelief.config import _toml

    if _toml is None:  # pragma: no cover - Python 3.10 without tomli
        raise ConfigError("--set needs 'tomli' on Python < 3.11 (pip install tomli)")
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = _toml.loads(f"v = {value}")["v"]
        except _toml.TOMLDecodeError:
            out[key.strip()] = value
    return out


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    return str(o)


def _default_data_dir():
    """../shared/data/mnist from the working directory (a repo root), else /work/shared/data/mnist,
    else None (the library's own search: $DEEPBELIEF_DATA, the cache)."""
    for p in (Path("..") / "shared" / "data" / "mnist", Path("/work/shared/data/mnist")):
        if p.is_dir():
            return str(p)
    return None

