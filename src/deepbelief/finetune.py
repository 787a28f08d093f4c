"""Discriminative fine-tuning: unroll a pre-trained stack into a feed-forward net.

Hinton & Salakhutdinov (2006) initialise a deep feed-forward network with the weights
of a greedily trained stack of RBMs, add a softmax output layer, and fine-tune everything
gently with backpropagation. They trained only the new top layer for the first epochs,
so that its random weights do not wreck the pre-trained features; we do the same
(``top_only_epochs``), then use SGD with momentum (their optimiser was conjugate
gradient; plain momentum SGD with a small, decaying learning rate is the usual modern
stand-in and is much cheaper per epoch). Early stopping on a validation set picks the
number of epochs; ``retrain_on_all`` then repeats that many epochs on train + valid.
Dropout (Srivastava et al. 2014) is optional and uses the run's explicit generator.

Two equivalent training steps. By default (``FinetuneConfig.fast=True``) ``finetune`` runs
a hand-written forward and backward pass (``FastBackprop``): ``addmm`` and in-place
activations into buffers reused across steps, the gradients written straight into each
parameter's ``.grad``, and in the top-only phase no backward pass below the output layer.
Per step this removes the autograd graph and most allocations, which dominate on a GPU at
batch 100 (the matmuls of a 784-500-500-2000-10 step take ~0.1 ms, the autograd step ~1.6 ms
on an H100). ``fast=False`` keeps the plain autograd step (``net(x)``, ``F.cross_entropy``,
``backward``) as the reference. Both draw the dropout masks from the run's generator in the
same order and shapes and update with the same ``torch.optim.SGD``, so they give the same
weights up to float rounding, and checkpoints written by either resume with either.

The result is an ordinary ``torch.nn.Module``: ``net(x)`` returns logits.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepbelief.errors import (ConfigError, ModelFileError, as_data, as_labels, check_choice, check_fields,
                               check_float, check_int)
from deepbelief import checkpoint as ck
from deepbelief.classifier import DeepClassifier
from deepbelief.io import load_state_into

__all__ = ["DeepClassifier", "FastBackprop", "FinetuneConfig", "error_rate", "finetune", "random_classifier", "unroll"]

#: the activations whose derivatives FastBackprop writes by hand
_FAST_ACTIVATIONS = ("sigmoid", "relu", "softplus", "identity")


def unroll(dbn, n_classes: int = 10, *, generator: torch.Generator | None = None, dropout: float = 0.0,
           input_dropout: float = 0.0, out_std: float = 0.01) -> DeepClassifier:
    """Copy a stack's recognition weights into a ``DeepClassifier``.

    Layer i computes act(s_v(v) W_i + c_i), the mean of RBM i's hidden units (the hidden
    unit type's ``activation``); the visible scale is folded into the weights
    (``fold_scale``: for Gaussian visible units s_v(v) = v / sigma^2, so W / sigma^2). The
    new output layer starts from N(0, out_std^2) weights drawn with ``generator``.
    """
    rbms = list(dbn.rbms) if hasattr(dbn, "rbms") else list(dbn) if isinstance(dbn, (list, tuple)) else None
    if not rbms or not all(hasattr(r, "hidden") and hasattr(r, "W") for r in rbms):
        raise ConfigError(f"dbn must be a DBN or a non-empty list of RBMs, got {dbn!r:.80}")
    acts = []
    for r in rbms:
        if r.hidden.activation is None:
            raise ConfigError(f"cannot unroll hidden units of type {r.hidden.kind!r}: the unit type has no "
                              f"feed-forward activation (set its ``activation``)")
        acts.append(r.hidden.activation)
    sizes = [rbms[0].n_visible] + [r.n_hidden for r in rbms]
    net = DeepClassifier(sizes, acts, n_classes, dropout=dropout, input_dropout=input_dropout)
    device = rbms[0].W.device
    net.to(device)
    with torch.no_grad():
        for lin, r in zip(net.hidden, rbms):
            lin.weight.copy_(r.visible.fold_scale(r.W).T)
            lin.bias.copy_(r.hidden.bias)
        net.out.weight.copy_(torch.randn(net.out.weight.shape, generator=generator, device=device) * out_std)
        net.out.bias.zero_()
    return net


def random_classifier(sizes, n_classes: int = 10, *, activation: str = "sigmoid", init: str = "glorot",
                      init_std: float = 0.01, generator: torch.Generator | None = None, device=None,
                      **kw) -> DeepClassifier:
    """The same architecture from random initialisation (the no-pre-training baseline).

    ``init``, for the weights of every layer (biases start at zero):
        "glorot": uniform in +-r, r = sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010,
            eq. 16), times 4 for sigmoid units (their recommendation for the logistic);
            variance r^2 / 3.
        "normal": N(0, init_std^2), the "small random weights" of the lecture.
    Draws come from ``generator`` layer by layer, input side first.
    """
    check_choice("init", init, {"glorot", "normal"})
    check_float("init_std", init_std, minimum=0.0, strict_min=True)
    net = DeepClassifier(sizes, [activation] * (len(sizes) - 1), n_classes, **kw).to(device)
    with torch.no_grad():
        for lin in list(net.hidden) + [net.out]:
            fan_out, fan_in = lin.weight.shape
            if init == "glorot":
                r = (6.0 / (fan_in + fan_out)) ** 0.5 * (4.0 if activation == "sigmoid" else 1.0)
                lin.weight.copy_((torch.rand(lin.weight.shape, generator=generator, device=device) * 2 - 1) * r)
            else:
                lin.weight.copy_(torch.randn(lin.weight.shape, generator=generator, device=device) * init_std)
            lin.bias.zero_()
    return net


class FastBackprop:
    """Hand-written training step of a ``DeepClassifier``: the softmax cross-entropy averaged
    over the batch and its gradient, written into each parameter's ``.grad``.

    Forward, hidden layers l = 1..L, h_0 = drop(x) (shapes: b rows, n_l units):
        z_l = h_{l-1} W_l^T + b_l            (b, n_l)
        a_l = act(z_l);   h_l = drop(a_l) = a_l * keep_l / (1 - p)
        logits = h_L W_o^T + b_o             (b, C)
    Backward (back-propagation, Rumelhart, Hinton & Williams 1986):
        d_o = (softmax(logits) - onehot(y)) / b
        dW_o = d_o^T h_L,   db_o = sum over rows of d_o,   g_L = d_o W_o
        d_l = g_l * keep_l / (1 - p) * act'(z_l)
        dW_l = d_l^T h_{l-1},   db_l = sum over rows of d_l,   g_{l-1} = d_l W_l
    with act' = a (1 - a) for sigmoid, [a > 0] for relu, sigmoid(z) for softplus, 1 for
    identity. ``top_only`` stops after dW_o, db_o (the other layers are frozen then).

    The dropout masks come from the generator in ``DeepClassifier._drop``'s order and shapes
    (input first, then after each hidden activation), so a step here and autograd on
    ``net(x, gen)`` use the same random numbers and agree up to float rounding. Activations
    and gradients live in buffers kept per batch size and reused; nothing syncs the host.
    """

    def __init__(self, net: DeepClassifier):
        if not isinstance(net, DeepClassifier):
            raise ConfigError(f"net must be a DeepClassifier, got {type(net).__name__}")
        self.net = net
        self._buffers: dict[int, dict] = {}

    @staticmethod
    def supports(net: nn.Module) -> bool:
        """True unless a subclass changed the maths this step re-implements, or an
        activation has no hand-written derivative here (then autograd is used)."""
        t = type(net)
        return isinstance(net, DeepClassifier) and all(
            getattr(t, m) is getattr(DeepClassifier, m) for m in ("forward", "features", "_drop")) and all(
            a in _FAST_ACTIVATIONS for a in net.activations)

    def _buffers_for(self, b: int) -> dict:
        bufs = self._buffers.get(b)
        w = self.net.out.weight
        if bufs is None or bufs["logits"].device != w.device or bufs["logits"].dtype != w.dtype:
            def new(n, dtype=w.dtype):
                return torch.empty((b, n), device=w.device, dtype=dtype)

            hid = self.net.sizes[1:]
            bufs = {
                "x": new(self.net.sizes[0]),           # input after dropout
                "x_keep": new(self.net.sizes[0], torch.bool),
                "a": [new(n) for n in hid],           # z_l, then a_l in place (softplus: z_l stays)
                "h": [new(n) for n in hid],           # a_l after dropout
                "u": [new(n) for n in hid],           # uniforms for the mask, then act'(z_l)
                "keep": [new(n, torch.bool) for n in hid],
                "g": [new(n) for n in hid],           # g_l, then d_l in place
                "logits": new(self.net.n_classes),
                "d": new(self.net.n_classes),
                "onehot": new(self.net.n_classes),
                "classes": torch.arange(self.net.n_classes, device=w.device).unsqueeze(0),  # (1, C)
            }
            self._buffers = {b: bufs}  # one batch size at a time: a step of another size rebuilds them
        return bufs

    @staticmethod
    def _drop(a: Tensor, p: float, gen, u: Tensor, keep: Tensor, out: Tensor) -> Tensor:
        # the same draw as DeepClassifier._drop: torch.rand(shape) is uniform_ on a new tensor
        u.uniform_(generator=gen)
        torch.ge(u, p, out=keep)
        return torch.mul(a, keep, out=out).div_(1.0 - p)

    @torch.no_grad()
    def step(self, x: Tensor, y: Tensor, generator: torch.Generator | None, loss_sum: Tensor,
             top_only: bool = False) -> None:
        """One forward/backward pass on a batch; adds the batch's mean loss to ``loss_sum``.

        Args:
            x: (b, n_inputs) inputs; y: (b,) integer labels (int64), on the net's device.
            generator: draws the dropout masks (unused without dropout or in eval mode).
            loss_sum: 0-d tensor on the device, incremented in place (no host sync).
            top_only: compute only the output layer's gradient.
        After the call each parameter whose gradient was computed holds it in ``.grad``.
        """
        net = self.net
        b = x.shape[0]
        B = self._buffers_for(b)
        p_in, p = (net.input_dropout, net.dropout) if net.training else (0.0, 0.0)
        layers = list(net.hidden) + [net.out]
        for lin in layers[-1:] if top_only else layers:
            for par in (lin.weight, lin.bias):
                if par.grad is None:
                    par.grad = torch.zeros_like(par)

        h = self._drop(x, p_in, generator, B["x"], B["x_keep"], B["x"]) if p_in > 0 else x
        inputs = [h]  # h_0 .. h_L: the inputs of each layer's product
        for i, (lin, act) in enumerate(zip(net.hidden, net.activations)):
            a = torch.addmm(lin.bias, h, lin.weight.T, out=B["a"][i])
            if act == "sigmoid":
                a.sigmoid_()
            elif act == "relu":
                a.relu_()
            elif act == "softplus":
                a = F.softplus(a)  # a new tensor: z_l stays in B["a"][i] for act'
            h = self._drop(a, p, generator, B["u"][i], B["keep"][i], B["h"][i]) if p > 0 else a
            inputs.append(h)
        logits = torch.addmm(net.out.bias, h, net.out.weight.T, out=B["logits"])

        d = torch.log_softmax(logits, 1, out=B["d"])  # (b, C) log-probabilities
        y1 = y.unsqueeze(1)
        loss_sum.sub_(d.gather(1, y1).mean())
        onehot = torch.eq(B["classes"], y1, out=B["onehot"])  # element-wise: deterministic on CUDA too
        d.exp_().sub_(onehot).div_(b)  # (softmax - onehot) / b
        torch.mm(d.T, h, out=net.out.weight.grad)
        torch.sum(d, 0, out=net.out.bias.grad)
        if top_only:
            return
        L = len(net.hidden)
        g = torch.mm(d, net.out.weight, out=B["g"][L - 1]) if L else None
        for i in reversed(range(L)):
            lin, act = net.hidden[i], net.activations[i]
            if p > 0:  # the backward of a * keep / (1 - p), in autograd's order
                g.div_(1.0 - p).mul_(B["keep"][i])
            a, u = B["a"][i], B["u"][i]
            if act == "sigmoid":
                g.mul_(torch.addcmul(a, a, a, value=-1.0, out=u))  # a - a^2 = a (1 - a)
            elif act == "relu":
                g.mul_(torch.sign(a, out=u))  # a >= 0, so sign(a) = [a > 0]
            elif act == "softplus":
                g.mul_(torch.sigmoid(a, out=u))  # a holds z_l here
            torch.mm(g.T, inputs[i], out=lin.weight.grad)
            torch.sum(g, 0, out=lin.bias.grad)
            if i > 0:
                g = torch.mm(g, lin.weight, out=B["g"][i - 1])


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
        for name in ("fast", "dampen_momentum"):
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
    from deepbelief.errors import DivergenceError, check_generator

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
    net.dropout, net.input_dropout = cfg.dropout, cfg.input_dropout
    top = list(net.out.parameters())
    everything = list(net.parameters())
    n, bs = x.shape[0], cfg.batch_size if cfg.method == "sgd" else cfg.cg_batch_size
    history, best, best_state, since = [], float("inf"), None, 0
    lr, opt, phase, start, stopped = cfg.lr, None, None, 0, False

    fast = FastBackprop(net) if cfg.fast and FastBackprop.supports(net) else None

    def build(which):  # conjugate gradients keep no state from one batch to the next
        return _sgd(top if which == "top" else everything, lr, cfg) if cfg.method == "sgd" else None

    if resume and checkpoint is not None and Path(checkpoint).exists():
        tensors, meta = ck.load_checkpoint(checkpoint, kind="finetune_checkpoint", device=dev, generator=generator)
        if meta.get("net") != net.config():
            raise ModelFileError(f"checkpoint {str(checkpoint)!r} was written for another network: {meta.get('net')}")
        # fast only changes float rounding; an option a checkpoint lacks is one added since,
        # whose default is the behaviour of the run that wrote it
        saved = {**dataclasses.asdict(FinetuneConfig()), **(meta.get("train") or {})}
        ck.check_same_config(checkpoint, saved, cfg, allowed=("epochs", "fast"))
        net_state = {k[4:]: v for k, v in tensors.items() if k.startswith("net.")}
        load_state_into(checkpoint, net, net_state)
        best_keys = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
        best_state = best_keys or None
        start, lr, phase = int(meta["epoch"]), float(meta["lr"]), meta["phase"]
        best, since, stopped = float(meta["best"]), int(meta["since"]), bool(meta["stopped"])
        history = list(meta["history"])
        if phase is not None and cfg.method == "sgd":
            opt = build(phase)
            ck.load_optimizer_tensors(checkpoint, opt, tensors, meta["optim"])

    def save(epoch_done):
        opt_t, opt_info = ck.optimizer_tensors(opt) if opt is not None else ({}, {"n_params": 0, "other": {}})
        t = {f"net.{k}": v for k, v in net.state_dict().items()}
        t.update(opt_t)
        if best_state is not None:
            t.update({f"best.{k}": v for k, v in best_state.items()})
        meta = {"epoch": epoch_done, "lr": lr, "phase": phase, "best": best, "since": since, "stopped": stopped,
                "history": history, "optim": opt_info, "net": net.config(), "train": dataclasses.asdict(cfg)}
        ck.save_checkpoint(checkpoint, kind="finetune_checkpoint", tensors=t, meta=meta, generator=generator)

    for epoch in range(start, cfg.epochs):
        if stopped:
            break
        t0 = time.perf_counter()
        want = "top" if epoch < cfg.top_only_epochs else "all"
        if want != phase:  # a fresh optimiser when the whole net joins in
            opt, phase = build(want), want
        if opt is not None:
            momentum = cfg.momentum_at(epoch)
            for group in opt.param_groups:
                group["lr"] = lr
                if cfg.final_momentum is not None:
                    group["momentum"] = momentum
                if cfg.dampen_momentum:
                    group["dampening"] = momentum
        net.train()
        perm = torch.randperm(n, generator=generator, device=dev)
        loss_sum = torch.zeros((), device=dev)
        constrain = cfg.max_norm > 0 and phase == "all"
        for i in range(n // bs):
            idx = perm[i * bs : (i + 1) * bs]
            if opt is None:
                _cg_batch(net, x.index_select(0, idx), y.index_select(0, idx), cfg, fast, loss_sum,
                          top_only=phase == "top")
                continue
            if fast is not None:
                fast.step(x.index_select(0, idx), y.index_select(0, idx), generator, loss_sum,
                          top_only=phase == "top")
                opt.step()
            else:
                logits = net(x.index_select(0, idx), generator)
                loss = F.cross_entropy(logits, y.index_select(0, idx))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss_sum += loss.detach()
            if constrain:
                _max_norm_(net, cfg.max_norm)
        row = {"epoch": epoch, "lr": lr, "loss": loss_sum / max(1, n // bs)}
        if opt is not None and cfg.final_momentum is not None:
            row["momentum"] = momentum
        if valid is not None:
            row["valid_error"] = error_rate(net, xv, yv)
        row["finite"] = torch.stack([torch.isfinite(p).all() for p in everything]).all()
        row = {k: (float(v) if isinstance(v, Tensor) else v) for k, v in row.items()}  # one sync per epoch
        row["seconds"] = time.perf_counter() - t0
        finite = row.pop("finite") == 1.0
        if not math.isfinite(row["loss"]) or not finite:
            kept = (f"; the last good checkpoint (epoch {epoch}) is kept at {str(checkpoint)!r}"
                    if checkpoint is not None and Path(checkpoint).exists() else "")
            raise DivergenceError(
                f"fine-tuning diverged at epoch {epoch}: the training loss became {row['loss']}"
                f"{'' if finite else ' and weights became NaN/inf'} "
                f"(parameter group {'output layer' if phase == 'top' else 'all layers'}). Likely cause: the "
                f"learning rate (lr={lr:g}) or momentum ({cfg.momentum:g}) is too high, or the inputs are "
                f"not scaled like the pre-training data; lower lr{kept}"
            )
        history.append(row)
        if valid is not None:
            if row["valid_error"] < best:
                best, since = row["valid_error"], 0
                best_state = copy.deepcopy(net.state_dict())
                row["best"] = True
            else:
                since += 1
                if cfg.patience and since >= cfg.patience:
                    stopped = True
        if not stopped:
            lr *= cfg.lr_decay
        if checkpoint is not None and (stopped or ck.due(epoch + 1, checkpoint_every, cfg.epochs)):
            save(epoch + 1)
        if callback is not None:  # after the checkpoint, as in RBMTrainer.fit
            callback(epoch, row)
    if best_state is not None:
        net.load_state_dict(best_state)
        history[-1]["best_epoch"] = max(i for i, r in enumerate(history) if r.get("best"))
    net.eval()
    return history


@torch.no_grad()
def _max_norm_(net: DeepClassifier, c: float) -> None:
    """Project each hidden unit's incoming weight vector (a row of ``weight``, shape
    (n_out, n_in)) onto the ball ||w|| <= c (Srivastava et al. 2014, section 5.1); the
    output layer is not constrained."""
    for lin in net.hidden:
        w = lin.weight
        norms = torch.linalg.vector_norm(w, dim=1, keepdim=True)  # (n_out, 1)
        w.mul_((c / norms.clamp_min(1e-30)).clamp_(max=1.0))


def _cg_batch(net: DeepClassifier, xb: Tensor, yb: Tensor, cfg: FinetuneConfig, fast, loss_sum: Tensor,
              top_only: bool) -> None:
    """``cfg.cg_line_searches`` conjugate-gradient line searches on one batch (deepbelief.cg),
    a fresh search from steepest descent, as ``minimize`` was called per batch in Hinton &
    Salakhutdinov (2006)'s code. The objective is the batch's mean cross-entropy plus
    weight_decay / 2 * ||theta||^2 over the parameters trained (the objective whose gradient
    SGD's ``weight_decay`` follows). With ``top_only`` the features of the frozen layers are
    computed once and only the output layer's (W, b) are searched over, as their code did
    for the first epochs. Adds the batch's cross-entropy before the update to ``loss_sum``."""
    from deepbelief.cg import minimize_cg

    def vector_to_parameters(v, ps):  # copies: torch's helper would make the parameters views of v
        i = 0
        for p in ps:
            p.copy_(v[i : i + p.numel()].view_as(p))
            i += p.numel()

    b, wd = xb.shape[0], cfg.weight_decay
    layers = [net.out] if top_only else list(net.hidden) + [net.out]
    params = [p for lin in layers for p in (lin.weight, lin.bias)]
    first = []

    if top_only:
        with torch.no_grad():
            h = net.features(xb)  # (b, n_top): fixed while only the output layer moves
        onehot = F.one_hot(yb, net.n_classes).to(h.dtype)
        n_w = net.out.weight.numel()

        def data_loss_grad(v):
            W, c = v[:n_w].view_as(net.out.weight), v[n_w:]
            logp = torch.log_softmax(torch.addmm(c, h, W.T), 1)  # (b, C)
            f = -(logp * onehot).sum() / b
            d = (logp.exp_() - onehot) / b
            return f, torch.cat([(d.T @ h).reshape(-1), d.sum(0)])
    else:
        def data_loss_grad(v):
            vector_to_parameters(v, params)
            if fast is not None:
                f = torch.zeros((), device=v.device, dtype=v.dtype)
                fast.step(xb, yb, None, f)
            else:
                with torch.enable_grad():
                    net.zero_grad(set_to_none=True)
                    loss = F.cross_entropy(net(xb), yb)
                    loss.backward()
                f = loss.detach()
            return f, torch.cat([p.grad.reshape(-1) for p in params])

    def loss_grad(v):
        f, g = data_loss_grad(v)
        if not first:
            first.append(f.detach().clone())
        if wd:
            f = f + 0.5 * wd * torch.dot(v, v)
            g = g.add(v, alpha=wd)
        return f, g

    with torch.no_grad():
        x0 = torch.cat([p.detach().reshape(-1) for p in params])
        res = minimize_cg(loss_grad, x0, line_searches=cfg.cg_line_searches)
        vector_to_parameters(res.x, params)
    loss_sum += first[0]


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
