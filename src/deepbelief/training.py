"""The training loop for one RBM, and greedy layer-wise pre-training of a stack.

The loop follows Hinton's practical guide (2010): mini-batches, momentum that rises
from 0.5 to 0.9 after a few epochs, L2 weight decay on the weights only, an optional
sparsity target on the hidden units, and a linearly annealed learning rate. It is written
to stay fast (docs/performance.md): the data lives on the device as one contiguous
tensor, batches are slices of a permutation drawn from the run's generator, random
numbers are drawn in bulk by the unit types, parameter updates are fused with
``torch._foreach_*`` ops, and the host synchronises once per epoch, when the monitors
(reconstruction error, free-energy gap) are read.

Determinism: one explicit ``torch.Generator`` drives the permutation and all sampling,
so the same seed on the same device gives the same weights; a checkpoint stores the
generator's state, the velocities and the PCD chains, so a resumed run ends exactly
where an uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from deepbelief.checkpoint import (
    check_same_config,
    generator_state_from,
    restore_generator,
    restore_training_state,
)
from deepbelief.dbn import DBN, GenerativeDBN
from deepbelief.errors import (
    ConfigError,
    DivergenceError,
    ModelFileError,
    as_data,
    check_choice,
    check_fields,
    check_float,
    check_int,
)
from deepbelief.io import load_model, load_tensors, save_model, save_tensors
from deepbelief.rbm import RBM, batched
from deepbelief.sampling import make_sampler
from deepbelief.units import Bernoulli, Joint, Softmax


@dataclass
class RBMTrainConfig:
    """Hyper-parameters of one RBM's training (defaults: Hinton's practical guide)."""

    epochs: int = 10
    batch_size: int = 100
    lr: float = 0.1
    #: learning rate reached, linearly, at the last epoch (None: constant)
    lr_final: float | None = None
    momentum: float = 0.5
    final_momentum: float = 0.9
    #: first epoch (0-based) that uses final_momentum
    momentum_switch: int = 5
    weight_decay: float = 2e-4
    #: negative phase: cd (CD-k), pcd (persistent chains) or pt (parallel tempering, sampling.PT)
    method: str = "cd"
    k: int = 1
    sample_visible: bool = False
    #: persistent chains (pcd) or replica sets (pt); None: the batch size
    n_chains: int | None = None
    #: pt: number of inverse temperatures K, their spacing (linear | geometric) and the lowest one
    pt_temperatures: int = 10
    pt_spacing: str = "linear"
    pt_min_beta: float = 0.0
    #: centred RBM update (centering.py; Bernoulli layers): offsets slide towards the data
    #: means with rate centering_rate per update (Melchior et al. 2016: 0.01 to 0.1)
    centering: bool = False
    centering_rate: float = 0.01
    sparsity_target: float | None = None
    sparsity_cost: float = 0.0
    sparsity_decay: float = 0.95
    init_visible_bias: bool = True
    #: std of the initial weights, N(0, weight_std^2) (Hinton's 2006 code: 0.1; the guide: 0.01)
    weight_std: float = 0.01
    #: mini-batches with the same number of rows of every class (needs labels; batching.py)
    balanced_batches: bool = False
    #: rows of the training (and validation) data used for the per-epoch monitors
    monitor_size: int = 1000
    #: the run stops if the reconstruction error exceeds this multiple of epoch 0's
    divergence_factor: float = 1e3
    #: matrix-multiply precision: fp32, tf32 (CUDA only) or bf16 (precision.py)
    precision: str = "fp32"

    def validate(self) -> "RBMTrainConfig":
        check_int("epochs", self.epochs, minimum=0)
        check_int("batch_size", self.batch_size, minimum=1)
        check_float("lr", self.lr, minimum=0.0, strict_min=True)
        if self.lr_final is not None:
            check_float("lr_final", self.lr_final, minimum=0.0)
        check_float("momentum", self.momentum, minimum=0.0, maximum=1.0)
        check_float("final_momentum", self.final_momentum, minimum=0.0, maximum=1.0)
        check_int("momentum_switch", self.momentum_switch, minimum=0)
        check_float("weight_decay", self.weight_decay, minimum=0.0)
        check_choice("method", self.method, {"cd", "pcd", "pt"})
        if self.method == "pt":
            from deepbelief.sampling import pt_betas

            pt_betas(self.pt_temperatures, self.pt_spacing, self.pt_min_beta)  # validates the three
        if not isinstance(self.centering, bool):
            raise ConfigError(f"centering must be true or false, got {self.centering!r}")
        check_float("centering_rate", self.centering_rate, minimum=0.0, maximum=1.0)
        if self.centering and self.sparsity_target is not None and self.sparsity_cost > 0:
            raise ConfigError("centering does not combine with a sparsity target (sparsity_cost > 0); "
                              f"got sparsity_target={self.sparsity_target!r}")
        check_int("k", self.k, minimum=1)
        if self.n_chains is not None:
            check_int("n_chains", self.n_chains, minimum=1)
        if self.sparsity_target is not None:
            check_float("sparsity_target", self.sparsity_target, minimum=0.0, maximum=1.0)
        check_float("sparsity_cost", self.sparsity_cost, minimum=0.0)
        check_float("sparsity_decay", self.sparsity_decay, minimum=0.0, maximum=1.0)
        check_int("monitor_size", self.monitor_size, minimum=1)
        check_float("divergence_factor", self.divergence_factor, minimum=1.0)
        check_choice("precision", self.precision, {"fp32", "tf32", "bf16"})
        check_float("weight_std", self.weight_std, minimum=0.0)
        if not isinstance(self.balanced_batches, bool):
            raise ConfigError(f"balanced_batches must be true or false, got {self.balanced_batches!r}")
        return self

    def lr_at(self, epoch: int) -> float:
        if self.lr_final is None or self.epochs <= 1:
            return self.lr
        return self.lr + (self.lr_final - self.lr) * epoch / (self.epochs - 1)

    def momentum_at(self, epoch: int) -> float:
        return self.final_momentum if epoch >= self.momentum_switch else self.momentum

    @classmethod
    def from_dict(cls, d: dict) -> "RBMTrainConfig":
        return cls(**check_fields(cls, d, "RBM training option")).validate()


@dataclass
class History:
    """Per-epoch monitors of one run: a list of dicts, one per epoch."""

    epochs: list[dict] = field(default_factory=list)

    def last(self, key: str, default=None):
        return self.epochs[-1].get(key, default) if self.epochs else default


class RBMTrainer:
    """Trains one RBM. Holds everything a checkpoint must restore.

    Args:
        rbm: the model (its device is the run's device).
        config: an ``RBMTrainConfig``.
        generator: the run's generator, on the model's device.
    """

    def __init__(self, rbm: RBM, config: RBMTrainConfig, generator: torch.Generator):
        self.rbm = rbm
        self.cfg = config.validate()
        self.gen = generator
        betas = None
        if config.method == "pt":
            from deepbelief.sampling import check_temperable, pt_betas

            check_temperable(rbm)
            betas = pt_betas(config.pt_temperatures, config.pt_spacing, config.pt_min_beta)
        self.sampler = make_sampler(config.method, config.k, sample_visible=config.sample_visible,
                                    n_chains=config.n_chains, betas=betas)
        if config.centering:
            from deepbelief.centering import check_centerable

            check_centerable(rbm)
            if not rbm.centered:
                rbm.add_offsets_()  # 0.5 until fit() sets mu to the data mean
        named = [(n, p) for n, p in rbm.named_parameters() if p.requires_grad]
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        scales = rbm.lr_scales()
        self.lr_scales = [scales.get(n, 1.0) for n in self.names]
        self.w_index = self.names.index("W")
        self.q: Tensor | None = None  # running mean hidden activity for the sparsity target
        self.epoch = 0
        self.history = History()
        self._first_recon: float | None = None
        from deepbelief.precision import check_precision

        self.precision = check_precision(config.precision, rbm.W.device)
        # Buffers allocated once (docs/performance.md): every parameter's gradient is a
        # view of one flat buffer, so a data-parallel run all-reduces it in a single
        # collective; the velocities are views of a second one, so momentum is two
        # kernels whatever the number of parameters. With a sparsity target the flat
        # buffer also carries the batch sums it needs, so they are reduced in the same call.
        w = rbm.W
        sizes = [p.numel() for p in self.params]
        # the flat buffer also carries the batch sums that sparsity or centring need
        extra = rbm.n_hidden + rbm.n_visible if (self._sparse or config.centering) else 0
        self._n_param = sum(sizes)
        self._flat = torch.zeros(self._n_param + extra, device=w.device, dtype=w.dtype)
        self._grads = [g.view_as(p) for g, p in zip(torch.split(self._flat[: self._n_param], sizes), self.params)]
        self._vel_flat = torch.zeros(self._n_param, device=w.device, dtype=w.dtype)
        self.velocities = [v.view_as(p) for v, p in zip(torch.split(self._vel_flat, sizes), self.params)]
        self._others = [i for i in range(len(self.params)) if i != self.w_index]
        # Units whose only parameter is a bias with the base class's linear energy, scale
        # and statistics: d(-F)/db_h = E[h | v] = stat and d(-F)/db_v = v, so the bias
        # gradients are column sums of the W statistics' operands.
        from deepbelief.units import Units

        def plain(u):
            t = type(u)
            return (t.grad_energy is Units.grad_energy and t.grad_free_energy is Units.grad_free_energy
                    and t.stat is Units.stat and t.scale is Units.scale)

        self._plain_biases = (self.names == ["W", "visible.bias", "hidden.bias"]
                              and plain(rbm.visible) and plain(rbm.hidden))
        if self._plain_biases:
            self._vb, self._hb = self.names.index("visible.bias"), self.names.index("hidden.bias")
        self._fast = self._fast_ok()
        self._bufs: dict[int, dict[str, Tensor]] = {}

    def _fast_ok(self) -> bool:
        """Whether ``step`` may take the binary fast path (``_fast_step``): binary visible
        and hidden units, CD-k or PCD-k, no sparsity target, equal learning rates, fp32 or
        tf32 matmuls. (Checked once; the process count is checked at every step.)"""
        from deepbelief.sampling import CD, PCD
        from deepbelief.units import Bernoulli

        rbm = self.rbm
        return (self._plain_biases and type(rbm.visible) is Bernoulli and type(rbm.hidden) is Bernoulli
                and type(self.sampler) in (CD, PCD) and not self._sparse and not self.cfg.centering
                and self.precision != "bf16"
                and self.w_index == 0 and all(s == 1.0 for s in self.lr_scales))

    @property
    def _sparse(self) -> bool:
        return self.cfg.sparsity_target is not None and self.cfg.sparsity_cost > 0

    # -- one update ------------------------------------------------------------------
    @torch.no_grad()
    def step(self, v0: Tensor, lr: float, momentum: float) -> None:
        """One CD/PCD update from the batch ``v0`` (b, n_visible).

        In a data-parallel run ``v0`` is this rank's share of the global batch and the
        statistics are summed over ranks before the update (distributed.py). The maths is
        the plain rule: velocity <- momentum * velocity + lr * (E_data - E_model -
        weight_decay * W), W <- W + velocity, with dF/dW = -s_v(v)^T E[s_h | v].
        """
        from deepbelief import distributed
        from deepbelief.precision import matmul_precision

        rbm, cfg = self.rbm, self.cfg
        world = distributed.world_size()
        if self._fast and world == 1:
            if self.precision == "fp32" or rbm.W.device.type != "cuda":
                return self._fast_step(v0, lr, momentum)
            with matmul_precision(self.precision, rbm.W.device):
                return self._fast_step(v0, lr, momentum)
        with matmul_precision(self.precision, rbm.W.device), distributed.sharded(distributed.rank(), world):
            x0 = rbm.hidden_input(v0)
            vn, xn = self.sampler.negative(rbm, v0, x0, self.gen)
            # global counts: the single-process run averages over the whole global batch
            b, nb = v0.shape[0] * world, vn.shape[0] * world
            s0, sn = rbm.hidden.stat(x0), rbm.hidden.stat(xn)
            a0, an = rbm.visible.scale(v0), rbm.visible.scale(vn)
            # ascent direction E_data - E_model of -dF/dW = a^T s, as one buffer written by
            # the two matmuls (the second accumulates in place: no temporaries)
            g_w, vel_w = self._grads[self.w_index], self.velocities[self.w_index]
            # one process, fp32/tf32: the two matmuls write W's velocity directly,
            # momentum as addmm_'s beta (two fewer passes over W-sized buffers per step)
            direct = world == 1 and self.precision != "bf16" and self.w_index == 0 and not cfg.centering
            if self.precision == "bf16":  # autocast ignores out= / in-place matmuls
                g_w.copy_(torch.mm(a0.T, s0)).mul_(1.0 / b).sub_(torch.mm(an.T, sn), alpha=1.0 / nb)
            elif direct:
                vel_w.addmm_(an.T, sn, beta=momentum, alpha=-lr / nb)
                vel_w.addmm_(a0.T, s0, alpha=lr / b)
            else:
                torch.mm(an.T, sn, out=g_w)
                g_w.addmm_(a0.T, s0, beta=-1.0 / nb, alpha=1.0 / b)
            if self._plain_biases:
                # linear-energy units (Bernoulli, softmax, ...): the bias statistics are
                # the column sums of a and s already at hand (no second sigmoid)
                torch.sum(a0, 0, out=self._grads[self._vb]).mul_(1.0 / b).sub_(an.sum(0), alpha=1.0 / nb)
                torch.sum(s0, 0, out=self._grads[self._hb]).mul_(1.0 / b).sub_(sn.sum(0), alpha=1.0 / nb)
            elif self._others:  # biases and variances of other units: their own formulas
                pos = rbm.free_energy_grad(v0, x0, weights=False)
                neg = rbm.free_energy_grad(vn, xn, weights=False)
                names = [self.names[i] for i in self._others]
                negs = [neg[n] for n in names]
                torch._foreach_mul_(negs, 1.0 / nb)
                torch._foreach_add_(negs, [pos[n] for n in names], alpha=-1.0 / b)
                torch._foreach_copy_([self._grads[i] for i in self._others], negs)
            if self._sparse or cfg.centering:
                n_h = rbm.n_hidden
                extra = self._flat[self._n_param:]
                torch.sum(rbm.hidden.mean(x0), 0, out=extra[:n_h])
                torch.sum(a0, 0, out=extra[n_h:])
        distributed.all_reduce_sum_(self._flat)  # one collective per update (no-op in one process)
        if cfg.centering:
            self._centre(b)
        elif cfg.weight_decay:
            if direct:
                vel_w.add_(self.params[self.w_index], alpha=-lr * cfg.weight_decay)
            else:
                g_w.add_(self.params[self.w_index], alpha=-cfg.weight_decay)
        if self._sparse:
            self._sparsity(b, vel_w if direct else g_w, lr if direct else 1.0)
        if any(s != 1.0 for s in self.lr_scales):
            torch._foreach_mul_(self._grads, self.lr_scales)
        lo = g_w.numel() if direct else 0  # W is first in the flat buffers
        self._vel_flat[lo:].mul_(momentum).add_(self._flat[lo : self._n_param], alpha=lr)
        torch._foreach_add_(self.params, self.velocities)
        rbm.constrain_()

    def _centre(self, b: int) -> None:
        """The centred update (centering.py): slide the offsets towards this (global)
        batch's data means, then turn the ordinary gradients into equation (2)'s
        directions, weight decay included."""
        from deepbelief.centering import centred_directions_, update_offsets_

        rbm, n_h = self.rbm, self.rbm.n_hidden
        extra = self._flat[self._n_param:]
        mu, lam = rbm.visible_offset, rbm.hidden_offset
        update_offsets_(mu, lam, extra[n_h:] / b, extra[:n_h] / b, self.cfg.centering_rate)
        centred_directions_(self._grads[self.w_index], self._grads[self._vb], self._grads[self._hb],
                            rbm.W, mu, lam, self.cfg.weight_decay)

    def _buffers(self, b: int) -> dict[str, Tensor]:
        bufs = self._bufs.get(b)
        if bufs is None:
            w = self.rbm.W
            nv, nh = w.shape
            mk = lambda n: torch.empty(b, n, device=w.device, dtype=w.dtype)  # noqa: E731
            bufs = self._bufs[b] = {"p0": mk(nh), "h": mk(nh), "pv": mk(nv), "pn": mk(nh)}
        return bufs

    def _fast_step(self, v0: Tensor, lr: float, momentum: float) -> None:
        """``step`` for binary units in one process, with fewer passes over memory.

        The same maths and the same random numbers, in the same order, as the general path
        (tests/test_perf.py compares them): the biases are folded into the products
        (addmm), the sigmoids run in place in buffers reused across steps, the positive
        phase's hidden probabilities are computed once (they are both E[h | v0] for the
        statistics and the probabilities the first hidden sample is drawn from), and W's
        velocity is written directly by the two statistics products.
        """
        from deepbelief.sampling import PCD

        rbm, cfg, gen = self.rbm, self.cfg, self.gen
        W, vb, hb = rbm.W, rbm.visible.bias, rbm.hidden.bias
        b = v0.shape[0]
        buf = self._buffers(b)
        p0 = torch.addmm(hb, v0, W, out=buf["p0"]).sigmoid_()  # E[h | v0]
        sampler = self.sampler
        if type(sampler) is PCD:
            if sampler.chains is None:
                sampler.chains = sampler._initial_chains(v0)
            vn = sampler.chains
            nb = vn.shape[0]
            pb = self._buffers(nb)
            p = torch.addmm(hb, vn, W, out=pb["pn"]).sigmoid_()
            for _ in range(sampler.k):
                h = torch.lt(torch.rand(p.shape, generator=gen, device=p.device, dtype=p.dtype, out=pb["h"]), p,
                             out=pb["h"])
                pv = torch.addmm(vb, h, W.T, out=pb["pv"]).sigmoid_()
                vn = torch.rand(pv.shape, generator=gen, device=pv.device, dtype=pv.dtype)  # a new chain state
                torch.lt(vn, pv, out=vn)
                p = torch.addmm(hb, vn, W, out=pb["pn"]).sigmoid_()
            sampler.chains = vn
        else:
            nb, p = b, p0
            for _ in range(sampler.k):
                h = torch.lt(torch.rand(p.shape, generator=gen, device=p.device, dtype=p.dtype, out=buf["h"]), p,
                             out=buf["h"])
                vn = torch.addmm(vb, h, W.T, out=buf["pv"]).sigmoid_()
                if sampler.sample_visible:
                    u = torch.rand(vn.shape, generator=gen, device=vn.device, dtype=vn.dtype)
                    vn = torch.lt(u, vn, out=u)
                p = torch.addmm(hb, vn, W, out=buf["pn"]).sigmoid_()
        pn = p
        vel_w = self.velocities[0]
        vel_w.addmm_(vn.T, pn, beta=momentum, alpha=-lr / nb)
        vel_w.addmm_(v0.T, p0, alpha=lr / b)
        if cfg.weight_decay:
            vel_w.add_(W, alpha=-lr * cfg.weight_decay)
        g_vb, g_hb = self._grads[self._vb], self._grads[self._hb]
        torch.sum(v0, 0, out=g_vb).mul_(1.0 / b).sub_(vn.sum(0), alpha=1.0 / nb)
        torch.sum(p0, 0, out=g_hb).mul_(1.0 / b).sub_(pn.sum(0), alpha=1.0 / nb)
        lo = W.numel()
        self._vel_flat[lo:].mul_(momentum).add_(self._flat[lo : self._n_param], alpha=lr)
        torch._foreach_add_(self.params, self.velocities)

    def _sparsity(self, b: int, w_target: Tensor, w_alpha: float) -> None:
        # Hinton's guide, section 11: q <- decay q + (1 - decay) mean activity; the
        # penalty's derivative with respect to a hidden unit's total input is q - target,
        # applied to the hidden bias and (times the visible activity) to the weights.
        cfg, n_h = self.cfg, self.rbm.n_hidden
        extra = self._flat[self._n_param:]
        act, vis = extra[:n_h] / b, extra[n_h:] / b  # batch means (global batch when sharded)
        self.q = act if self.q is None else self.q.mul_(cfg.sparsity_decay).add_(act, alpha=1 - cfg.sparsity_decay)
        d = (cfg.sparsity_target - self.q) * cfg.sparsity_cost
        if "hidden.bias" in self.names:
            self._grads[self.names.index("hidden.bias")].add_(d)
        w_target.addr_(vis, d, alpha=w_alpha)  # W's gradient, or its velocity (times lr)

    # -- monitors --------------------------------------------------------------------
    @torch.no_grad()
    def monitor(self, train_m: Tensor, valid_m: Tensor | None) -> dict:
        rbm = self.rbm
        recon = batched(lambda v: ((v - rbm.reconstruct(v)) ** 2).sum(-1), train_m).mean()
        out = {"recon_error": recon}
        if valid_m is not None:
            f_train = batched(rbm.free_energy, train_m).mean()
            f_valid = batched(rbm.free_energy, valid_m).mean()
            # Hinton's guide, section 6: a growing gap (valid - train) signals overfitting
            out["free_energy_gap"] = f_valid - f_train
        finite = torch.stack([torch.isfinite(p).all() for p in self.params])
        values = torch.cat([torch.stack(list(out.values())).double(), finite.double()]).tolist()  # one sync
        metrics = dict(zip(out, values[: len(out)]))
        bad = [n for n, ok in zip(self.names, values[len(out):]) if not ok]
        return metrics, bad

    # -- the loop --------------------------------------------------------------------
    def fit(
        self,
        data: Tensor,
        *,
        valid: Tensor | None = None,
        callback: Callable[[int, dict], None] | None = None,
        checkpoint: str | Path | None = None,
        checkpoint_every: int = 1,
        labels: Tensor | None = None,
    ) -> History:
        """Train on ``data`` (n, n_visible), already on the model's device, for the
        remaining epochs. Returns the history. See ``train_rbm`` for the arguments."""
        cfg = self.cfg
        from deepbelief import distributed

        n = data.shape[0]
        if cfg.batch_size > n:
            raise ConfigError(f"batch_size must be <= the number of training rows ({n}), got {cfg.batch_size}")
        rank, world = distributed.rank(), distributed.world_size()
        if cfg.batch_size % world:
            raise ConfigError(f"batch_size must be a multiple of the number of processes ({world}) in a "
                              f"data-parallel run, got {cfg.batch_size}")
        local = cfg.batch_size // world  # rank r trains on rows [r*local, (r+1)*local) of each global batch
        fresh = self.epoch == 0 and not self.history.epochs
        if fresh and cfg.init_visible_bias:
            self.rbm.init_visible_bias_(data)
        if fresh and cfg.centering:  # Melchior et al. 2016: mu starts at the data mean, lambda at 0.5
            self.rbm.add_offsets_(data.mean(0), None)
        train_m = data[: cfg.monitor_size]
        valid_m = None if valid is None else valid[: cfg.monitor_size]
        n_batches = n // cfg.batch_size  # the ragged tail is covered by the next permutation
        balanced = self._balanced(labels, n)
        if balanced is not None:
            n_batches = balanced.n_batches
        while self.epoch < cfg.epochs:
            t0 = time.perf_counter()
            lr, mom = cfg.lr_at(self.epoch), cfg.momentum_at(self.epoch)
            perm = (torch.randperm(n, generator=self.gen, device=data.device) if balanced is None
                    else balanced.order(self.gen))
            swaps0 = self._swap_counts()
            for i in range(n_batches):
                start = i * cfg.batch_size + rank * local
                self.step(data.index_select(0, perm[start : start + local]), lr, mom)
            metrics, bad = self.monitor(train_m, valid_m)
            if swaps0 is not None:  # parallel tempering: this epoch's swap rate per neighbour pair
                (a0, t0_), (a1, t1) = swaps0, self._swap_counts()
                rates = [(a / t if t > 0 else float("nan")) for a, t in zip((a1 - a0).tolist(), (t1 - t0_).tolist())]
                metrics.update(pt_swap_rates=rates, pt_swap_rate_min=min(rates), pt_swap_rate_mean=sum(rates) / len(rates))
            metrics.update(epoch=self.epoch, lr=lr, momentum=mom, seconds=time.perf_counter() - t0)
            self._guard(metrics, bad, checkpoint)
            self.history.epochs.append(metrics)
            self.epoch += 1
            if checkpoint is not None and (self.epoch % max(1, checkpoint_every) == 0 or self.epoch == cfg.epochs):
                self.save_checkpoint(checkpoint)
            if callback is not None:
                callback(self.epoch - 1, metrics)
        return self.history

    def _swap_counts(self):
        counts = getattr(self.sampler, "swap_counts", None)
        return None if counts is None else counts()

    def _balanced(self, labels: Tensor | None, n: int):
        if not self.cfg.balanced_batches:
            return None
        if labels is None:
            raise ConfigError("balanced_batches=True needs the training labels (labels=...), got None")
        if labels.shape[0] != n:
            raise ConfigError(f"labels must hold one label per training row ({n}), got {labels.shape[0]}")
        from deepbelief.batching import BalancedOrder

        return BalancedOrder(labels, self.cfg.batch_size)

    def _guard(self, metrics: dict, bad: list[str], checkpoint) -> None:
        recon = metrics["recon_error"]
        if self._first_recon is None and math.isfinite(recon):
            self._first_recon = max(recon, 1e-12)
        exploded = not math.isfinite(recon) or (
            self._first_recon is not None and recon > self.cfg.divergence_factor * self._first_recon
        )
        if bad or exploded:
            what = (f"parameter group(s) {bad} became NaN/inf" if bad else
                    f"reconstruction error exploded to {recon:g} (epoch 0: {self._first_recon:g})")
            kept = (f"; the last good checkpoint (epoch {self.epoch}) is kept at {str(checkpoint)!r}"
                    if checkpoint is not None and Path(checkpoint).exists() else "")
            raise DivergenceError(
                f"training diverged at epoch {self.epoch}: {what}. Likely cause: the learning rate "
                f"(lr={self.cfg.lr:g}) is too high for this data/unit type (real-valued units need "
                f"about 100x smaller rates and standardised data); lower lr or momentum{kept}"
            )

    # -- checkpoints -------------------------------------------------------------------
    def state_tensors(self) -> dict[str, Tensor]:
        """Everything a checkpoint restores. In a data-parallel run every rank must call
        this (PCD chains are gathered from all ranks); only rank 0 writes the file."""
        from deepbelief import distributed

        t = {f"model.{k}": v for k, v in self.rbm.state_dict().items()}
        # velocities are views of one buffer: clone so the file holds separate tensors
        t.update({f"velocity.{n}": v.clone() for n, v in zip(self.names, self.velocities)})
        # rows of sharded state (PCD chains, PT replica sets) live on their ranks: gather them
        state = self.sampler.state_dict()
        sharded = getattr(self.sampler, "sharded_keys", tuple(state))
        t.update({f"sampler.{k}": distributed.all_gather_rows(v) if k in sharded else v for k, v in state.items()})
        if self.q is not None:
            t["sparsity.q"] = self.q
        t["generator.state"] = self.gen.get_state()
        return t

    def save_checkpoint(self, path: str | Path) -> None:
        meta = {
            "kind": "rbm_checkpoint",
            "epoch": self.epoch,
            "model": self.rbm.config(),
            "train": dataclasses.asdict(self.cfg),
            "history": self.history.epochs,
            "first_recon": self._first_recon,
        }
        from deepbelief import distributed

        tensors = self.state_tensors()  # collective: every rank takes part
        if distributed.is_main():
            save_tensors(path, tensors, meta)

    def load_checkpoint(self, path: str | Path) -> None:
        device = self.rbm.W.device
        tensors, meta = load_tensors(path, device=device)
        if meta.get("kind") != "rbm_checkpoint":
            raise ModelFileError(f"checkpoint {str(path)!r} is a {meta.get('kind')!r} file, not an RBM checkpoint")
        if meta.get("model") != self.rbm.config():
            raise ModelFileError(f"checkpoint {str(path)!r} was written for another model: {meta.get('model')}")
        # a different schedule would give a run that is neither the old one nor the new one
        # a field a checkpoint predates had its default value there
        saved = {**dataclasses.asdict(RBMTrainConfig()), **(meta.get("train") or {})}
        check_same_config(path, saved, dataclasses.asdict(self.cfg), allowed=("epochs",))
        restore_training_state(path, self.rbm, tensors, self.names, self.velocities)
        from deepbelief import distributed

        sampler_state = {k[len("sampler."):]: v for k, v in tensors.items() if k.startswith("sampler.")}
        rank, world = distributed.rank(), distributed.world_size()
        if world > 1:  # chains were saved whole: keep this rank's shard
            sharded = getattr(self.sampler, "sharded_keys", tuple(sampler_state))
            sampler_state = {k: v[rank * (v.shape[0] // world): (rank + 1) * (v.shape[0] // world)]
                             if k in sharded else v for k, v in sampler_state.items()}
        self.sampler.load_state_dict(sampler_state)
        self.q = tensors.get("sparsity.q")
        if "generator.state" not in tensors:
            raise ModelFileError(f"checkpoint {str(path)!r} holds no generator state ('generator.state')")
        restore_generator(path, self.gen, tensors["generator.state"])
        self.epoch = int(meta["epoch"])
        self.history = History(list(meta.get("history", [])))
        self._first_recon = meta.get("first_recon")


def train_rbm(
    rbm: RBM,
    data: Tensor,
    config: RBMTrainConfig | None = None,
    *,
    generator: torch.Generator,
    valid: Tensor | None = None,
    callback: Callable[[int, dict], None] | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 1,
    resume: bool = False,
    labels: Tensor | None = None,
) -> History:
    """Train ``rbm`` on ``data`` with CD-k or PCD.

    Args:
        rbm: the model; its parameters' device is used for everything.
        data: (n, n_visible) training data (tensor or array-like; validated).
        config: hyper-parameters (``RBMTrainConfig()`` if None).
        generator: the run's generator, on the model's device.
        valid: optional (m, n_visible) validation data for the free-energy gap monitor.
        callback: called as ``callback(epoch, metrics)`` after each epoch.
        checkpoint: file to write checkpoints to (atomically) every ``checkpoint_every``
            epochs and at the end.
        resume: continue from ``checkpoint`` if it exists.
        labels: (n,) class labels, needed by ``config.balanced_batches`` only.
    Returns:
        the ``History`` of per-epoch monitors.
    """
    from deepbelief.errors import check_generator

    config = config or RBMTrainConfig()
    if not isinstance(rbm, RBM):
        raise ConfigError(f"rbm must be a deepbelief RBM, got {type(rbm).__name__}")
    device = rbm.W.device
    check_generator("generator", generator, device)
    checkpoint_every = check_int("checkpoint_every", checkpoint_every, minimum=1)
    if resume and checkpoint is None:
        raise ConfigError("resume=True needs a checkpoint file to resume from, got checkpoint=None")
    data = rbm.check_input("data", data, device=device)
    if valid is not None:
        valid = rbm.check_input("valid", valid, device=device)
    trainer = RBMTrainer(rbm, config, generator)
    if resume and checkpoint is not None and Path(checkpoint).exists():
        trainer.load_checkpoint(checkpoint)
    if labels is not None:
        labels = torch.as_tensor(labels, device=device)
    return trainer.fit(data, valid=valid, callback=callback, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                       labels=labels)


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """The run's one explicit generator (never seed torch globally)."""
    seed = check_int("seed", seed, minimum=0, maximum=2**64 - 1)  # torch seeds are 64-bit
    return torch.Generator(device=torch.device(device)).manual_seed(seed)


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
    the next RBM's data. ``layers`` lists the layer sizes including the data's, e.g.
    ``[784, 500, 500, 2000]``; an entry may also be a units config dict
    (``{"type": "nrelu", "n": 500}``), so any unit types stack. ``configs`` is one config
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
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            why = "is a file, not a folder" if folder.is_file() else f"cannot be created: {exc.strerror}"
            raise ConfigError(f"checkpoint_dir {str(folder)!r} {why}") from None
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
    ``training.pretrain_stack``; the top RBM is then trained on the joined vector
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
