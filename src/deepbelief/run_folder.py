"""A recipe run's checkpoint folder: ``run.json`` (the recipe and seed it was made by, compared
on resume) and the resume rule for a new or empty folder (runner.run_recipe)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from deepbelief.checkpoint import check_same_config, make_folder
from deepbelief.errors import ConfigError
from deepbelief.finetune import FinetuneConfig
from deepbelief.io import atomic_write_bytes, read_metadata
from deepbelief.recipes import RESUME_MAY_CHANGE, Recipe
from deepbelief.wake_sleep import UpDownConfig


def resume_note(folder: Path) -> str | None:
    """What ``resume`` will do in ``folder`` when there is nothing to continue."""
    if not folder.exists():
        return (f"resume: checkpoint folder {str(folder)!r} does not exist, so there is nothing to continue: "
                "starting a new run there (check the --checkpoint-dir name if you meant an existing run)")
    if not (folder / "run.json").exists():
        return f"resume: no run.json in {str(folder)!r}, so there is nothing to continue: starting a new run there"
    return None


def retrain_resumable(path, ft: FinetuneConfig, log) -> bool:
    """False when the retraining checkpoint was made for another number of epochs: the
    fine-tuning before it was extended on resume (more ``finetune.epochs``) and chose
    another best epoch, so retraining starts afresh instead of continuing a stale run."""
    if path is None or not Path(path).exists():
        return True
    saved = (read_metadata(path).get("train") or {}).get("epochs")
    if saved == ft.epochs:
        return True
    log(f"  retraining afresh: {path.name} was made for {saved} epochs, fine-tuning now chose {ft.epochs}")
    return False


def prepare(checkpoint_dir, recipe: Recipe, seed: int, resume: bool) -> Path:
    """Create the folder and record (or, on resume, compare) the run's recipe and seed.

    A resumed run with other settings would silently mix two runs, so any difference is
    an error naming the fields that differ.
    """
    folder = make_folder(checkpoint_dir, "checkpoint_dir")
    run = {"recipe": recipe.to_dict(), "seed": seed}
    path = folder / "run.json"
    if resume and path.exists():
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"checkpoint_dir {str(folder)!r}: run.json is unreadable ({exc})") from None
        flat_saved = {"seed": saved.get("seed"), **flatten(saved.get("recipe") or {})}
        flat_now = {"seed": seed, **flatten(run["recipe"])}
        # an option run.json lacks was added since: its default is what that run did
        defaults = {**flatten(Recipe().to_dict()), **flatten({"finetune": dataclasses.asdict(FinetuneConfig()),
                                                                 "updown": dataclasses.asdict(UpDownConfig())})}
        flat_saved.update({k: defaults[k] for k in flat_now if k not in flat_saved and k in defaults})
        # finetune.fast picks autograd or the hand-written step: the same run up to float
        # rounding (and run.json files from before the option lack it); more fine-tuning or
        # up-down epochs continue those phases. rbm.epochs may not change: finished layers
        # are not retrained, so the stack would mix two schedules
        check_same_config(path, flat_saved, flat_now, allowed=RESUME_MAY_CHANGE)
    atomic_write_bytes(path, json.dumps(run, indent=2, sort_keys=True).encode())
    return folder


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
