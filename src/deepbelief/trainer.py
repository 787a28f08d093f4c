"""``RBMTrainer``: the state of one RBM's training (parameters' velocities, sampler state,
sparsity statistics, the run's generator) and its update step; ``training.train_rbm``
drives it through the shared epoch loop (deepbelief.loop).

Buffers are allocated once (docs/7-performance.md): every parameter's gradient is a view of
one flat buffer, so a data-parallel run all-reduces it in a single collective; the
velocities are views of a second one, so momentum is two kernels whatever the number of
parameters. All-binary models take the fused step of ``cd_fast.binary_cd_step``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from deepbelief import distributed
from deepbelief.averaging import IterateAverage
from deepbelief.batching import BalancedOrder
from deepbelief.cd_fast import binary_cd_step
from deepbelief.centering import centred_directions_, check_centerable, update_offsets_
from deepbelief.checkpoint import kept_note, load_run, restore_training_state, save_run
from deepbelief.errors import ConfigError, DivergenceError
from deepbelief.fpcd import FPCD
from deepbelief.loop import run_epochs
from deepbelief.precision import check_precision, matmul_precision
from deepbelief.rbm import RBM, batched
from deepbelief.sampling import CD, PCD, check_temperable, make_sampler, pt_betas
from deepbelief.units import Bernoulli, Units

__all__ = ["History", "RBMTrainer"]


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
        config: an ``RBMTrainConfig`` (training.py).
        generator: the run's generator, on the model's device.
    """

    def __init__(self, rbm: RBM, config, generator: torch.Generator):
        self.rbm = rbm
        self.cfg = config.validate()
        self.gen = generator
        betas = None
        if config.method == "pt":
            check_temperable(rbm)
            betas = pt_betas(config.pt_temperatures, config.pt_spacing, config.pt_min_beta)
        if config.method == "fpcd":
            fast_lr = config.lr if config.fast_lr is None else config.fast_lr
            self.sampler = FPCD(config.k, n_chains=config.n_chains, fast_lr=fast_lr, fast_decay=config.fast_decay)
        else:
            self.sampler = make_sampler(config.method, config.k, sample_visible=config.sample_visible,
                                        n_chains=config.n_chains, betas=betas)
        if config.centering:
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
        self.precision = check_precision(config.precision, rbm.W.device)
        self._alloc_buffers()
        self._others = [i for i in range(len(self.params)) if i != self.w_index]
        self._plain_biases = self._biases_are_plain()
        if self._plain_biases:
            self._vb, self._hb = self.names.index("visible.bias"), self.names.index("hidden.bias")
        self._fast = self._fast_ok()
        self._sampler_learns = getattr(self.sampler, "needs_gradient", False)  # FPCD: materialise the gradient
        self._bufs: dict[int, dict[str, Tensor]] = {}  # binary_cd_step's buffers, per batch size
        self.average = IterateAverage(self.params, config.average_decay)  # no-ops unless average_decay > 0

    def _alloc_buffers(self) -> None:
        """Buffers allocated once (docs/7-performance.md): every parameter's gradient is a
        view of one flat buffer, so a data-parallel run all-reduces it in a single
        collective; the velocities are views of a second one, so momentum is two kernels
        whatever the number of parameters. With a sparsity target or centring the flat
        buffer also carries the batch sums they need, reduced in the same call."""
        rbm = self.rbm
        w = rbm.W
        sizes = [p.numel() for p in self.params]
        extra = rbm.n_hidden + rbm.n_visible if (self._sparse or self.cfg.centering) else 0
        self._n_param = sum(sizes)
        self._flat = torch.zeros(self._n_param + extra, device=w.device, dtype=w.dtype)
        self._grads = [g.view_as(p) for g, p in zip(torch.split(self._flat[: self._n_param], sizes), self.params)]
        self._vel_flat = torch.zeros(self._n_param, device=w.device, dtype=w.dtype)
        self.velocities = [v.view_as(p) for v, p in zip(torch.split(self._vel_flat, sizes), self.params)]

    def _biases_are_plain(self) -> bool:
        """Units whose only parameter is a bias with the base class's linear energy, scale
        and statistics: d(-F)/db_h = E[h | v] = stat and d(-F)/db_v = v, so the bias
        gradients are column sums of the W statistics' operands."""
        def plain(u):
            t = type(u)
            return (t.grad_energy is Units.grad_energy and t.grad_free_energy is Units.grad_free_energy
                    and t.stat is Units.stat and t.scale is Units.scale)

        rbm = self.rbm
        return self.names == ["W", "visible.bias", "hidden.bias"] and plain(rbm.visible) and plain(rbm.hidden)

    def _fast_ok(self) -> bool:
        """Whether ``step`` may take the binary fast path (``cd_fast.binary_cd_step``): binary visible
        and hidden units, CD-k or PCD-k, no sparsity target, equal learning rates, fp32 or
        tf32 matmuls. (Checked once; the process count is checked at every step.)"""
        rbm = self.rbm
        return (self._plain_biases and type(rbm.visible) is Bernoulli and type(rbm.hidden) is Bernoulli
                and type(self.sampler) in (CD, PCD) and not self._sparse and not self.cfg.centering
                and self.precision != "bf16"
                and self.w_index == 0 and all(s == 1.0 for s in self.lr_scales))

    @property
    def _sparse(self) -> bool:
        return self.cfg.sparsity_target is not None and self.cfg.sparsity_cost > 0

    # -- one update ------------------------------------------------------------------
    def step(self, v0: Tensor, lr: float, momentum: float) -> None:
        """One CD/PCD update from the batch ``v0`` (b, n_visible) (``_update``), then the
        iterates' average moves (``average_decay``; averaging.py)."""
        self._update(v0, lr, momentum)
        self.average.update_()

    @torch.no_grad()
    def _update(self, v0: Tensor, lr: float, momentum: float) -> None:
        """One CD/PCD update from the batch ``v0`` (b, n_visible).

        In a data-parallel run ``v0`` is this rank's share of the global batch and the
        statistics are summed over ranks before the update (distributed.py). The maths is
        the plain rule: velocity <- momentum * velocity + lr * (E_data - E_model -
        weight_decay * W), W <- W + velocity, with dF/dW = -s_v(v)^T E[s_h | v].
        """
        rbm, cfg = self.rbm, self.cfg
        world = distributed.world_size()
        if self._fast and world == 1:
            if self.precision == "fp32" or rbm.W.device.type != "cuda":
                return binary_cd_step(self, v0, lr, momentum)
            with matmul_precision(self.precision, rbm.W.device):
                return binary_cd_step(self, v0, lr, momentum)
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
            direct = world == 1 and self.precision != "bf16" and self.w_index == 0 and not cfg.centering and \
                not self._sampler_learns
            if self.precision == "bf16":  # autocast ignores out= / in-place matmuls
                g_w.copy_(torch.mm(a0.T, s0)).mul_(1.0 / b).sub_(torch.mm(an.T, sn), alpha=1.0 / nb)
            elif direct:
                vel_w.addmm_(an.T, sn, beta=momentum, alpha=-lr / nb)
                vel_w.addmm_(a0.T, s0, alpha=lr / b)
            else:
                torch.mm(an.T, sn, out=g_w)
                g_w.addmm_(a0.T, s0, beta=-1.0 / nb, alpha=1.0 / b)
            self._other_grads(v0, x0, vn, xn, (a0, an, s0, sn), b, nb)
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
        if self._sampler_learns:  # FPCD's fast weights learn from the gradient too
            self.sampler.learn_(self.names, self._grads)
        lo = g_w.numel() if direct else 0  # W is first in the flat buffers
        self._vel_flat[lo:].mul_(momentum).add_(self._flat[lo : self._n_param], alpha=lr)
        torch._foreach_add_(self.params, self.velocities)
        rbm.constrain_()

    def _other_grads(self, v0, x0, vn, xn, stats, b: int, nb: int) -> None:
        """The gradients of the parameters other than W, and the batch sums that sparsity
        or centring need, into the flat buffer (``step``; ``stats``: the visible scales and
        hidden statistics of the data and the negative phase)."""
        rbm, cfg = self.rbm, self.cfg
        a0, an, s0, sn = stats
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

    def _centre(self, b: int) -> None:
        """The centred update (centering.py): slide the offsets towards this (global)
        batch's data means, then turn the ordinary gradients into equation (2)'s
        directions, weight decay included."""
        rbm, n_h = self.rbm, self.rbm.n_hidden
        extra = self._flat[self._n_param:]
        mu, lam = rbm.visible_offset, rbm.hidden_offset
        update_offsets_(mu, lam, extra[n_h:] / b, extra[:n_h] / b, self.cfg.centering_rate)
        centred_directions_(self._grads[self.w_index], self._grads[self._vb], self._grads[self._hb],
                            rbm.W, mu, lam, self.cfg.weight_decay)

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
        n = data.shape[0]
        if cfg.batch_size > n:
            raise ConfigError(f"batch_size must be <= the number of training rows ({n}), got {cfg.batch_size}")
        rank, world = distributed.rank(), distributed.world_size()
        if cfg.batch_size % world:
            raise ConfigError(f"batch_size must be a multiple of the number of processes ({world}) in a "
                              f"data-parallel run, got {cfg.batch_size}")
        local = cfg.batch_size // world  # rank r trains on rows [r*local, (r+1)*local) of each global batch
        if cfg.sample_data and type(self.rbm.visible) is not Bernoulli:  # (Bernoulli units check [0, 1])
            raise ConfigError(f"sample_data=True needs Bernoulli visible units (it draws binary rows from "
                              f"probabilities), got {type(self.rbm.visible).__name__}")
        fresh = self.epoch == 0 and not self.history.epochs
        self.average.restore_()  # a later fit() goes on from the iterate
        if fresh and cfg.init_visible_bias:
            self.rbm.init_visible_bias_(data)
        if fresh and cfg.centering:  # Melchior et al. 2016: mu starts at the data mean, lambda at 0.5
            self.rbm.add_offsets_(data.mean(0), None)
        if fresh:
            self.average.reset_()
        train_m = data[: cfg.monitor_size]
        valid_m = None if valid is None else valid[: cfg.monitor_size]
        n_batches = n // cfg.batch_size  # the ragged tail is covered by the next permutation
        balanced = self._balanced(labels, n)
        if balanced is not None:
            n_batches = balanced.n_batches
        def one_epoch(epoch: int) -> dict:
            lr, mom = cfg.lr_at(epoch), cfg.momentum_at(epoch)
            if cfg.k_final is not None:
                self.sampler.k = cfg.k_at(epoch)
            perm = (torch.randperm(n, generator=self.gen, device=data.device) if balanced is None
                    else balanced.order(self.gen))
            swaps0 = self._swap_counts()
            for i in range(n_batches):
                start = i * cfg.batch_size + rank * local
                v0 = data.index_select(0, perm[start : start + local])
                if cfg.sample_data:  # a fresh binary draw of this batch's probability rows: 1 where u < p
                    # (u ~ U[0, 1) from the run's generator; a third of torch.bernoulli's time on the CPU)
                    u = torch.rand(v0.shape, generator=self.gen, device=v0.device, dtype=v0.dtype)
                    v0 = torch.lt(u, v0, out=u)
                self.step(v0, lr, mom)
            metrics, bad = self.monitor(train_m, valid_m)
            if swaps0 is not None:
                metrics.update(self._swap_rates(swaps0))
            metrics.update(epoch=epoch, lr=lr, momentum=mom)
            if cfg.k_final is not None:
                metrics["k"] = self.sampler.k
            self._guard(metrics, bad, checkpoint)
            return metrics

        # callbacks see the model fit() would return (the average, if any)
        run_epochs(self, one_epoch, epochs=cfg.epochs, history=self.history.epochs, checkpoint=checkpoint,
                   checkpoint_every=checkpoint_every, callback=self.average.wrap(callback))
        self.average.install_()
        return self.history

    def _swap_rates(self, before) -> dict:
        """Parallel tempering: this epoch's swap rate per neighbour pair (counts since ``before``)."""
        (a0, t0), (a1, t1) = before, self._swap_counts()
        rates = [(a / t if t > 0 else float("nan")) for a, t in zip((a1 - a0).tolist(), (t1 - t0).tolist())]
        return dict(pt_swap_rates=rates, pt_swap_rate_min=min(rates), pt_swap_rate_mean=sum(rates) / len(rates))

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
            kept = kept_note(checkpoint, self.epoch)
            raise DivergenceError(
                f"training diverged at epoch {self.epoch}: {what}. Likely cause: the learning rate "
                f"(lr={self.cfg.lr:g}) is too high for this data/unit type (real-valued units need "
                f"about 100x smaller rates and standardised data); lower lr or momentum{kept}"
            )

    # -- checkpoints -------------------------------------------------------------------
    def state_tensors(self) -> dict[str, Tensor]:
        """Everything a checkpoint restores. In a data-parallel run every rank must call
        this (PCD chains are gathered from all ranks); only rank 0 writes the file."""
        with self.average.iterate():  # the iterate, which training goes on from, and the average
            t = {f"model.{k}": v.clone() for k, v in self.rbm.state_dict().items()}
        t.update(self.average.state(self.names))
        # velocities are views of one buffer: clone so the file holds separate tensors
        t.update({f"velocity.{n}": v.clone() for n, v in zip(self.names, self.velocities)})
        # rows of sharded state (PCD chains, PT replica sets) live on their ranks: gather them
        state = self.sampler.state_dict()
        sharded = getattr(self.sampler, "sharded_keys", tuple(state))
        t.update({f"sampler.{k}": distributed.all_gather_rows(v) if k in sharded else v for k, v in state.items()})
        if self.q is not None:
            t["sparsity.q"] = self.q
        return t

    def save_checkpoint(self, path: str | Path) -> None:
        tensors = self.state_tensors()  # collective: every rank takes part
        if distributed.is_main():
            save_run(path, kind="rbm_checkpoint", epoch=self.epoch, model=self.rbm.config(), train=self.cfg,
                     history=self.history.epochs, tensors=tensors, generator=self.gen,
                     first_recon=self._first_recon)

    def load_checkpoint(self, path: str | Path) -> None:
        # a different schedule would give a run that is neither the old one nor the new one
        tensors, meta = load_run(path, kind="rbm_checkpoint", model=self.rbm.config(), train=self.cfg,
                                 device=self.rbm.W.device, generator=self.gen)
        self.average.restore_()
        restore_training_state(path, self.rbm, tensors, self.names, self.velocities)
        self.average.load_(path, tensors, self.names)
        sampler_state = {k[len("sampler."):]: v for k, v in tensors.items() if k.startswith("sampler.")}
        rank, world = distributed.rank(), distributed.world_size()
        if world > 1:  # chains were saved whole: keep this rank's shard
            sharded = getattr(self.sampler, "sharded_keys", tuple(sampler_state))
            sampler_state = {k: v[rank * (v.shape[0] // world): (rank + 1) * (v.shape[0] // world)]
                             if k in sharded else v for k, v in sampler_state.items()}
        self.sampler.load_state_dict(sampler_state)
        self.q = tensors.get("sparsity.q")
        self.epoch = int(meta["epoch"])
        self.history = History(list(meta.get("history", [])))
        self._first_recon = meta.get("first_recon")
