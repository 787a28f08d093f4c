"""Named training recipes: the published set-ups, as data, and the one function that runs them.

A recipe is a dataclass (so a TOML file or the command line can override any field):
the data set, the layer sizes, the RBM training config of every layer, and the
fine-tuning config. ``run_recipe`` is what ``deepbelief train`` and the benchmarks call:

    data -> greedy pre-training (training.pretrain_stack) -> unroll (finetune.unroll)
         -> backprop with early stopping on validation -> optional retrain on all
         training data for the chosen number of epochs -> test error.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from deepbelief.errors import ConfigError, check_choice, check_int, resolve_device
from deepbelief.finetune import FinetuneConfig, error_rate, finetune, unroll
from deepbelief.training import RBMTrainConfig, make_generator, pretrain_stack


@dataclass
class Recipe:
    """Everything a ``train`` run needs besides the seed and the device."""

    name: str = "default"
    dataset: str = "digits"
    #: hidden layer sizes (or unit config dicts), bottom first; the input size comes from the data
    layers: list = field(default_factory=lambda: [200, 200])
    #: unit type of the data layer: bernoulli or gaussian
    visible: str = "bernoulli"
    #: unit type of the hidden layers: bernoulli, nrelu or stepped_sigmoid
    hidden: str = "bernoulli"
    rbm: RBMTrainConfig = field(default_factory=lambda: RBMTrainConfig(epochs=20, batch_size=20, lr=0.05))
    finetune: FinetuneConfig | None = field(default_factory=lambda: FinetuneConfig(epochs=40, batch_size=20, lr=0.1))
    #: size of the validation split taken from the end of the training set (0: none)
    n_valid: int = 297
    #: after early stopping, fine-tune again on train + valid for the chosen epochs
    retrain_all: bool = False

    def validate(self) -> "Recipe":
        if not self.layers:
            raise ConfigError("layers must list at least one hidden layer size, got []")
        check_choice("visible", self.visible, {"bernoulli", "gaussian"})
        check_choice("hidden", self.hidden, {"bernoulli", "nrelu", "stepped_sigmoid"})
        check_int("n_valid", self.n_valid, minimum=0)
        self.rbm.validate()
        if self.finetune is not None:
            self.finetune.validate()
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Recipe":
        d = dict(d)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown recipe option(s) {unknown}; valid: {sorted(names)}")
        if isinstance(d.get("rbm"), dict):
            d["rbm"] = RBMTrainConfig.from_dict(d["rbm"])
        if d.get("finetune") is False:  # how a TOML file says "no fine-tuning" (TOML has no null)
            d["finetune"] = None
        if isinstance(d.get("finetune"), dict):
            d["finetune"] = FinetuneConfig.from_dict(d["finetune"])
        return cls(**d).validate()


RECIPES: dict[str, Recipe] = {
    # the embedded 8x8 digits: a minute on a laptop CPU
    "default": Recipe(),
    # Hinton & Salakhutdinov (2006) / Hinton, Osindero & Teh (2006): 784-500-500-2000-10,
    # 50 epochs of CD-1 per layer with the practical guide's settings, then backprop.
    "hinton2006": Recipe(
        name="hinton2006",
        dataset="mnist",
        layers=[500, 500, 2000],
        rbm=RBMTrainConfig(epochs=50, batch_size=100, lr=0.1, momentum=0.5, final_momentum=0.9,
                           momentum_switch=5, weight_decay=2e-4),
        finetune=FinetuneConfig(epochs=50, batch_size=100, lr=0.1, lr_decay=0.97, momentum=0.9,
                                top_only_epochs=5),
        n_valid=10_000,
        retrain_all=True,
    ),
}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ConfigError(f"recipe must be one of {sorted(RECIPES)}, got {name!r}")
    return copy.deepcopy(RECIPES[name])


def layer_specs(recipe: Recipe, n_inputs: int) -> list:
    """Units configs for every layer: the data layer, then the hidden layers."""
    vis = {"type": recipe.visible, "n": n_inputs}
    hidden = [s if isinstance(s, dict) else {"type": recipe.hidden, "n": check_int("layers[i]", s, minimum=1)}
              for s in recipe.layers]
    return [vis] + hidden


def run_recipe(
    recipe: Recipe,
    *,
    data_dir: str | Path | None = None,
    device: str = "auto",
    seed: int = 0,
    log: Callable[[str], None] | None = print,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    dataset=None,
    logger=None,
) -> dict:
    """Pre-train, fine-tune and test ``recipe``. Returns a dict with the trained ``dbn``,
    the fine-tuned ``net``, ``test_error``, ``valid_error``, ``best_epoch`` and timings.
    ``logger``: a ``metrics_log.MetricsLogger`` that receives every per-epoch row."""
    from deepbelief.data import load_dataset

    recipe.validate()
    dev = resolve_device(device)
    log = log or (lambda s: None)
    t_start = time.perf_counter()
    ds = dataset if dataset is not None else load_dataset(recipe.dataset, data_dir=data_dir)
    x_all = ds.x_train.to(dev)
    y_all = ds.y_train.to(dev)
    n_valid = min(recipe.n_valid, x_all.shape[0] // 2)
    x_tr, y_tr = x_all[: x_all.shape[0] - n_valid], y_all[: x_all.shape[0] - n_valid]
    x_va, y_va = (x_all[x_all.shape[0] - n_valid:], y_all[x_all.shape[0] - n_valid:]) if n_valid else (None, None)
    x_te, y_te = ds.x_test.to(dev), ds.y_test.to(dev)
    standardize = None
    if recipe.visible == "gaussian":  # Gaussian visibles expect zero mean, unit variance data
        mu, sd = x_tr.mean(0), x_tr.std(0).clamp_min(1e-2)
        standardize = (mu, sd)
        x_tr, x_te = (x_tr - mu) / sd, (x_te - mu) / sd
        x_va = None if x_va is None else (x_va - mu) / sd
        x_all = (x_all - mu) / sd
    gen = make_generator(seed, dev)
    specs = layer_specs(recipe, x_tr.shape[1])
    log(f"[{recipe.name}] data {recipe.dataset}: train {x_tr.shape[0]}, valid {n_valid}, test {x_te.shape[0]}; "
        f"layers {[s['n'] for s in specs]}; device {dev}")

    def on_epoch(layer, epoch, m):
        gap = f" fe_gap {m['free_energy_gap']:+.3f}" if "free_energy_gap" in m else ""
        log(f"  rbm {layer} epoch {epoch + 1:3d}/{recipe.rbm.epochs}: recon {m['recon_error']:.4f}{gap} "
            f"({m['seconds']:.2f}s)")
        if logger is not None:
            logger.pretrain_callback(layer, epoch, m)

    t0 = time.perf_counter()
    dbn = pretrain_stack(x_tr, specs, recipe.rbm, generator=gen, valid=x_va, callback=on_epoch,
                         checkpoint_dir=checkpoint_dir, resume=resume)
    pretrain_s = time.perf_counter() - t0
    result = {"recipe": recipe.to_dict(), "seed": seed, "device": str(dev), "dbn": dbn, "pretrain_seconds": pretrain_s,
              "standardize": standardize}
    if recipe.finetune is None:
        result["total_seconds"] = time.perf_counter() - t_start
        return result

    def on_ft(epoch, m):
        va = f" valid error {100 * m['valid_error']:.2f}%" if "valid_error" in m else ""
        log(f"  finetune epoch {epoch + 1:3d}/{recipe.finetune.epochs}: loss {m['loss']:.4f}{va} ({m['seconds']:.2f}s)")
        if logger is not None:
            logger.log("finetune" if "valid_error" in m or not n_valid else "retrain", epoch, m)

    t0 = time.perf_counter()
    net = unroll(dbn, int(ds.n_classes), generator=gen)
    hist = finetune(net, x_tr, y_tr, recipe.finetune, generator=gen,
                    valid=(x_va, y_va) if n_valid else None, callback=on_ft)
    best_epoch = hist[-1].get("best_epoch", len(hist) - 1)
    valid_error = float(error_rate(net, x_va, y_va)) if n_valid else None
    if recipe.retrain_all and n_valid:
        log(f"  retraining on all {x_all.shape[0]} training images for {best_epoch + 1} epochs")
        net = unroll(dbn, int(ds.n_classes), generator=gen)
        ft = dataclasses.replace(recipe.finetune, epochs=best_epoch + 1)
        finetune(net, x_all, y_all, ft, generator=gen, callback=on_ft)
    finetune_s = time.perf_counter() - t0
    test_error = float(error_rate(net, x_te, y_te))
    log(f"[{recipe.name}] test error {100 * test_error:.2f}% on {x_te.shape[0]} images "
        f"(pre-training {pretrain_s:.1f}s, fine-tuning {finetune_s:.1f}s)")
    result.update(net=net, test_error=test_error, valid_error=valid_error, best_epoch=best_epoch,
                  finetune_seconds=finetune_s, total_seconds=time.perf_counter() - t_start, history=hist)
    return result
