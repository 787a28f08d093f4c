"""Contrastive wake-sleep ("up-down") fine-tuning of a labelled generative DBN.

Hinton, Osindero & Teh (2006), section 5 and appendix B. After greedy training the
lower layers' recognition (bottom-up) and generative (top-down) weights are untied
(``GenerativeDBN.untie_``) and every mini-batch of images x with one-hot labels y does:

1. **Wake** (up): a stochastic bottom-up pass through the recognition weights,
   s_{i+1} ~ q(s_{i+1} | s_i) = sigmoid(s_i R_i + c_i), with s_0 = x. The generative
   weights learn to reconstruct each layer from the one above, by the delta rule
   (the gradient of log p(s_i | s_{i+1})):
       dW_i = s_{i+1}^T (s_i - p_i) / b,   db_i = mean(s_i - p_i),   p_i = sigmoid(s_{i+1} W_i^T + b_i)
2. **Top**: from [s_L, y], K alternating Gibbs iterations in the top RBM (features sampled,
   label units sent as their softmax probabilities, as in appendix B) give the negative
   phase of a CD-K update of the top RBM. We use the exact free-energy gradient
   (rbm.RBM.free_energy_grad: E[h | v] in place of sampled top states, the same estimator
   with less variance) for both phases.
   With ``persistent=True`` the Gibbs run starts instead from the end of the previous
   update's run (PCD-K: ``batch_size`` fantasy chains kept across updates, started from
   the first batch's wake state) and samples the labels as well, so the chains are block
   Gibbs samplers of the top RBM and the negative phase, and the sleep phase below, come
   from the model's own fantasies, as in the greedy PCD training of the top RBM.
   With ``clamped_chains`` > 0 a share of those chains keep their label clamped, the same
   number for every class (an extension of ours, not the paper's): they sample
   p(features, h | label) and meet the spurious modes of a class-conditional that free
   chains, which change label on their way between the classes' ravines, never visit. Their
   states enter the same negative phase: when the model's p(label) is uniform (balanced
   batches drive it there) E_label[E_p(.|label)] = E_p(.), so the estimate is of the same
   gradient, and the label biases still learn p(label) from the free chains.
3. **Sleep** (down): from the features at the end of the Gibbs run, a stochastic top-down
   pass through the generative weights (the data layer keeps its probabilities). The
   recognition weights learn to recover each layer from the one below:
       dR_i = s'_i^T (s'_{i+1} - q_{i+1}) / b,  dc_i = mean(s'_{i+1} - q_{i+1}),  q_{i+1} = sigmoid(s'_i R_i + c_i)

All gradients are computed from the parameters before the update, then applied together
with momentum. The number of Gibbs iterations K follows the paper's schedule: the epochs
are split into equal parts using 3, then 6, then 10 iterations (``gibbs_steps``).

The paper ran 300 epochs on 44,000 images (100 with K=3, 100 with K=6, 100 with K=10) and
then 59 more epochs on all 60,000; a week of 2006 compute. Our defaults keep the schedule
and let the caller choose the number of epochs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from deepbelief.averaging import IterateAverage, check_average_decay
from deepbelief.checkpoint import load_run, restore_training_state, save_run
from deepbelief.dbn import GenerativeDBN
from deepbelief.errors import (
    ConfigError,
    DivergenceError,
    as_data,
    as_labels,
    check_fields,
    check_float,
    check_int,
)
from deepbelief.loop import Schedule, run_epochs
from deepbelief.rng import StepUniforms
from deepbelief.units.binary import one_hot_by_inverse_cdf


@dataclass
class UpDownConfig(Schedule):
    """Hyper-parameters of contrastive wake-sleep; the schedule's fields are ``loop.Schedule``'s.
    ``lr`` is one learning rate for the generative, recognition and top-RBM parameters; with
    ``lr_final`` the recipe's ``final_epochs`` continue at ``lr_final``; ``balanced_batches``
    as HOT 2006 (10 images of every class per batch)."""

    epochs: int = 30
    lr: float = 0.01
    #: top-level Gibbs iterations; the epochs are split into len(gibbs_steps) equal parts
    gibbs_steps: list[int] = field(default_factory=lambda: [3, 6, 10])
    #: after ``epochs`` on the training split, this many more on train + validation with the
    #: last K of the schedule (the paper's 59 epochs on all 60,000 images); recipes only
    final_epochs: int = 0
    #: with ``final_epochs``: end the final epochs after the first whose free-energy error on
    #: all the training images is at most the training split's error at the end of the first
    #: phase, ``final_epochs`` being the most they run. HOT 2006, section 6.1: the network was
    #: trained on all 60,000 images "until its error-rate on the full training set was as low
    #: as its final error-rate had been on the initial training set of 44,000 images", which
    #: took 59 epochs. Recipes only (``runner`` measures the target, ``fit(stop_train_error=)``);
    #: with ``final_epochs`` 0 there is no final phase for it to end (greedy-only runs of hot2006)
    final_until_train_error: bool = False
    #: PCD-K in the top RBM: the negative phase and the sleep phase from ``batch_size``
    #: persistent fantasy chains (labels sampled) instead of CD-K from each batch's wake state;
    #: the chains start at the first batch's wake state of each ``up_down`` call (so the final
    #: epochs on all the data start new ones) and a checkpoint keeps them
    persistent: bool = False
    #: with ``persistent``: the share of the chains whose label is clamped (the first
    #: ``clamped_chains * batch_size`` chains, class ``j % n_labels`` for chain j: the same
    #: number per class, so that count must be a multiple of the number of labels); 0: all free
    clamped_chains: float = 0.0
    #: the fused all-Bernoulli step (UpDownTrainer._fast_step); False: up_down_grads, the
    #: reference the tests check against autograd (the same update up to rounding)
    fast: bool = True
    #: validate and return the moving average of all parameters over updates (averaging.py;
    #: 0: off); each ``up_down`` call starts a new average (the final epochs start from the
    #: first call's average, with a new average of their own)
    average_decay: float = 0.0

    def validate(self) -> "UpDownConfig":
        self.validate_schedule()
        if isinstance(self.gibbs_steps, int):
            self.gibbs_steps = [self.gibbs_steps]
        if not isinstance(self.gibbs_steps, (list, tuple)) or not self.gibbs_steps:
            raise ConfigError(f"gibbs_steps must be a non-empty list of integers like [3, 6, 10], "
                              f"got {self.gibbs_steps!r}")
        self.gibbs_steps = [check_int("gibbs_steps[i]", k, minimum=1) for k in self.gibbs_steps]
        if not isinstance(self.persistent, bool):
            raise ConfigError(f"persistent must be true or false, got {self.persistent!r}")
        check_int("final_epochs", self.final_epochs, minimum=0)
        if not isinstance(self.final_until_train_error, bool):
            raise ConfigError(f"final_until_train_error must be true or false, got {self.final_until_train_error!r}")
        self.clamped_chains = check_float("clamped_chains", self.clamped_chains, minimum=0.0, maximum=1.0)
        if self.clamped_chains and not self.persistent:
            raise ConfigError(f"clamped_chains needs persistent=true (it is a share of the persistent chains), "
                              f"got clamped_chains={self.clamped_chains:g} with persistent=false")
        self.average_decay = check_average_decay(self.average_decay)
        return self

    def final_phase(self) -> "UpDownConfig":
        """The config of the ``final_epochs`` on all the data: that many epochs with the
        schedule's last K, at ``lr_final`` if set (else ``lr``), constant (its stopping rule,
        ``final_until_train_error``, is the caller's: ``fit(stop_train_error=)``)."""
        return dataclasses.replace(self, epochs=self.final_epochs, gibbs_steps=[self.gibbs_steps[-1]], final_epochs=0,
                                   final_until_train_error=False,
                                   lr=self.lr if self.lr_final is None else self.lr_final, lr_final=None)

    def gibbs_at(self, epoch: int) -> int:
        """K for ``epoch`` (0-based): part ``epoch * len(gibbs_steps) // epochs`` of the schedule."""
        parts = len(self.gibbs_steps)
        return self.gibbs_steps[min(parts - 1, epoch * parts // max(1, self.epochs))]

    @classmethod
    def from_dict(cls, d: dict) -> "UpDownConfig":
        return cls(**check_fields(cls, d, "up-down option")).validate()


def _check_model(model: GenerativeDBN) -> None:
    if not isinstance(model, GenerativeDBN):
        raise ConfigError(f"up-down fine-tuning needs a GenerativeDBN, got {type(model).__name__}")
    for i, r in enumerate(model.lower):
        for side, u in (("visible", r.visible), ("hidden", r.hidden)):
            if not u.is_binary:
                raise ConfigError(f"up-down fine-tuning supports Bernoulli lower layers; layer {i} has "
                                  f"{side} units of type {u.kind!r}")
    if not (model.top.visible.groups[0].is_binary and model.top.hidden.is_binary):
        raise ConfigError("up-down fine-tuning needs Bernoulli features and top hidden units")


def clamped_labels(model: GenerativeDBN, config: UpDownConfig) -> Tensor | None:
    """The one-hot labels (m, n_labels) of the first m = ``clamped_chains * batch_size``
    persistent chains, class j % n_labels for chain j; None when no chain is clamped."""
    if not config.clamped_chains:
        return None
    m, n = round(config.clamped_chains * config.batch_size), model.n_labels
    if m == 0 or m % n:
        raise ConfigError(f"clamped_chains * batch_size must be a positive multiple of the number of labels "
                          f"({n}), so that every class has as many clamped chains; got clamped_chains="
                          f"{config.clamped_chains:g} with batch_size={config.batch_size} ({m} chains)")
    return model.one_hot(torch.arange(m) % n)


def step_uniforms(model: GenerativeDBN, x: Tensor, k: int, gen: torch.Generator | None, *,
                  persistent: bool = False, fresh: bool = True) -> StepUniforms:
    """The block of U(0, 1) numbers one up-down step with ``k`` Gibbs iterations on the batch
    ``x`` draws (rng.StepUniforms), in the order both step implementations use them: the
    wake states of every lower layer, the top RBM's first hidden state (unless persistent
    chains already exist: ``fresh=False``), per Gibbs iteration the features (and with
    ``persistent`` one number per row for the label) and the hidden state (but for the last
    iteration of CD-K), the sleep states of the lower layers but the data layer.
    ``up_down_grads(..., gen=step_uniforms(...))`` replays a step."""
    lower, nf, nh = model.lower, model.n_features, model.top.n_hidden
    gibbs = k * (nf + nh + 1) if persistent else k * nf + (k - 1) * nh
    per_row = (sum(r.n_hidden for r in lower) + (nh if fresh else 0) + gibbs
               + sum(r.n_visible for r in lower[1:]))
    return StepUniforms(gen, x.shape[0] * per_row, x)


@torch.no_grad()
def up_down_grads(model: GenerativeDBN, x: Tensor, y: Tensor, k: int, gen, *, persistent: bool = False,
                  chains: Tensor | None = None,
                  clamp: Tensor | None = None) -> tuple[dict[str, Tensor], dict[str, list[Tensor]]]:
    """One contrastive wake-sleep estimate, without touching the parameters.

    Args:
        model: an untied ``GenerativeDBN`` with Bernoulli layers.
        x: (b, n_0) images in [0, 1]; y: (b, n_labels) one-hot labels.
        k: Gibbs iterations in the top RBM.
        gen: the run's generator, or a ``StepUniforms`` block to draw from (``step_uniforms``).
        persistent: PCD-K: the Gibbs run starts from ``chains`` (the top RBM's hidden states
            (b, n_hidden) at the end of the previous step; None: from the wake state) and
            samples the labels too.
        clamp: with ``persistent``, one-hot labels (m, n_labels) that the first m chains keep
            (``clamped_labels``); their label draws are made and discarded, so the random
            stream is the same with and without.
    Returns:
        (grads, states): ``grads`` maps parameter names (``model.named_parameters()``) to the
        batch-mean ascent directions described in the module docstring; ``states`` holds the
        lists ``wake`` (s_0 .. s_L) and ``sleep`` (s'_0 .. s'_L) and the top RBM's ``v_pos``
        and ``v_neg``, for monitoring and tests; with ``persistent`` also ``chains``, the
        hidden states the next step starts from.
    """
    if model.tied:
        raise ConfigError("up_down_grads needs an untied model; call model.untie_() first")
    b = x.shape[0]
    lower, top = model.lower, model.top
    n_layers = len(lower)
    nf = model.n_features
    feat, labu = top.visible.groups
    # wake: stochastic bottom-up pass through the recognition weights
    wake = [x]
    for i in range(n_layers):
        wake.append(lower[i].hidden.sample(model.rec_input(i, wake[-1]), gen))
    # top: CD-k in the associative memory, labels included
    v_pos = torch.cat([wake[-1], y], -1)
    x_pos = top.hidden_input(v_pos)
    h = chains if persistent and chains is not None else top.hidden.sample(x_pos, gen)
    for it in range(k):
        xv = top.visible_input(h)
        # features sampled, labels as probabilities (appendix B: neglabprobs); a persistent
        # chain samples its labels, so that it is a Gibbs sampler of the top RBM
        f = feat.sample(xv[:, :nf], gen)
        lab = labu.sample(xv[:, nf:], gen) if persistent else labu.mean(xv[:, nf:])
        if persistent and clamp is not None:
            lab[: clamp.shape[0]] = clamp
        v_neg = torch.cat([f, lab], -1)
        x_neg = top.hidden_input(v_neg)
        if it < k - 1 or persistent:
            h = top.hidden.sample(x_neg, gen)
    pos = top.free_energy_grad(v_pos, x_pos)
    neg = top.free_energy_grad(v_neg, x_neg)
    grads = {f"top.{n}": (neg[n] - pos[n]) / b for n in pos}
    # sleep: stochastic top-down pass through the generative weights from the Gibbs run's end
    sleep: list[Tensor] = [None] * (n_layers + 1)  # type: ignore[list-item]
    sleep[n_layers] = v_neg[:, :nf]
    for i in reversed(range(n_layers)):
        xv = lower[i].visible_input(sleep[i + 1])
        # the data layer keeps its probabilities (appendix B: sleepvisprobs)
        sleep[i] = lower[i].visible.mean(xv) if i == 0 else lower[i].visible.sample(xv, gen)
    for i in range(n_layers):
        # generative: reconstruct wake layer i from wake layer i+1 (delta rule)
        d = wake[i] - lower[i].mean_visible(wake[i + 1])
        grads[f"lower.{i}.W"] = d.T @ wake[i + 1] / b
        grads[f"lower.{i}.visible.bias"] = d.mean(0)
        # recognition: recover sleep layer i+1 from sleep layer i
        e = sleep[i + 1] - model.rec_mean(i, sleep[i])
        grads[f"rec_weights.{i}"] = sleep[i].T @ e / b
        grads[f"lower.{i}.hidden.bias"] = e.mean(0)
    states = {"wake": wake, "sleep": sleep, "v_pos": [v_pos], "v_neg": [v_neg]}
    if persistent:
        states["chains"] = [h]
    return grads, states


class UpDownTrainer:
    """Runs contrastive wake-sleep; holds everything a checkpoint restores (bit-exact resume).

    Args:
        model: a ``GenerativeDBN`` (untied here if it is still tied).
        config: an ``UpDownConfig``.
        generator: the run's generator, on the model's device.
    """

    def __init__(self, model: GenerativeDBN, config: UpDownConfig, generator: torch.Generator):
        _check_model(model)
        self.model = model.untie_()
        self.cfg = config.validate()
        self.gen = generator
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.velocities = [torch.zeros_like(p) for p in self.params]
        weights = {"top.W"} | {f"lower.{i}.W" for i in range(len(model.lower))} | {
            f"rec_weights.{i}" for i in range(len(model.lower))}
        self.weight_idx = [i for i, n in enumerate(self.names) if n in weights]
        self.epoch = 0
        self.history: list[dict] = []
        #: persistent=True: the top RBM's hidden states (batch_size, n_hidden) that the next
        #: step's Gibbs run starts from; None until the first step
        self.chains: Tensor | None = None
        self.average = IterateAverage(self.params, self.cfg.average_decay)  # no-ops unless average_decay > 0
        #: clamped_chains > 0: the labels (m, n_labels) the first m persistent chains keep
        self.clamp = clamped_labels(model, self.cfg)

    @torch.no_grad()
    def step(self, x: Tensor, y: Tensor, lr: float, momentum: float, k: int) -> Tensor:
        """One update from images ``x`` (b, n_0) and one-hot labels ``y`` (b, n_labels);
        returns the summed squared error of the wake reconstruction of x (a 0-d tensor)."""
        sse = self._fast_step(x, y, lr, momentum, k) if self.cfg.fast and self.model.lower else \
            self._step(x, y, lr, momentum, k)
        self.average.update_()
        return sse

    def _step(self, x: Tensor, y: Tensor, lr: float, momentum: float, k: int) -> Tensor:
        """``step`` by ``up_down_grads``: the reference path."""
        pcd = self.cfg.persistent
        u = step_uniforms(self.model, x, k, self.gen, persistent=pcd, fresh=self.chains is None)
        grads, states = up_down_grads(self.model, x, y, k, u, persistent=pcd, chains=self.chains, clamp=self.clamp)
        if pcd:
            self.chains = states["chains"][0].clone()  # (a view of the step's block of uniforms)
        g = [grads[n] for n in self.names]
        if self.cfg.weight_decay:
            for i in self.weight_idx:
                g[i].add_(self.params[i], alpha=-self.cfg.weight_decay)
        torch._foreach_mul_(self.velocities, momentum)
        torch._foreach_add_(self.velocities, g, alpha=lr)
        torch._foreach_add_(self.params, self.velocities)
        wake = states["wake"]
        return ((wake[0] - self.model.lower[0].mean_visible(wake[1])) ** 2).sum() if self.model.lower else \
            torch.zeros((), device=x.device)

    @torch.no_grad()
    def _fast_step(self, x: Tensor, y: Tensor, lr: float, momentum: float, k: int) -> Tensor:
        """``step`` with the biases folded into ``addmm``, batch sums instead of means (the
        1/b goes into the step size) and no extra product for the monitor: the same random
        numbers in the same order as ``up_down_grads``, so the same update up to rounding.
        The monitor is the wake reconstruction error before the update."""
        model = self.model
        lower, top, nf, b = model.lower, model.top, model.n_features, x.shape[0]
        L = len(lower)
        pcd = self.cfg.persistent
        u = step_uniforms(self.model, x, k, self.gen, persistent=pcd, fresh=self.chains is None)

        def bern(p: Tensor) -> Tensor:  # states ~ Bernoulli(p), written over their uniforms
            t = u.take(p.shape)
            return torch.lt(t, p, out=t)

        wake = [x]  # wake: stochastic bottom-up pass through the recognition weights
        for i in range(L):
            wake.append(bern(torch.sigmoid(torch.addmm(lower[i].hidden.bias, wake[-1], model.rec_weights[i]))))
        v_pos = torch.cat([wake[-1], y], -1)
        vb, hb = top.visible.bias, top.hidden.bias
        p_pos = torch.sigmoid(torch.addmm(hb, v_pos, top.W))
        h = self.chains if pcd and self.chains is not None else bern(p_pos)
        labu = top.visible.groups[1]
        for it in range(k):  # features sampled, labels as probabilities (appendix B) or sampled (PCD)
            xv = torch.addmm(vb, h, top.W.T)
            f = bern(torch.sigmoid(xv[:, :nf]))
            lab = torch.softmax(xv[:, nf:], -1)
            if pcd:  # the same draw as units.Softmax.sample
                lab = one_hot_by_inverse_cdf(lab, u.take((b, 1)))
                if self.clamp is not None:
                    lab[: self.clamp.shape[0]] = self.clamp
            v_neg = torch.cat([f, lab], -1)
            p_neg = torch.sigmoid(torch.addmm(hb, v_neg, top.W))
            if it < k - 1 or pcd:
                h = bern(p_neg)
        if pcd:
            self.chains = h.clone()  # h is a view of the step's block of uniforms
        g = {"top.W": torch.mm(v_pos.T, p_pos).addmm_(v_neg.T, p_neg, alpha=-1.0),
             "top.hidden.bias": p_pos.sum(0) - p_neg.sum(0)}
        g.update(self._split_top_bias(v_pos.sum(0) - v_neg.sum(0), labu))
        sleep = [None] * L + [v_neg[:, :nf]]  # sleep: top-down through the generative weights
        for i in reversed(range(L)):
            p = torch.sigmoid(torch.addmm(lower[i].visible.bias, sleep[i + 1], lower[i].W.T))
            sleep[i] = p if i == 0 else bern(p)
        sse = None
        for i in range(L):
            d = torch.sigmoid(torch.addmm(lower[i].visible.bias, wake[i + 1], lower[i].W.T))
            d = torch.sub(wake[i], d, out=d)  # generative: delta rule on wake layer i
            if i == 0:
                sse = (d * d).sum()
            g[f"lower.{i}.W"] = torch.mm(d.T, wake[i + 1])
            g[f"lower.{i}.visible.bias"] = d.sum(0)
            e = torch.sigmoid(torch.addmm(lower[i].hidden.bias, sleep[i], model.rec_weights[i]))
            e = torch.sub(sleep[i + 1], e, out=e)  # recognition: recover sleep layer i+1
            g[f"rec_weights.{i}"] = torch.mm(sleep[i].T, e)
            g[f"lower.{i}.hidden.bias"] = e.sum(0)
        grads = [g[n] for n in self.names]
        if self.cfg.weight_decay:
            for i in self.weight_idx:
                grads[i].add_(self.params[i], alpha=-self.cfg.weight_decay * b)
        torch._foreach_mul_(self.velocities, momentum)
        torch._foreach_add_(self.velocities, grads, alpha=lr / b)
        torch._foreach_add_(self.params, self.velocities)
        return sse


    def _split_top_bias(self, gvb: Tensor, labu) -> dict[str, Tensor]:
        """The top RBM's visible-bias gradient, per parameter of its Joint units."""
        names = [n for n in self.names if n.startswith("top.visible.")]
        sizes = [self.model.n_features, labu.n]
        return dict(zip(names, torch.split(gvb, sizes)))

    def fit(
        self,
        x: Tensor,
        y: Tensor,
        *,
        valid: tuple[Tensor, Tensor] | None = None,
        callback: Callable[[int, dict], None] | None = None,
        checkpoint: str | Path | None = None,
        checkpoint_every: int = 1,
        stop_train_error: float | None = None,
    ) -> list[dict]:
        """Train for the remaining epochs on images ``x`` (n, n_0) and int labels ``y`` (n,).

        Batches are slices of a permutation drawn from the run's generator; the host reads
        the monitors once per epoch (wake reconstruction error, and the free-energy
        classification error on ``valid`` if given). With ``stop_train_error`` each epoch also
        measures the free-energy error on all of ``x`` (``train_error``, of the model ``fit``
        returns: the average when averaging) and training ends after the first epoch where it
        is at most that value (a resumed run that had stopped does not train again).
        """
        cfg, model = self.cfg, self.model
        dev, dt = model.top.W.device, model.top.W.dtype
        self.average.restore_()  # a later fit() goes on from the iterate
        x = model._check_x(x)
        y1 = model.one_hot(y, n_rows=x.shape[0], name="y").to(dev)
        n = x.shape[0]
        if cfg.batch_size > n:
            raise ConfigError(f"batch_size must be <= the number of training rows ({n}), got {cfg.batch_size}")
        if valid is not None:
            xv = model._check_x(valid[0])
            yv = as_labels("valid y", valid[1], n_classes=model.n_labels, n_rows=xv.shape[0], device=dev)
        y_int = y1.argmax(1) if stop_train_error is not None else None
        n_batches = n // cfg.batch_size
        balanced = None
        if cfg.balanced_batches:
            from deepbelief.batching import BalancedOrder

            balanced = BalancedOrder(y1.argmax(1), cfg.batch_size)
            n_batches = balanced.n_batches
        def one_epoch(epoch: int) -> dict:
            k, lr = cfg.gibbs_at(epoch), cfg.lr_at(epoch)
            perm = torch.randperm(n, generator=self.gen, device=dev) if balanced is None else balanced.order(self.gen)
            sse = torch.zeros((), device=dev, dtype=dt)
            for i in range(n_batches):
                idx = perm[i * cfg.batch_size: (i + 1) * cfg.batch_size]
                sse += self.step(x.index_select(0, idx), y1.index_select(0, idx), lr, cfg.momentum, k)
            out = {"recon_error": sse / (n_batches * cfg.batch_size)}
            if valid is not None or stop_train_error is not None:
                with self.average.swapped():
                    if valid is not None:
                        out["valid_error"] = model.error_rate(xv, yv)
                    if stop_train_error is not None:
                        out["train_error"] = model.error_rate(x, y_int)
            finite = torch.stack([torch.isfinite(p).all() for p in self.params]).to(dt)
            vals = torch.cat([torch.stack(list(out.values())).to(dt), finite]).tolist()  # one sync per epoch
            metrics = dict(zip(out, vals[: len(out)]))
            bad = [nm for nm, ok in zip(self.names, vals[len(out):]) if not ok]
            if bad or not math.isfinite(metrics["recon_error"]):
                raise DivergenceError(f"up-down fine-tuning diverged at epoch {epoch}: parameters {bad} "
                                      f"became NaN/inf; lower lr (lr={cfg.lr:g}) or momentum")
            metrics.update(epoch=epoch, gibbs_steps=k, lr=lr)
            return metrics

        stopped = None
        if stop_train_error is not None:
            def stopped() -> bool:
                return bool(self.history) and self.history[-1].get("train_error", math.inf) <= stop_train_error
        run_epochs(self, one_epoch, epochs=cfg.epochs, history=self.history, checkpoint=checkpoint,
                   checkpoint_every=checkpoint_every, callback=self.average.wrap(callback), stopped=stopped)
        self.average.install_()  # the model fit() leaves is the average
        return self.history

    # -- checkpoints ---------------------------------------------------------------------
    def save_checkpoint(self, path: str | Path) -> None:
        with self.average.iterate():
            t = {f"model.{k}": v.clone() for k, v in self.model.state_dict().items()}
        t.update(self.average.state(self.names))
        t.update({f"velocity.{n}": v for n, v in zip(self.names, self.velocities)})
        if self.chains is not None:
            t["chains"] = self.chains
        save_run(path, kind="updown_checkpoint", epoch=self.epoch, model=self.model.config(), train=self.cfg,
                 history=self.history, tensors=t, generator=self.gen)

    def load_checkpoint(self, path: str | Path) -> None:
        tensors, meta = load_run(path, kind="updown_checkpoint", model=self.model.config(), train=self.cfg,
                                 device=self.model.top.W.device, generator=self.gen,
                                 allowed=("epochs", "fast", "final_epochs"))  # final_epochs: the runner's, not ours
        self.average.restore_()
        restore_training_state(path, self.model, tensors, self.names, self.velocities)
        self.average.load_(path, tensors, self.names)
        self.epoch = int(meta["epoch"])
        self.history = list(meta.get("history", []))
        self.chains = tensors.get("chains")


def up_down(
    model: GenerativeDBN,
    x,
    y,
    config: UpDownConfig | None = None,
    *,
    generator: torch.Generator,
    valid: tuple | None = None,
    callback: Callable[[int, dict], None] | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 1,
    resume: bool = False,
    stop_train_error: float | None = None,
) -> list[dict]:
    """Fine-tune ``model`` in place with contrastive wake-sleep; returns per-epoch metrics.

    Args:
        model: a ``GenerativeDBN`` (it is untied first if still tied).
        x: (n, n_0) training images in [0, 1]; y: (n,) int labels.
        config: hyper-parameters (``UpDownConfig()`` if None).
        generator: the run's generator, on the model's device.
        valid: optional (images, labels) for a per-epoch classification error.
        checkpoint: file written atomically every ``checkpoint_every`` epochs and at the end;
            it holds the weights, velocities, generator state and epoch.
        resume: continue from ``checkpoint`` if it exists; the result is bit-identical to an
            uninterrupted run on the same device.
        stop_train_error: end after the first epoch whose free-energy error on ``x`` is at
            most this (``UpDownTrainer.fit``); ``config.epochs`` is then the most it runs.
    """
    trainer = UpDownTrainer(model, config or UpDownConfig(), generator)
    if resume and checkpoint is not None and Path(checkpoint).exists():
        trainer.load_checkpoint(checkpoint)
    x = as_data("x", x, n_features=model.sizes[0], device=model.top.W.device, dtype=model.top.W.dtype)
    return trainer.fit(x, y, valid=valid, callback=callback, checkpoint=checkpoint,
                       checkpoint_every=checkpoint_every, stop_train_error=stop_train_error)
