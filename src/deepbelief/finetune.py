"""Discriminative fine-tuning: unroll a pre-trained stack into a feed-forward net.

Hinton & Salakhutdinov (2006) initialise a deep feed-forward network with the weights
of a greedily trained stack of RBMs, add a softmax output layer, and fine-tune everything
gently with backpropagation. They trained only the new top layer for the first epochs,
so that its random weights do not wreck the pre-trained features; we do the same
(``top_only_epochs``). Two optimisers: their conjugate gradients (``method="cg"``,
deepbelief.cg: 3 line searches per 1,000-image batch) and momentum SGD with a decaying
rate (``method="sgd"``, which dropout needs). Early stopping on a validation set picks the
number of epochs; ``retrain_on_all`` then repeats that many epochs on train + valid.
Dropout (Srivastava et al. 2014) is optional and uses the run's explicit generator.

Two equivalent training steps: by default (``FinetuneConfig.fast=True``) the hand-written
forward and backward pass of ``deepbelief.backprop.FastBackprop``; ``fast=False`` keeps the
plain autograd step (``net(x)``, ``F.cross_entropy``, ``backward``) as the reference. Both
draw the dropout masks from the run's generator in the same order and shapes and update
with the same ``torch.optim.SGD``, so they give the same weights up to float rounding, and
checkpoints written by either resume with either. The epochs run in the shared loop
(``deepbelief.loop``); a ``Finetuner`` holds the run's state and writes its checkpoint.

The result is an ordinary ``torch.nn.Module``: ``net(x)`` returns logits.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepbelief import checkpoint as ck
from deepbelief.averaging import IterateAverage, check_average_decay
from deepbelief.backprop import FastBackprop, cg_batch, weight_gradient_scales
from deepbelief.classifier import DeepClassifier, random_classifier, unroll
from deepbelief.errors import ConfigError, as_data, as_labels, check_choice, check_fields, check_float, check_int
from deepbelief.io import load_state_into
from deepbelief.loop import run_epochs

__all__ = ["DeepClassifier", "FastBackprop", "FinetuneConfig", "Finetuner", "error_rate", "finetune", "random_classifier",
           "unroll"]

@dataclass
class FinetuneConfig:
    """Backprop fine-tuning hyper-parameters."""

    epochs: int = 50
    batch_size: int = 100
    lr: float = 0.1
    #: learning rate is multiplied by this after every epoch
    lr_decay: float = 0.97
    momentum: float = 0.9
    weight_decay: float = 0.0
    #: epochs at the start that update only the new output layer
    top_only_epochs: int = 5
    #: stop when the validation error has not improved for this many epochs (0: never)
    patience: int = 0
    dropout: float = 0.0
    input_dropout: float = 0.0
    #: hand-written forward/backward (FastBackprop) instead of autograd; same result up to
    #: float rounding, faster per step (see the module docstring)
    fast: bool = True
    #: "sgd": momentum SGD on ``batch_size`` rows per update; "cg": conjugate gradients
    #: (deepbelief.cg) on ``cg_batch_size`` rows, ``cg_line_searches`` line searches per batch,
    #: each batch a fresh search (Hinton & Salakhutdinov 2006: 1,000 rows, 3 line searches);
    #: ``lr``, ``lr_decay``, momentum and ``batch_size`` are not used by "cg"
    method: str = "sgd"
    cg_batch_size: int = 1000
    cg_line_searches: int = 3
    #: start each batch's first line search at the scale of the previous batch's last accepted
    #: step (deepbelief.cg, ``first_decrease``) instead of ``minimize.m``'s 1 / (1 + |g|^2):
    #: once the loss is ~1e-8 that first step is ~1e6 times too short and a search spends
    #: ~13 evaluations growing it (benchmarks/RESULTS.md, 2026-12-05 third session)
    cg_carry_scale: bool = False
    #: max-norm (Srivastava et al. 2014): after every update of the hidden layers each hidden
    #: unit's incoming weight vector is scaled back to an L2 norm <= max_norm (0: off)
    max_norm: float = 0.0
    #: momentum rises linearly from ``momentum`` (epoch 0) to ``final_momentum`` (epoch
    #: ``momentum_ramp_epochs`` and after); None: constant ``momentum``
    final_momentum: float | None = None
    momentum_ramp_epochs: int = 0
    #: scale each gradient by (1 - momentum), the update of Hinton et al. (2012):
    #: v <- m v - (1 - m) lr g, so the step's long-run size stays lr as the momentum rises
    dampen_momentum: bool = False
    #: sgd: evaluate, keep and return the moving average of the weights over updates,
    #: a <- d a + (1 - d) w with d = average_decay after a warm-up (deepbelief.averaging; 0: off)
    average_decay: float = 0.0
    #: with dropout, take the SGD steps of the papers' parametrisation (Hinton et al. 2012,
    #: Srivastava et al. 2014: unscaled masks, weights W' = W / q trained, multiplied by the keep
    #: probability q at test time) instead of inverted dropout's: every weight's gradient is
    #: multiplied by q^2, q the keep probability of the layer's inputs, biases' and weight decay
    #: unchanged. The forward passes are the same net; a rate means a q^2 times smaller step on
    #: the weights here, so a published rate can be used as it is (docs/2-training.md)
    paper_dropout_steps: bool = False

    def validate(self) -> "FinetuneConfig":
        check_int("epochs", self.epochs, minimum=0)
        check_int("batch_size", self.batch_size, minimum=1)
        check_float("lr", self.lr, minimum=0.0, strict_min=True)
        check_float("lr_decay", self.lr_decay, minimum=0.0, maximum=1.0, strict_min=True)
        check_float("momentum", self.momentum, minimum=0.0, maximum=1.0)
        check_float("weight_decay", self.weight_decay, minimum=0.0)
        check_int("top_only_epochs", self.top_only_epochs, minimum=0)
        check_int("patience", self.patience, minimum=0)
        check_float("dropout", self.dropout, minimum=0.0, maximum=0.99)
        check_float("input_dropout", self.input_dropout, minimum=0.0, maximum=0.99)
        for name in ("fast", "dampen_momentum", "cg_carry_scale", "paper_dropout_steps"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ConfigError(f"{name} must be true or false, got {value!r:.80} ({type(value).__name__})")
        check_choice("method", self.method, {"sgd", "cg"})
        check_int("cg_batch_size", self.cg_batch_size, minimum=1)
        check_int("cg_line_searches", self.cg_line_searches, minimum=1)
        check_float("max_norm", self.max_norm, minimum=0.0)
        if self.final_momentum is not None:
            check_float("final_momentum", self.final_momentum, minimum=0.0, maximum=1.0)
        check_int("momentum_ramp_epochs", self.momentum_ramp_epochs, minimum=0)
        self.average_decay = check_average_decay(self.average_decay)
        if self.method == "cg" and self.average_decay > 0:
            raise ConfigError(f"average_decay is for method 'sgd' (CG takes exact line-search steps); got "
                              f"average_decay={self.average_decay!r} with method 'cg'")
        if self.method == "cg" and (self.dropout > 0 or self.input_dropout > 0 or self.max_norm > 0):
            raise ConfigError(f"method 'cg' minimises one fixed objective per batch by line searches: it cannot "
                              f"use dropout (a new random objective at every evaluation) or max_norm (a projection "
                              f"the line search does not know); got dropout={self.dropout}, input_dropout="
                              f"{self.input_dropout}, max_norm={self.max_norm}. Use method 'sgd' for those")
        return self

    def momentum_at(self, epoch: int) -> float:
        """The momentum of 0-based ``epoch``: linear from ``momentum`` to ``final_momentum``
        over ``momentum_ramp_epochs`` epochs (Hinton et al. 2012: 0.5 to 0.99 over 500)."""
        if self.final_momentum is None:
            return self.momentum
        if self.momentum_ramp_epochs == 0 or epoch >= self.momentum_ramp_epochs:
            return self.final_momentum
        return self.momentum + (self.final_momentum - self.momentum) * epoch / self.momentum_ramp_epochs

    @classmethod
    def from_dict(cls, d: dict) -> "FinetuneConfig":
        return cls(**check_fields(cls, d, "fine-tuning option")).validate()


@torch.no_grad()
def error_rate(net: nn.Module, x: Tensor, y: Tensor, batch_size: int = 4096) -> Tensor:
    """Fraction misclassified, as a 0-d tensor on the device (no host sync)."""
    was = net.training
    net.eval()
    wrong = torch.zeros((), device=x.device)
    for i in range(0, x.shape[0], batch_size):
        wrong += (net(x[i : i + batch_size]).argmax(-1) != y[i : i + batch_size]).sum()
    net.train(was)
    return wrong / max(1, x.shape[0])


def finetune(
    net: DeepClassifier,
    x: Tensor,
    y: Tensor,
    config: FinetuneConfig | None = None,
    *,
    generator: torch.Generator,
    valid: tuple[Tensor, Tensor] | None = None,
    callback: Callable[[int, dict], None] | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 1,
    resume: bool = False,
) -> list[dict]:
    """Fine-tune ``net`` with backprop on (x, y); returns per-epoch metrics.

    With ``valid``, the weights of the epoch with the lowest validation error are restored
    at the end and each metrics dict has ``valid_error``; ``best_epoch`` is in the last one.

    Args:
        net: the classifier (its device is the run's device).
        x: (n, n_inputs) training inputs; y: (n,) integer labels in [0, n_classes).
        config: hyper-parameters (``FinetuneConfig()`` if None).
        generator: the run's generator (permutations and dropout masks).
        valid: optional (x_valid, y_valid) for early stopping.
        callback: called as ``callback(epoch, metrics)`` after each epoch.
        checkpoint: file written atomically every ``checkpoint_every`` epochs and at the
            end, holding the weights, the optimiser's momentum buffers, the best weights so
            far, the generator state, the epoch, the learning rate and the history
            (deepbelief.checkpoint).
        resume: continue from ``checkpoint`` if it exists; the result equals an
            uninterrupted run's bit for bit on the same device.
    Raises:
        DivergenceError: the training loss became NaN or inf (the checkpoint of the last
            good epoch is kept).
    """
    from deepbelief.errors import check_generator

    if not isinstance(net, DeepClassifier):
        raise ConfigError(f"net must be a DeepClassifier (see unroll), got {type(net).__name__}")
    cfg = (config or FinetuneConfig()).validate()
    dev = net.out.weight.device
    check_generator("generator", generator, dev)
    checkpoint_every = check_int("checkpoint_every", checkpoint_every, minimum=1)
    if resume and checkpoint is None:
        raise ConfigError("resume=True needs a checkpoint file to resume from, got checkpoint=None")
    x = as_data("x", x, n_features=net.sizes[0], device=dev, dtype=net.out.weight.dtype)
    y = as_labels("y", y, n_classes=net.n_classes, n_rows=x.shape[0], device=dev)
    size_name = "cg_batch_size" if cfg.method == "cg" else "batch_size"
    if getattr(cfg, size_name) > x.shape[0]:
        raise ConfigError(f"{size_name} must be <= the number of training rows ({x.shape[0]}), "
                          f"got {getattr(cfg, size_name)}")
    if valid is not None:
        if not isinstance(valid, (tuple, list)) or len(valid) != 2:
            raise ConfigError(f"valid must be a pair (x_valid, y_valid), got {type(valid).__name__}")
        xv = as_data("valid x", valid[0], n_features=net.sizes[0], device=dev, dtype=net.out.weight.dtype)
        yv = as_labels("valid y", valid[1], n_classes=net.n_classes, n_rows=xv.shape[0], device=dev)
        valid = (xv, yv)
    net.dropout, net.input_dropout = cfg.dropout, cfg.input_dropout
    run = Finetuner(net, cfg, generator)
    if resume and checkpoint is not None and Path(checkpoint).exists():
        run.load_checkpoint(checkpoint)
    run_epochs(run, lambda epoch: run.one_epoch(epoch, x, y, valid, checkpoint), epochs=cfg.epochs,
               history=run.history, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
               callback=callback, stopped=lambda: run.stopped)
    history = run.history
    run.average.install_()  # the model returned is the average (the best one's, with valid)
    if run.best_state is not None:
        net.load_state_dict(run.best_state)
        history[-1]["best_epoch"] = max(i for i, r in enumerate(history) if r.get("best"))
    net.eval()
    return history


class Finetuner:
    """The state of one fine-tuning run, all of which its checkpoint holds: the net, the
    optimiser of the current phase (``"top"``: the output layer alone, ``"all"``), the
    learning rate, the best weights on validation so far and the early-stopping counters.
    ``finetune`` drives it with the shared epoch loop (deepbelief.loop)."""

    def __init__(self, net: DeepClassifier, cfg: FinetuneConfig, generator: torch.Generator):
        self.net, self.cfg, self.gen = net, cfg, generator
        self.top, self.everything = list(net.out.parameters()), list(net.parameters())
        self.fast = FastBackprop(net) if cfg.fast and FastBackprop.supports(net) else None
        self.epoch, self.history = 0, []
        self.lr, self.opt, self.phase = cfg.lr, None, None
        self.best, self.best_state, self.since, self.stopped = float("inf"), None, 0, False
        self.cg_decrease = None  # the last accepted CG step's t |d0| (cfg.cg_carry_scale)
        self.average = IterateAverage(self.everything, cfg.average_decay)  # no-ops unless average_decay > 0
        self.names = [n for n, _ in net.named_parameters()]
        self.weight_scales = weight_gradient_scales(net) if cfg.paper_dropout_steps else None

    def _build(self, which: str):  # conjugate gradients keep no state from one batch to the next
        return _sgd(self.top if which == "top" else self.everything, self.lr, self.cfg) if self.cfg.method == "sgd" \
            else None

    def _set_phase(self, epoch: int) -> float | None:
        """Start the phase of ``epoch`` (a fresh optimiser when the whole net joins in) and
        set the optimiser's rate and momentum; returns the momentum (None for CG)."""
        cfg = self.cfg
        want = "top" if epoch < cfg.top_only_epochs else "all"
        if want != self.phase:
            self.opt, self.phase = self._build(want), want
        if self.opt is None:
            return None
        momentum = cfg.momentum_at(epoch)
        for group in self.opt.param_groups:
            group["lr"] = self.lr
            if cfg.final_momentum is not None:
                group["momentum"] = momentum
            if cfg.dampen_momentum:
                group["dampening"] = momentum
        return momentum

    def _batch(self, xb: Tensor, yb: Tensor, loss_sum: Tensor, constrain: bool) -> int:
        """One update on a batch; returns the function evaluations of CG's line searches (0 for SGD)."""
        net, opt, top_only = self.net, self.opt, self.phase == "top"
        if opt is None:
            res = cg_batch(net, xb, yb, self.cfg, self.fast, loss_sum, top_only=top_only,
                           first_decrease=self.cg_decrease if self.cfg.cg_carry_scale else None)
            if res.last_decrease is not None:
                self.cg_decrease = res.last_decrease
            return res.evaluations
        fused = self.fast is not None and self.fast.fuses(opt)  # the update inside the step
        if self.fast is not None:
            self.fast.step(xb, yb, self.gen, loss_sum, top_only=top_only, sgd=opt if fused else None,
                           weight_scales=self.weight_scales)
        else:
            loss = F.cross_entropy(net(xb, self.gen), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            loss_sum += loss.detach()
            if self.weight_scales is not None:
                for lin, scale in zip(list(net.hidden) + [net.out], self.weight_scales):
                    if lin.weight.grad is not None:
                        lin.weight.grad.mul_(scale)
        if not fused:
            opt.step()
        if constrain:
            _max_norm_(net, self.cfg.max_norm)
        self.average.update_()
        return 0

    def one_epoch(self, epoch: int, x: Tensor, y: Tensor, valid, checkpoint) -> dict:
        """Train epoch ``epoch``; returns its metrics (one host sync)."""
        cfg, net = self.cfg, self.net
        momentum = self._set_phase(epoch)
        net.train()
        n, bs = x.shape[0], cfg.batch_size if cfg.method == "sgd" else cfg.cg_batch_size
        perm = torch.randperm(n, generator=self.gen, device=x.device)
        loss_sum = torch.zeros((), device=x.device)
        constrain = cfg.max_norm > 0 and self.phase == "all"
        evaluations = 0
        for i in range(n // bs):
            idx = perm[i * bs : (i + 1) * bs]
            evaluations += self._batch(x.index_select(0, idx), y.index_select(0, idx), loss_sum, constrain)
        row = {"epoch": epoch, "lr": self.lr, "loss": loss_sum / max(1, n // bs)}
        if cfg.method == "cg":  # the line searches' cost: it grows when they cannot meet the Wolfe conditions
            row["cg_evaluations_per_batch"] = evaluations / max(1, n // bs)
        if momentum is not None and cfg.final_momentum is not None:
            row["momentum"] = momentum
        row["finite"] = torch.stack([torch.isfinite(p).all() for p in self.everything]).all()
        with self.average.swapped():  # validation (and the best weights) are the average's
            if valid is not None:
                row["valid_error"] = error_rate(net, *valid)
            row = {k: (float(v) if isinstance(v, Tensor) else v) for k, v in row.items()}  # one sync per epoch
            self._check_finite(row.pop("finite") == 1.0, row["loss"], epoch, checkpoint)
            if valid is not None:
                self._early_stopping(row)
        if not self.stopped:
            self.lr *= cfg.lr_decay
        return row

    def _check_finite(self, finite: bool, loss: float, epoch: int, checkpoint) -> None:
        if math.isfinite(loss) and finite:
            return
        from deepbelief.errors import DivergenceError

        kept = ck.kept_note(checkpoint, epoch)
        raise DivergenceError(
            f"fine-tuning diverged at epoch {epoch}: the training loss became {loss}"
            f"{'' if finite else ' and weights became NaN/inf'} "
            f"(parameter group {'output layer' if self.phase == 'top' else 'all layers'}). Likely cause: the "
            f"learning rate (lr={self.lr:g}) or momentum ({self.cfg.momentum:g}) is too high, or the inputs are "
            f"not scaled like the pre-training data; lower lr{kept}"
        )

    def _early_stopping(self, row: dict) -> None:
        if row["valid_error"] < self.best:
            self.best, self.since = row["valid_error"], 0
            self.best_state = copy.deepcopy(self.net.state_dict())
            row["best"] = True
        else:
            self.since += 1
            if self.cfg.patience and self.since >= self.cfg.patience:
                self.stopped = True

    # -- checkpoints (deepbelief.checkpoint.save_run) -------------------------------------
    def save_checkpoint(self, path: str | Path) -> None:
        opt = self.opt
        opt_t, opt_info = ck.optimizer_tensors(opt) if opt is not None else ({}, {"n_params": 0, "other": {}})
        with self.average.iterate():  # the weights training goes on from, and their average
            t = {f"net.{k}": v.clone() for k, v in self.net.state_dict().items()}
        t.update(self.average.state(self.names))
        t.update(opt_t)
        if self.best_state is not None:
            t.update({f"best.{k}": v for k, v in self.best_state.items()})
        ck.save_run(path, kind="finetune_checkpoint", epoch=self.epoch, model=self.net.config(), train=self.cfg,
                    history=self.history, tensors=t, generator=self.gen, lr=self.lr, phase=self.phase,
                    best=self.best, since=self.since, stopped=self.stopped, optim=opt_info,
                    cg_decrease=self.cg_decrease)

    def load_checkpoint(self, path: str | Path) -> None:
        # fast only changes float rounding
        tensors, meta = ck.load_run(path, kind="finetune_checkpoint", model=self.net.config(), train=self.cfg,
                                    device=self.net.out.weight.device, generator=self.gen,
                                    allowed=("epochs", "fast"))
        load_state_into(path, self.net, {k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        self.average.load_(path, tensors, self.names)
        self.best_state = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")} or None
        self.epoch, self.lr, self.phase = int(meta["epoch"]), float(meta["lr"]), meta["phase"]
        self.best, self.since, self.stopped = float(meta["best"]), int(meta["since"]), bool(meta["stopped"])
        self.history = list(meta["history"])
        self.cg_decrease = meta.get("cg_decrease")  # checkpoints before 2026-12-05 (third session): None
        if self.phase is not None and self.cfg.method == "sgd":
            self.opt = self._build(self.phase)
            ck.load_optimizer_tensors(path, self.opt, tensors, meta["optim"])


@torch.no_grad()
def _max_norm_(net: DeepClassifier, c: float) -> None:
    """Project each hidden unit's incoming weight vector (a row of ``weight``, shape
    (n_out, n_in)) onto the ball ||w|| <= c (Srivastava et al. 2014, section 5.1); the
    output layer is not constrained."""
    for lin in net.hidden:
        w = lin.weight
        norms = torch.linalg.vector_norm(w, dim=1, keepdim=True)  # (n_out, 1)
        w.mul_((c / norms.clamp_min(1e-30)).clamp_(max=1.0))


def _sgd(params, lr, cfg):
    """Momentum SGD: one fused kernel on CUDA where this torch has it, else foreach. Both
    keep the state deepbelief.checkpoint saves (a ``momentum_buffer`` per parameter)."""
    params = list(params)
    kw = dict(lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.dampen_momentum:
        kw["dampening"] = cfg.momentum
    if params and all(p.device.type == "cuda" for p in params):
        try:
            return torch.optim.SGD(params, fused=True, **kw)
        except (TypeError, RuntimeError, ValueError):  # an older torch, or a dtype fused lacks
            pass
    return torch.optim.SGD(params, foreach=True, **kw)
