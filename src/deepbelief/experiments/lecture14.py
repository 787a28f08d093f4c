"""Lecture 14's MNIST table: the rows as recipes (recipes.RECIPES), over seeds."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from deepbelief.errors import ConfigError, check_int, resolve_device
from deepbelief.experiments.common import PUBLISHED, _sync, machine_info

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
    #: fine-tuning epochs of every row (None: the recipe's); top-only epochs, the momentum ramp
    #: and the patience shrink with it, the rate's decay per epoch stays
    finetune_epochs: int | None = None
    #: hidden layer sizes (None: the recipes' 500-500-2000)
    layers: list | None = None
    #: more recipe fields for every row, as nested tables (e.g. {"finetune": {"cg_batch_size": 500}})
    recipe_overrides: dict = field(default_factory=dict)

    @classmethod
    def preset(cls, size: str) -> "Lecture14Config":
        if size == "quick":  # minutes on a 2-core CPU: 12,000 images (2,000 to validate), short schedules
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
            # the rate's decay per epoch stays the recipe's: decaying to the recipe's final rate
            # within the short schedule was worse on both SGD rows (--quick, seed 0: random init
            # 7.39% -> 7.65%, dropout 4.67% -> 5.16%; benchmarks/RESULTS.md, 2026-12-07)
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

    Each row is its recipe (LECTURE14_ROWS) run by ``runner.run_recipe`` for ``cfg.seeds``
    seeds; a row's ``test_errors`` are the seeds' test errors (%), ``test_error`` their mean,
    ``std`` their sample standard deviation. Rows not in ``cfg.rows`` have ``test_error``
    None ("not run"). A row whose pre-training (``pretraining_key``) and seed equal an
    earlier row's reuses that row's stack (``run_recipe(pretrained=...)``: the same weights and
    the same generator state as pre-training afresh), its time counted in both rows; today's
    two pre-trained rows start their RBMs differently (each the start measured best for its
    fine-tuning), so each pre-trains its own. The
    generative DBN's row is never run here (``benchmarks/mnist_hot2006.py`` trains it); with
    ``results_dir`` a recorded run's figure is attached as ``recorded``, reported beside,
    never in place of, what this run measured.
    """
    from deepbelief.recipes import RECIPES, pretraining_key
    from deepbelief.runner import run_recipe

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
    rows, stacks, owners = [], {}, {}
    for name, recipe_name in LECTURE14_ROWS.items():
        pub, src = PUBLISHED[name]
        row = {"name": name, "recipe": recipe_name, "published": pub, "source": src, "test_error": None,
               "std": None, "test_errors": [], "seconds": None, "n_seeds": 0}
        if recipe_name in cfg.rows:
            recipe = cfg.recipe(recipe_name)
            row["settings"] = recipe.to_dict()
            row["stack_from"] = None  # the row whose pre-trained stack this one reused, if any
            seconds = []
            for s in range(seed, seed + cfg.seeds):
                key = pretraining_key(recipe, s)
                _sync(dev)
                t0 = time.perf_counter()
                res = run_recipe(recipe, dataset=ds, device=dev, seed=s, log=log, pretrained=stacks.get(key))
                _sync(dev)
                extra = res["pretrain_seconds"] if key in stacks else 0.0  # the shared stack's time, counted here too
                if key in stacks:
                    row["stack_from"] = owners[key]
                if "pretrained" in res:
                    stacks.setdefault(key, res["pretrained"])
                    owners.setdefault(key, name)
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

    Reads every JSON in ``results_dir`` and keeps the runs of the generative DBN:
    ``benchmarks/mnist_hot2006.py``'s output (``updown_test_error_pct``, or the older
    ``updown_test_error`` as a fraction; quick or unfinished runs are skipped), and files whose
    name mentions up-down or the generative DBN holding a ``test_error`` at the top level or
    one level down. Their ``paper`` and ``judge`` dicts hold other models' errors (the
    published figure, an MLP judging the samples) and are never read. Of several runs the one
    of the ``hot2006`` recipe as it is now wins, then the newest (``machine.date``), so a row's
    figure is the recipe's own wherever it is shown. Returns {} when none is recorded, else
    ``test_error`` (percent), ``seconds``, ``file``, ``date``, ``device`` and ``same_recipe``.
    """
    from deepbelief.recipes import get_recipe

    folder = Path(results_dir)
    if not folder.is_dir():
        return {}
    recipe_now = json.dumps(get_recipe("hot2006").to_dict(), sort_keys=True)
    found = []
    for path in sorted(folder.glob("*.json")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if not isinstance(doc, dict) or doc.get("quick") is True or doc.get("finished") is False:
            continue
        rec = _recorded_error(doc, named=any(k in path.stem.lower() for k in
                                             ("updown", "up_down", "up-down", "gendbn", "generative")))
        if rec is None:
            continue
        machine = doc.get("machine") if isinstance(doc.get("machine"), dict) else {}
        date = str(machine.get("date") or doc.get("date") or "").replace("T", " ")[:16]
        same = isinstance(doc.get("recipe"), dict) and json.dumps(doc["recipe"], sort_keys=True) == recipe_now
        found.append({**rec, "file": str(path), "date": date or None, "device": machine.get("device_name"),
                      "same_recipe": same})
    return max(found, key=lambda r: (r["same_recipe"], r["date"] or "")) if found else {}


def _recorded_error(doc: dict, named: bool) -> dict | None:
    v = doc.get("updown_test_error_pct")
    if isinstance(v, (int, float)):
        return {"test_error": float(v), "seconds": doc.get("updown_seconds") or doc.get("total_seconds_this_run")}
    v = doc.get("updown_test_error")
    if isinstance(v, (int, float)):
        return {"test_error": float(v) if v > 1 else 100 * float(v),
                "seconds": doc.get("updown_seconds") or doc.get("total_seconds")}
    if not named:
        return None
    for d in [doc] + [v for k, v in doc.items() if isinstance(v, dict) and k not in ("paper", "judge", "machine")]:
        for key in ("test_error_percent", "test_error"):
            v = d.get(key)
            if isinstance(v, (int, float)):
                pct = float(v) if key.endswith("percent") or v > 1 else 100 * float(v)
                return {"test_error": pct, "seconds": d.get("seconds") or d.get("total_seconds")
                        or doc.get("total_seconds")}
    return None


def _shown_path(file: str) -> str:
    """A recorded file's path relative to the working folder when it lies under it (a report
    names no machine's folders), else as given."""
    try:
        return str(Path(file).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return file


def lecture14_markdown(res: dict, size: str) -> str:
    from deepbelief.recipes import get_recipe

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
           f"settings in docs/2-training.md)" + (f", changed here by {changed}" if changed else ", unchanged") + ".", "",
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
        src = r["source"]
        if rec:
            which = " of the recipe as it is now" if rec.get("same_recipe") else ""
            where = ", ".join(x for x in (f"`{_shown_path(rec['file'])}`", rec.get("date"), rec.get("device")) if x)
            src += f"; not run here: a recorded run{which} ({where}) measured {rec['test_error']:.2f}%"
        out.append(f"| {names[r['name']]} | `{r.get('recipe', '-')}` | {ours} | {r['published']}% | {secs} | {src} |")
    shared = [r for r in res["rows"] if r.get("stack_from")]
    pretrained_rows = [r for r in res["rows"] if r.get("test_error") is not None
                       and (r.get("settings") or {}).get("init") == "pretrained"]
    if shared:
        out += [""] + [f"{names[r['name']]} reused the pre-trained stack of {names[r['stack_from']]} (the same "
                       "pre-training and seed); that pre-training's time is counted in both rows." for r in shared]
    elif len(pretrained_rows) > 1:
        out += ["", "Each pre-trained row pre-trained its own stack (their pre-training settings differ)."]
    out += [""]
    if changed:
        out.append("The settings differ from the recipes (above): compare the ordering of the rows, not the "
                   "absolute numbers, with the published column.")
        drop = [r for r in res["rows"] if r.get("test_error") is not None
                and ((r.get("settings") or {}).get("finetune") or {}).get("dropout")]
        if drop and c.get("finetune_epochs") is not None:
            out += ["", f"Dropout fine-tuning pays off only over hundreds of epochs (the recipe: "
                        f"{get_recipe(drop[0]['recipe']).finetune.epochs:,}); in {c['finetune_epochs']} epochs its "
                        "row is expected to trail pre-training + backprop, whose conjugate gradients converge in "
                        "a few (docs/6-experiments.md has the full-size figures)."]
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
