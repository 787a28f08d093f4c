"""Greedy layer-wise pre-training (Hinton, Osindero & Teh 2006): ``pretrain_stack`` trains
RBM after RBM, each on the hidden means of the one below; ``pretrain_generative`` adds the
labelled top RBM of the generative DBN. Both checkpoint per layer and resume bit-exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from deepbelief.checkpoint import generator_state_from, make_folder, restore_generator
from deepbelief.dbn import DBN, GenerativeDBN
from deepbelief.errors import ConfigError, as_data, check_int
from deepbelief.io import load_model, save_model
from deepbelief.rbm import RBM, batched
from deepbelief.training import RBMTrainConfig, train_rbm
from deepbelief.units import Bernoulli, Joint, Softmax

__all__ = ["pretrain_generative", "pretrain_stack", "transpose_into"]


def transpose_into(below: RBM, above: RBM) -> bool:
    """Start ``above`` as the transpose of ``below`` (weights transposed, the two bias vectors
    swapped) when its hidden layer is ``below``'s visible one: then its marginal over its visible
    units is ``below``'s prior over its hidden ones, so the stacked DBN's variational bound equals
    the shallower one (Hinton, Osindero & Teh 2006). Returns whether it could (sizes permitting)."""
    if above.n_hidden != below.n_visible or above.n_visible != below.n_hidden:
        return False
    with torch.no_grad():
        above.W.copy_(below.W.T)
        above.visible.bias.copy_(below.hidden.bias)
        above.hidden.bias.copy_(below.visible.bias)
    return True


def _check_stack_memory(specs: list, device) -> None:
    """Refuse a stack whose weights, velocities and updates (3 float32 copies) cannot fit
    in memory, before any of it is allocated."""
    from deepbelief.errors import check_memory

    sizes = [s.get("n", 0) if isinstance(s, dict) else 0 for s in specs]
    if all(isinstance(n, int) for n in sizes):
        check_memory("layers", sum(a * b for a, b in zip(sizes, sizes[1:])),
                     f"the weights of layers {sizes} with their velocities and updates", device=device, copies=3)


def _per_rbm_configs(name: str, sizes, configs, what: str) -> list:
    """One ``RBMTrainConfig`` per RBM of a stack with layer sizes ``sizes`` (``configs``: None,
    one config for all, or a list of one per RBM)."""
    if not isinstance(sizes, (list, tuple)) or len(sizes) < 2:
        raise ConfigError(f"{name} must list at least two layer sizes {what}, got {sizes!r}")
    n_rbms = len(sizes) - 1
    if configs is None or isinstance(configs, RBMTrainConfig):
        configs = [configs or RBMTrainConfig()] * n_rbms
    if len(configs) != n_rbms:
        raise ConfigError(f"configs must hold one config per RBM ({n_rbms}), got {len(configs)}")
    return list(configs)


def pretrain_stack(
    data: Tensor,
    layers: list,
    configs: RBMTrainConfig | list[RBMTrainConfig] | None = None,
    *,
    generator: torch.Generator,
    valid: Tensor | None = None,
    callback: Callable[[int, int, dict], None] | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    weight_std: float | None = None,
    checkpoint_every: int = 1,
    labels: Tensor | None = None,
):
    """Greedy layer-wise pre-training (Hinton, Osindero & Teh 2006).

    Each trained RBM's hidden means E[h | v], computed in batches on the device, become
    the next RBM's data (a config with ``sample_data=True`` trains that RBM on a fresh
    binary draw of them in every mini-batch instead: samples of the aggregated posterior).
    ``layers`` lists the layer sizes including the data's, e.g. ``[784, 500, 500, 2000]``;
    an entry may also be a units config dict (``{"type": "nrelu", "n": 500}``), so any unit
    types stack. ``configs`` is one config
    for every RBM or one per RBM. With ``checkpoint_dir``, every RBM checkpoints there and
    a finished layer is saved as ``layer<i>.safetensors``, so ``resume`` skips finished
    layers and continues the one in progress. A skipped layer also restores the
    generator state its checkpoint ended with, so the next layer's initial weights and
    samples, and therefore the final weights, equal an uninterrupted run's.

    Initial weights are N(0, s^2) with s = ``weight_std`` if given, else each layer's
    ``config.weight_std``; ``labels`` (n,) are passed to layers with balanced batches.

    Returns:
        a ``deepbelief.dbn.DBN`` holding the trained RBMs, bottom first.
    """
    configs = _per_rbm_configs("layers", layers, configs, "(data and hidden)")
    n_rbms = len(layers) - 1
    from deepbelief.errors import check_generator

    device = check_generator("generator", generator).device
    specs = [{"type": "bernoulli", "n": check_int(f"layers[{i}]", s, minimum=1)} if not isinstance(s, dict) else s
             for i, s in enumerate(layers)]
    _check_stack_memory(specs, device)
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if resume and folder is None:
        raise ConfigError("resume=True needs a checkpoint_dir to resume from, got checkpoint_dir=None")
    if folder is not None:
        make_folder(folder, "checkpoint_dir")
    rbms = []
    x, xv = data, valid
    for i in range(n_rbms):
        vis = dict(specs[i])  # layer i's units are RBM i-1's hidden and RBM i's visible units
        done = folder / f"layer{i}.safetensors" if folder is not None else None
        ckpt = folder / f"layer{i}.ckpt.safetensors" if folder is not None else None
        if resume and done is not None and done.exists():
            rbm = load_model(done, device=device)
            if ckpt.exists():  # continue the random stream where this layer's training left it
                state = generator_state_from(ckpt)
                if state is not None:
                    restore_generator(ckpt, generator, state)
        else:
            std = configs[i].weight_std if weight_std is None else weight_std
            rbm = RBM(vis, specs[i + 1], weight_std=std, generator=generator)
            cb = (lambda e, m, i=i: callback(i, e, m)) if callback is not None else None
            train_rbm(rbm, x, configs[i], generator=generator, valid=xv, callback=cb,
                      checkpoint=ckpt, resume=resume, checkpoint_every=checkpoint_every, labels=labels)
            if done is not None:
                from deepbelief.distributed import is_main

                if is_main():  # data-parallel runs: rank 0 writes files
                    save_model(done, rbm)
        rbms.append(rbm)
        if i < n_rbms - 1:
            with torch.no_grad():
                x = batched(rbm.mean_hidden, rbm.check_input("data", x))
                xv = None if xv is None else batched(rbm.mean_hidden, rbm.check_input("valid", xv))
    return DBN(rbms)


def pretrain_generative(
    x: Tensor,
    y: Tensor,
    sizes: list[int],
    configs=None,
    *,
    generator: torch.Generator,
    n_labels: int | None = None,
    callback=None,
    checkpoint_dir=None,
    resume: bool = False,
    weight_std: float | None = None,
    valid: tuple[Tensor, Tensor] | None = None,
    checkpoint_every: int = 1,
) -> GenerativeDBN:
    """Greedy training of a labelled DBN (HOT 2006, section 4).

    The lower RBMs (e.g. 784-500, 500-500) are trained without labels by
    ``stacking.pretrain_stack``; the top RBM is then trained on the joined vector
    [E[features | image], one-hot label] (e.g. 510 visible units, 2000 hidden).

    Args:
        x: (n, sizes[0]) training images in [0, 1]; y: (n,) int labels.
        sizes: layer sizes from the data to the top hidden layer, e.g. [784, 500, 500, 2000].
        configs: one ``RBMTrainConfig`` for all RBMs or one per RBM (len(sizes) - 1).
        n_labels: number of classes (default: max(y) + 1).
        callback: ``callback(layer, epoch, metrics)``, layer ``len(sizes) - 2`` is the top RBM.
        checkpoint_dir, resume, checkpoint_every: as in ``pretrain_stack``; the top RBM uses
            ``top.ckpt.safetensors``.
        weight_std: initial weight std of every RBM (default: each config's ``weight_std``).
        valid: optional (images, labels) held out: the lower RBMs' monitors use the images,
            and every epoch of the top RBM adds ``valid_error`` (free-energy classification
            of the held-out images) to the metrics passed to ``callback``.

    Configs with ``balanced_batches`` draw class-balanced mini-batches from ``y``.
    """
    from deepbelief.errors import as_labels

    configs = _per_rbm_configs("sizes", sizes, configs, "(features, top)")
    n_rbms = len(sizes) - 1
    device = generator.device

    x = as_data("x", x, n_features=sizes[0], device=device)
    yl = as_labels("y", y, n_classes=n_labels or 1 << 30, n_rows=x.shape[0], device=device)
    n_labels = check_int("n_labels", n_labels if n_labels is not None else int(yl.max()) + 1, minimum=2)
    xv = yv = None
    if valid is not None:
        xv = as_data("valid[0]", valid[0], n_features=sizes[0], device=device)
        yv = as_labels("valid[1]", valid[1], n_classes=n_labels, n_rows=xv.shape[0], device=device)
    lower: list[RBM] = []
    feats, feats_v = x, xv
    if n_rbms > 1:
        stack = pretrain_stack(x, list(sizes[:-1]), configs[:-1], generator=generator, callback=callback,
                               checkpoint_dir=checkpoint_dir, resume=resume, weight_std=weight_std, valid=xv,
                               checkpoint_every=checkpoint_every, labels=yl)
        lower = list(stack.rbms)
        feats = stack.transform(x)
        feats_v = None if xv is None else stack.transform(xv)
    std = configs[-1].weight_std if weight_std is None else weight_std
    top = RBM(Joint([Bernoulli(sizes[-2]), Softmax(n_labels)]), Bernoulli(sizes[-1]), weight_std=std,
              generator=generator)
    joint = torch.cat([feats, torch.nn.functional.one_hot(yl, n_labels).to(feats.dtype)], -1)
    model = GenerativeDBN(lower, top)
    ckpt = Path(checkpoint_dir) / "top.ckpt.safetensors" if checkpoint_dir is not None else None

    def cb(e, m):
        if feats_v is not None:  # the top RBM's own classification of held-out features
            with torch.no_grad():
                pred = batched(lambda f: model.label_free_energies(f).argmin(1), feats_v, 1000)
            m["valid_error"] = float((pred != yv).float().mean())
        if callback is not None:
            callback(n_rbms - 1, e, m)

    train_rbm(top, joint, configs[-1], generator=generator, callback=cb, checkpoint=ckpt, resume=resume,
              checkpoint_every=checkpoint_every, labels=yl)
    return model
