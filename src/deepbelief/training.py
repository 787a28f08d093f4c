"""Training one RBM: its configuration (``RBMTrainConfig``) and ``train_rbm``.

The loop follows Hinton's practical guide (2010): mini-batches, momentum that rises
from 0.5 to 0.9 after a few epochs, L2 weight decay on the weights only, an optional
sparsity target on the hidden units, and a linearly annealed learning rate. It is written
to stay fast (docs/7-performance.md): the data lives on the device as one contiguous
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

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from deepbelief.averaging import check_average_decay
from deepbelief.errors import (
    ConfigError,
    check_choice,
    check_fields,
    check_float,
    check_int,
)
from deepbelief.loop import Schedule, linear_schedule
from deepbelief.rbm import RBM
from deepbelief.trainer import History, RBMTrainer

__all__ = ["History", "RBMTrainConfig", "RBMTrainer", "make_generator", "train_rbm"]


@dataclass
class RBMTrainConfig(Schedule):
    """Hyper-parameters of one RBM's training (defaults: Hinton's practical guide); the
    schedule's fields (epochs, batch_size, lr, lr_final, momentum, balanced_batches) are
    ``loop.Schedule``'s."""

    weight_decay: float = 2e-4
    final_momentum: float = 0.9
    #: first epoch (0-based) that uses final_momentum
    momentum_switch: int = 5
    #: negative phase: cd (CD-k), pcd (persistent chains), fpcd (PCD with fast weights,
    #: fpcd.FPCD) or pt (parallel tempering, sampling.PT)
    method: str = "cd"
    k: int = 1
    #: Gibbs steps reached, linearly, at the last epoch (cd and pcd; None: k all along).
    #: Salakhutdinov & Murray (2008) raised k gradually for their CD-25 model
    k_final: int | None = None
    #: epochs over which k moves to k_final; k_final from then on (None: all the epochs, so
    #: k_final is reached at the last). With a short ramp most updates use k_final steps
    k_ramp_epochs: int | None = None
    sample_visible: bool = False
    #: the data are probabilities of binary visible units (e.g. Q(h | v) of the layer below);
    #: every mini-batch is a fresh Bernoulli draw of its rows, so training sees unbiased samples
    #: of the data's mixture of factorial distributions instead of one fixed sample (or the
    #: probabilities themselves). A DBN's variational bound is a bound under those samples
    #: (docs/5-evaluation.md). Bernoulli visible units only; data in [0, 1]
    sample_data: bool = False
    #: persistent chains (pcd) or replica sets (pt); None: the batch size
    n_chains: int | None = None
    #: pt: number of inverse temperatures K, their spacing (linear | geometric) and the lowest one
    pt_temperatures: int = 10
    pt_spacing: str = "linear"
    pt_min_beta: float = 0.0
    #: fpcd: the fast weights' learning rate (None: lr's initial value) and their decay per update
    fast_lr: float | None = None
    fast_decay: float = 0.95
    #: centred RBM update (centering.py; Bernoulli layers): offsets slide towards the data
    #: means with rate centering_rate per update (Melchior et al. 2016: 0.01 to 0.1)
    centering: bool = False
    centering_rate: float = 0.01
    sparsity_target: float | None = None
    sparsity_cost: float = 0.0
    sparsity_decay: float = 0.95
    init_visible_bias: bool = True
    #: Polyak-Ruppert averaging (averaging.py): the model returned, and the one callbacks see,
    #: is the moving average a <- d a + (1 - d) theta over updates (after a warm-up: the plain
    #: mean of the first 1/(1 - d)), d = average_decay; training goes on from the iterate
    #: theta. 0: off (the last iterate)
    average_decay: float = 0.0
    #: std of the initial weights, N(0, weight_std^2) (Hinton's 2006 code: 0.1; the guide: 0.01)
    weight_std: float = 0.01
    #: rows of the training (and validation) data used for the per-epoch monitors
    monitor_size: int = 1000
    #: the run stops if the reconstruction error exceeds this multiple of epoch 0's
    divergence_factor: float = 1e3
    #: matrix-multiply precision: fp32, tf32 (CUDA only) or bf16 (precision.py)
    precision: str = "fp32"

    def validate(self) -> "RBMTrainConfig":
        self.validate_schedule()
        check_float("final_momentum", self.final_momentum, minimum=0.0, maximum=1.0)
        check_int("momentum_switch", self.momentum_switch, minimum=0)
        check_choice("method", self.method, {"cd", "pcd", "fpcd", "pt"})
        if self.method == "pt":
            from deepbelief.sampling import pt_betas

            pt_betas(self.pt_temperatures, self.pt_spacing, self.pt_min_beta)  # validates the three
        if not isinstance(self.sample_data, bool):
            raise ConfigError(f"sample_data must be true or false, got {self.sample_data!r}")
        if not isinstance(self.centering, bool):
            raise ConfigError(f"centering must be true or false, got {self.centering!r}")
        check_float("centering_rate", self.centering_rate, minimum=0.0, maximum=1.0)
        if self.centering and self.sparsity_target is not None and self.sparsity_cost > 0:
            raise ConfigError("centering does not combine with a sparsity target (sparsity_cost > 0); "
                              f"got sparsity_target={self.sparsity_target!r}")
        check_int("k", self.k, minimum=1)
        if self.k_final is not None:
            check_int("k_final", self.k_final, minimum=1)
            check_choice("method (with k_final)", self.method, {"cd", "pcd", "fpcd"})
        if self.k_ramp_epochs is not None:
            check_int("k_ramp_epochs", self.k_ramp_epochs, minimum=1)
            if self.k_final is None:
                raise ConfigError(f"k_ramp_epochs ({self.k_ramp_epochs}) needs k_final: the epochs over which k "
                                  "moves to k_final; got k_final=None")
        if self.fast_lr is not None:
            check_float("fast_lr", self.fast_lr, minimum=0.0)
        check_float("fast_decay", self.fast_decay, minimum=0.0, maximum=1.0)
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
        self.average_decay = check_average_decay(self.average_decay)
        if self.average_decay > 0 and self.centering:
            raise ConfigError("average_decay > 0 does not combine with centering (the offsets move the "
                              f"parameters' meaning during the run); got average_decay={self.average_decay!r}")
        return self

    def k_at(self, epoch: int) -> int:
        """Gibbs steps of ``epoch`` (0-based): k, moved linearly to k_final over the first
        ``k_ramp_epochs`` epochs (default all), then k_final; rounded."""
        ramp = self.k_ramp_epochs
        if ramp is None or ramp >= self.epochs:
            return int(round(linear_schedule(self.k, self.k_final, epoch, self.epochs)))
        if epoch >= ramp - 1:
            return int(self.k_final)
        return int(round(linear_schedule(self.k, self.k_final, epoch, ramp)))

    def momentum_at(self, epoch: int) -> float:
        return self.final_momentum if epoch >= self.momentum_switch else self.momentum

    @classmethod
    def from_dict(cls, d: dict) -> "RBMTrainConfig":
        return cls(**check_fields(cls, d, "RBM training option")).validate()


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
