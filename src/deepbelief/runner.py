"""``run_recipe``: the one runner of every recipe (recipes.py), discriminative or generative.

    data -> greedy pre-training (stacking) -> unroll (finetune.unroll) -> backprop with
         early stopping on validation -> optional retrain on all training data -> test error
    generative recipes: data -> greedy training with labels (stacking.pretrain_generative)
         -> up-down on the training split, then on all of it (wake_sleep) -> test error

Both kinds share the data split, the checkpoint folder (its lock, ``run.json`` and the
resume rule), the progress lines and the metrics logger.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

from deepbelief.errors import ConfigError, check_int, resolve_device
from deepbelief import run_folder
from deepbelief.finetune import error_rate, finetune, random_classifier, unroll
from deepbelief.progress import Progress, epoch_of, fmt_seconds
from deepbelief.recipes import Recipe, layer_specs, pretraining_key
from deepbelief.stacking import pretrain_generative, pretrain_stack
from deepbelief.training import make_generator
from deepbelief.units import unit_type

__all__ = ["run_recipe"]


def _splits(recipe: Recipe, data_dir, dataset, dev):
    """Load the recipe's data set on ``dev`` and cut its validation split from the end of
    the training set. Returns (ds, all, train, valid, test, n_valid); each part is (x, y)
    and valid is (None, None) when n_valid is 0."""
    from deepbelief.data import load_dataset

    ds = dataset if dataset is not None else load_dataset(recipe.dataset, data_dir=data_dir,
                                                          min_contrast=recipe.min_contrast)
    x_all, y_all = ds.x_train.to(dev), ds.y_train.to(dev)
    n_valid = min(recipe.n_valid, x_all.shape[0] // 2)
    cut = x_all.shape[0] - n_valid
    valid = (x_all[cut:], y_all[cut:]) if n_valid else (None, None)
    return ds, (x_all, y_all), (x_all[:cut], y_all[:cut]), valid, (ds.x_test.to(dev), ds.y_test.to(dev)), n_valid


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
    checkpoint_every: int = 1,
    logger=None,
    after_greedy: Callable | None = None,
    pretrained: dict | None = None,
) -> dict:
    """Pre-train, fine-tune and test ``recipe``. Returns a dict with the trained ``dbn``,
    the fine-tuned ``net``, ``test_error``, ``valid_error``, ``best_epoch`` and timings.

    With ``checkpoint_dir``, every phase checkpoints there every ``checkpoint_every``
    epochs (``layer<i>.ckpt.safetensors``, ``finetune.ckpt.safetensors``,
    ``retrain.ckpt.safetensors``) and ``run.json`` records the recipe and seed; ``resume``
    continues a killed run and ends with the weights an uninterrupted run would have.

    ``logger``: a ``metrics_log.MetricsLogger`` that receives every per-epoch row.
    ``after_greedy``: generative recipes only, called as ``after_greedy(model, result)``
    between greedy training and up-down (e.g. to judge the greedy model's samples).

    While it runs, the process holds an OS lock on ``checkpoint_dir`` (a second run on it
    is refused) and first deletes temporary files a killed run left there. ``resume``
    without a checkpoint to continue (a new or empty folder) logs that and starts afresh.

    ``pretrained``: the ``result["pretrained"]`` of an earlier run of a recipe with the same
    pre-training (``pretraining_key``: data, layers, units, RBM configs, validation split) and
    seed: its stack is reused and the generator continues from the state it had after
    pre-training, so the run equals one that pre-trained afresh (lecture14 fine-tunes one
    stack two ways this way)."""
    from deepbelief import checkpoint as ck
    from deepbelief import distributed

    recipe.validate()
    check_int("checkpoint_every", checkpoint_every, minimum=1)
    if resume and checkpoint_dir is None:
        raise ConfigError("resume needs a checkpoint_dir (--checkpoint-dir) to resume from, got None")
    kw = dict(data_dir=data_dir, device=device, seed=seed, log=log, checkpoint_dir=checkpoint_dir, resume=resume,
              dataset=dataset, checkpoint_every=checkpoint_every, logger=logger, after_greedy=after_greedy,
              pretrained=pretrained)
    if pretrained is not None and pretrained.get("key") != pretraining_key(recipe, seed):
        raise ConfigError(f"pretrained: the stack was made by another pre-training or seed ({pretrained.get('key')}), "
                          f"not this recipe's ({pretraining_key(recipe, seed)})")
    if checkpoint_dir is None or not distributed.is_main():  # ranks > 0 share rank 0's folder and lock
        return _run_recipe(recipe, **kw)
    note = run_folder.resume_note(Path(checkpoint_dir)) if resume else None
    with ck.hold_folder(checkpoint_dir, log=log):
        if note and log:
            log(note)
        return _run_recipe(recipe, **kw)


def _run_recipe(recipe: Recipe, *, data_dir, device, seed, log, checkpoint_dir, resume, dataset,
                checkpoint_every, logger, after_greedy=None, pretrained=None) -> dict:
    checkpoint_every = check_int("checkpoint_every", checkpoint_every, minimum=1)
    ckdir = None
    if checkpoint_dir is not None:
        ckdir = run_folder.prepare(checkpoint_dir, recipe, seed, resume)
    elif resume:
        raise ConfigError("resume needs a checkpoint_dir (--checkpoint-dir) to resume from, got None")

    if recipe.generative:
        return _run_generative(recipe, data_dir=data_dir, device=device, seed=seed, log=log,
                               checkpoint_dir=checkpoint_dir, resume=resume, dataset=dataset,
                               checkpoint_every=checkpoint_every, logger=logger, after_greedy=after_greedy)
    dev = resolve_device(device)
    log = log or (lambda s: None)
    t_start = time.perf_counter()
    d = _discriminative_data(recipe, data_dir, dataset, dev)
    gen = make_generator(seed, dev)
    specs = layer_specs(recipe, d["train"][0].shape[1])
    log(f"[{recipe.name}] data {recipe.dataset}: train {d['train'][0].shape[0]}, valid {d['n_valid']}, "
        f"test {d['test'][0].shape[0]}; layers {[s['n'] for s in specs]}; device {dev}")
    if ckdir is not None:
        log(f"  checkpoints every {checkpoint_every} epoch(s) in {ckdir}" + (" (resuming)" if resume else ""))
    prog = Progress()
    t0 = time.perf_counter()
    on_epoch = _rbm_progress(log, logger, prog, [c.epochs for c in recipe.rbm_configs()])
    if recipe.init != "pretrained":
        dbn = None  # no pre-training: the classifier starts from a random draw (_make_net)
    elif pretrained is not None:  # checked by run_recipe: the same pre-training and seed
        dbn = pretrained["dbn"]
        gen.set_state(pretrained["generator_state"])
    else:
        dbn = pretrain_stack(d["train"][0], specs, recipe.rbm_configs(), generator=gen, valid=d["valid"][0],
                             callback=on_epoch, checkpoint_dir=ckdir, resume=resume,
                             checkpoint_every=checkpoint_every)
    pretrain_s = pretrained["seconds"] if pretrained is not None and dbn is not None else time.perf_counter() - t0
    result = {"recipe": recipe.to_dict(), "seed": seed, "device": str(dev), "dbn": dbn, "pretrain_seconds": pretrain_s,
              "input_transform": d["transform"]}
    if dbn is not None:
        result["pretrained"] = {"key": pretraining_key(recipe, seed), "dbn": dbn, "generator_state": gen.get_state(),
                                "seconds": pretrain_s}
    if recipe.finetune is not None:
        _finetune_phase(recipe, result, d, specs, gen, dev, ckdir=ckdir, resume=resume,
                        checkpoint_every=checkpoint_every, log=log, logger=logger, prog=prog)
    result["total_seconds"] = time.perf_counter() - t_start
    return result


def _discriminative_data(recipe: Recipe, data_dir, dataset, dev) -> dict:
    """The recipe's splits on ``dev`` (``_splits``), mapped by its input transform when its
    visible units expect standardised data; the fitted transform travels with the model so
    new data is mapped the same way."""
    ds, (x_all, y_all), (x_tr, y_tr), (x_va, y_va), (x_te, y_te), n_valid = _splits(recipe, data_dir, dataset, dev)
    transform = None
    if unit_type(recipe.visible).standardized_data and recipe.input_transform != "none":
        from deepbelief.transforms import make_transform

        opts = {"row_center": recipe.row_center}
        if recipe.input_transform in ("zca", "pca"):
            opts["eps"] = recipe.whiten_eps
        transform = make_transform(recipe.input_transform, **opts).fit(x_tr)
        x_tr, x_te, x_all = transform(x_tr), transform(x_te), transform(x_all)
        x_va = None if x_va is None else transform(x_va)
    return {"ds": ds, "all": (x_all, y_all), "train": (x_tr, y_tr), "valid": (x_va, y_va), "test": (x_te, y_te),
            "n_valid": n_valid, "transform": transform}


def _notes(m: dict) -> str:
    """The optional metrics of an epoch's progress line, those the epoch has, in one order."""
    out = f" fe_gap {m['free_energy_gap']:+.3f}" if "free_energy_gap" in m else ""
    if "pt_swap_rate_min" in m:  # parallel tempering: the worst neighbour pair and the mean
        out += f" swaps min {m['pt_swap_rate_min']:.2f} mean {m['pt_swap_rate_mean']:.2f}"
    if "valid_error" in m:  # free-energy (generative recipes) or classifier error on the validation split
        out += f" valid error {100 * m['valid_error']:.2f}%"
    if "train_error" in m:  # the final up-down epochs' stopping rule (UpDownConfig.final_until_train_error)
        out += f" train error {100 * m['train_error']:.2f}%"
    if "cg_evaluations_per_batch" in m:  # conjugate gradients: the line searches' cost
        out += f" ({m['cg_evaluations_per_batch']:.1f} evaluations per batch)"
    return out


def _rbm_progress(log, logger, prog, rbm_epochs: list[int]):
    """The per-epoch callback of greedy pre-training: one progress line, one metrics row."""
    def on_epoch(layer, epoch, m):
        n = rbm_epochs[layer]
        log(f"  rbm {layer} epoch {epoch_of(epoch, n)}: recon {m['recon_error']:.4f}{_notes(m)} "
            f"({prog.times(epoch, n, m['seconds'], layer)})")
        if logger is not None:
            logger.pretrain_callback(layer, epoch, m)

    return on_epoch


def _make_net(recipe: Recipe, dbn, specs, n_classes: int, gen, dev):
    """The classifier to fine-tune: the unrolled stack, or a random draw (``init``)."""
    if dbn is not None:
        return unroll(dbn, n_classes, generator=gen)
    acts = {unit_type(s["type"]).activation for s in specs[1:]}
    if len(acts) != 1:
        raise ConfigError(f"init={recipe.init!r}: a random classifier has one activation, the layers have {acts}")
    return random_classifier([s["n"] for s in specs], n_classes, activation=acts.pop(), init=recipe.init,
                             generator=gen, device=dev)


def _finetune_phase(recipe: Recipe, result: dict, d: dict, specs, gen, dev, *, ckdir, resume, checkpoint_every, log,
                    logger, prog) -> None:
    """Backprop with early stopping on the validation split, then (``retrain_all``) again on
    all training images for the chosen number of epochs; adds the net and its errors to
    ``result``."""
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te), n_valid = d["train"], d["valid"], d["test"], d["n_valid"]
    n_classes = int(d["ds"].n_classes)
    ft_epochs = {"finetune": recipe.finetune.epochs}  # retraining's count is known once fine-tuning ends

    def on_ft(epoch, m):
        phase = "finetune" if "valid_error" in m or not n_valid else "retrain"
        n = ft_epochs[phase]
        log(f"  {phase} epoch {epoch_of(epoch, n)}: loss {m['loss']:.4g}{_notes(m)} "
            f"({prog.times(epoch, n, m['seconds'], phase)})")
        if logger is not None:
            logger.log(phase, epoch, m)

    t0 = time.perf_counter()
    net = _make_net(recipe, result["dbn"], specs, n_classes, gen, dev)
    hist = finetune(net, x_tr, y_tr, recipe.finetune, generator=gen,
                    valid=(x_va, y_va) if n_valid else None, callback=on_ft,
                    checkpoint=None if ckdir is None else ckdir / "finetune.ckpt.safetensors",
                    checkpoint_every=checkpoint_every, resume=resume)
    best_epoch = hist[-1].get("best_epoch", len(hist) - 1)
    valid_error = float(error_rate(net, x_va, y_va)) if n_valid else None
    if recipe.retrain_all and n_valid:
        x_all, y_all = d["all"]
        log(f"  retraining on all {x_all.shape[0]} training images for {best_epoch + 1} epochs")
        net = _make_net(recipe, result["dbn"], specs, n_classes, gen, dev)
        ft = dataclasses.replace(recipe.finetune, epochs=best_epoch + 1)
        ft_epochs["retrain"] = ft.epochs
        retrain_ckpt = None if ckdir is None else ckdir / "retrain.ckpt.safetensors"
        again = resume and run_folder.retrain_resumable(retrain_ckpt, ft, log)
        finetune(net, x_all, y_all, ft, generator=gen, callback=on_ft, checkpoint=retrain_ckpt,
                 checkpoint_every=checkpoint_every, resume=again)
    finetune_s = time.perf_counter() - t0
    test_error = float(error_rate(net, x_te, y_te))
    log(f"[{recipe.name}] test error {100 * test_error:.2f}% on {x_te.shape[0]} images "
        f"(pre-training {result['pretrain_seconds']:.1f}s, fine-tuning {finetune_s:.1f}s)")
    result.update(net=net, test_error=test_error, valid_error=valid_error, best_epoch=best_epoch,
                  finetune_seconds=finetune_s, history=hist)


def _run_generative(recipe: Recipe, *, data_dir, device, seed, log, checkpoint_dir, resume, dataset,
                    checkpoint_every, logger, after_greedy) -> dict:
    """Greedy training of a labelled generative DBN, then contrastive wake-sleep.

    The protocol of HOT 2006, section 6, when the recipe has a validation split: greedy
    training and ``updown.epochs`` of up-down on the training split, with the free-energy
    validation error logged after every epoch of the top RBM and of up-down; then
    ``updown.final_epochs`` more up-down epochs on train + validation.

    ``run_recipe``'s branch for generative recipes. Returns a dict with the ``dbn`` (a
    ``GenerativeDBN``), ``greedy_test_error`` (free-energy
    classification after greedy training), ``greedy_valid_error``, ``test_error`` (after
    up-down, or greedy if none) and timings.
    """
    dev = resolve_device(device)
    log = log or (lambda s: None)
    t_start = time.perf_counter()
    ds, all_data, (x_tr, y_tr), valid, (x_te, y_te), n_valid = _splits(recipe, data_dir, dataset, dev)
    valid = valid if n_valid else None
    gen = make_generator(seed, dev)
    sizes = [x_tr.shape[1]] + [int(s) for s in recipe.layers]
    configs = recipe.rbm_configs()
    ud = recipe.updown
    log(f"[{recipe.name}] data {recipe.dataset}: train {x_tr.shape[0]}, valid {n_valid}, test {x_te.shape[0]}; "
        f"layers {sizes[:-1]} + {ds.n_classes} labels -> {sizes[-1]}; device {dev}")
    n_all = all_data[0].shape[0]
    log(f"[{recipe.name}] {_plan(recipe, configs, ud, sizes, int(ds.n_classes), x_tr.shape[0], n_all, dev)}")
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None

    prog = Progress()
    on_epoch = _rbm_progress(log, logger, prog, [c.epochs for c in configs])

    t0 = time.perf_counter()
    model = pretrain_generative(x_tr, y_tr, sizes, configs, generator=gen, n_labels=int(ds.n_classes),
                                callback=on_epoch, checkpoint_dir=folder, resume=resume, valid=valid,
                                checkpoint_every=checkpoint_every)
    pretrain_s = time.perf_counter() - t0
    greedy_err = float(model.error_rate(x_te, y_te))
    result = {"recipe": recipe.to_dict(), "seed": seed, "device": str(dev), "dbn": model,
              "pretrain_seconds": pretrain_s, "greedy_test_error": greedy_err, "test_error": greedy_err}
    if valid is not None:
        result["greedy_valid_error"] = float(model.error_rate(*valid))
    log(f"[{recipe.name}] greedy: test error {100 * greedy_err:.2f}% ({pretrain_s:.1f}s)")
    if after_greedy is not None:
        after_greedy(model, result)
    if ud is not None and ud.epochs + ud.final_epochs > 0:
        _run_updown(model, ud, result, gen=gen, train=(x_tr, y_tr), all_data=all_data, valid=valid,
                    folder=folder, resume=resume, checkpoint_every=checkpoint_every, log=log, logger=logger,
                    prog=prog)
        result["test_error"] = float(model.error_rate(x_te, y_te))
        log(f"[{recipe.name}] up-down: test error {100 * result['test_error']:.2f}% "
            f"({result['updown_seconds']:.1f}s)")
    result["total_seconds"] = time.perf_counter() - t_start
    return result


def _run_updown(model, ud, result, *, gen, train, all_data, valid, folder, resume, checkpoint_every, log, logger,
                prog):
    """The up-down phases of ``run_generative``: ``ud.epochs`` on the training split (with
    validation), then ``ud.final_epochs`` on all training images with the schedule's last K."""
    from deepbelief.wake_sleep import up_down

    phases = [("updown", train, ud, valid)]
    if ud.final_epochs and valid is not None:
        phases.append(("updown_all", all_data, ud.final_phase(), None))
    elif ud.final_epochs:
        log(f"  updown.final_epochs={ud.final_epochs} ignored: the recipe has no validation split (n_valid=0)")
    t0 = time.perf_counter()
    for name, (x, y), cfg, va in phases:
        if cfg.epochs == 0:
            continue
        stop = None
        if name == "updown_all" and ud.final_until_train_error:  # HOT 2006's rule for the final epochs
            stop = result["updown_train_error"] = float(model.error_rate(*train))
            log(f"  updown all: until the error on all {x.shape[0]} training images is at most "
                f"{100 * stop:.2f}% (the training split's after the first phase), at most {cfg.epochs} epochs")

        def on_ud(epoch, m, name=name, cfg=cfg):
            log(f"  {name.replace('_', ' ')} epoch {epoch_of(epoch, cfg.epochs)} (K={m['gibbs_steps']}): "
                f"recon {m['recon_error']:.4f}{_notes(m)} ({prog.times(epoch, cfg.epochs, m['seconds'], name)})")
            if logger is not None:
                logger.log(name, epoch, m)

        ckpt = folder / f"{name}.ckpt.safetensors" if folder is not None else None
        result[f"{name}_history"] = up_down(model, x, y, cfg, generator=gen, valid=va, callback=on_ud,
                                            checkpoint=ckpt, resume=resume, checkpoint_every=checkpoint_every,
                                            stop_train_error=stop)
    result["updown_seconds"] = time.perf_counter() - t0


def _updown_step_seconds(ud, sizes, n_labels, dev, steps: int = 5) -> dict[int, float]:
    """Seconds per up-down step on this machine for each K of ``ud``'s schedule: the median of
    ``steps`` timed steps (after one warm-up) of a throwaway model of the recipe's sizes and
    ``ud``'s settings, so the estimate holds the work around the products too (on the
    AVX-512 VMs of 2026-12 that was as much as the products themselves)."""
    import dataclasses
    import statistics

    import torch

    from deepbelief.cost import _sync
    from deepbelief.dbn import GenerativeDBN
    from deepbelief.wake_sleep import UpDownTrainer

    cpu = torch.Generator().manual_seed(0)
    model = GenerativeDBN.build(sizes, n_labels, generator=cpu, weight_std=0.1).to(dev)
    trainer = UpDownTrainer(model, dataclasses.replace(ud, epochs=1, final_epochs=0),
                            torch.Generator(device=dev).manual_seed(0))
    b = ud.batch_size
    x = (torch.rand(b, sizes[0], generator=cpu) < 0.5).float().to(dev)
    y = torch.nn.functional.one_hot(torch.arange(b) % n_labels, n_labels).float().to(dev)
    out = {}
    for k in sorted(set(ud.gibbs_steps)):
        times = []
        for i in range(steps + 1):
            _sync(dev)
            t0 = time.perf_counter()
            trainer.step(x, y, 0.0, 0.0, k)  # rate 0: the throwaway model stays as built
            _sync(dev)
            if i:  # the first step warms up
                times.append(time.perf_counter() - t0)
        out[k] = statistics.median(times)
    return out


def _plan(recipe, configs, ud, sizes, n_labels, n_train, n_all, dev) -> str:
    """The run's phases and an estimate of its time on this machine, before it starts: for
    greedy training the matmul FLOPs (cost.py) at the measured GEMM rate and the share of it
    CD-1 reached in benchmarks/RESULTS.md (about 0.75); for up-down, a few timed steps of each
    K (``_updown_step_seconds``) times the schedule's steps (monitors and checkpoints left out)."""
    from deepbelief import cost

    vis = sizes[:-1] + [sizes[-1]]
    flops = []
    for i, cfg in enumerate(configs):
        nv = vis[i] + (n_labels if i == len(configs) - 1 else 0)
        n_b = n_train // cfg.batch_size
        flops.append(cfg.epochs * n_b * cost.cd_batch_flops(cfg.batch_size, nv, vis[i + 1], cfg.k) / 0.75)
    ud_seconds, ud_epochs = 0.0, 0
    if ud is not None and (ud.epochs or (recipe.n_valid and ud.final_epochs)):
        step = _updown_step_seconds(ud, sizes, n_labels, dev)
        ud_seconds = sum((n_train // ud.batch_size) * step[ud.gibbs_at(e)] for e in range(ud.epochs))
        if recipe.n_valid:
            ud_seconds += ud.final_epochs * (n_all // ud.batch_size) * step[ud.gibbs_steps[-1]]
        ud_epochs = ud.epochs + (ud.final_epochs if recipe.n_valid else 0)  # the most, with final_until_train_error
    rate = cost.gemm_rate(device=dev)
    greedy = sum(flops) / rate
    return (f"plan: greedy {', '.join(str(c.epochs) for c in configs)} epochs (about {fmt_seconds(greedy)}, "
            f"from the matmul count at this machine's measured rate, {rate / 1e9:.0f} GFLOP/s), "
            f"up-down {'at most ' if ud is not None and ud.final_until_train_error else ''}{ud_epochs} epochs "
            f"(about {fmt_seconds(ud_seconds)}, from timed steps); a run with --checkpoint-dir can be "
            f"stopped and resumed")
