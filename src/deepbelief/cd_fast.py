"""The CD-k / PCD-k update of an all-binary RBM in one process, with fewer passes over memory.

``RBMTrainer.step`` takes this path when ``RBMTrainer._fast_ok`` says so (binary visible
and hidden units, CD or PCD, no sparsity target or centring, equal learning rates, fp32 or
tf32 matmuls). It computes the same update with the same random numbers, in the same
order, as the general path (tests/test_perf.py compares them); the ``RBMTrainer`` passed
in owns all state (buffers, velocities, sampler chains).
"""

from __future__ import annotations

import torch
from torch import Tensor

from deepbelief.sampling import PCD

__all__ = ["binary_cd_step"]


def _buffers(trainer, b: int) -> dict[str, Tensor]:
    bufs = trainer._bufs.get(b)
    if bufs is None:
        w = trainer.rbm.W
        nv, nh = w.shape
        mk = lambda n: torch.empty(b, n, device=w.device, dtype=w.dtype)  # noqa: E731
        bufs = trainer._bufs[b] = {"p0": mk(nh), "h": mk(nh), "pv": mk(nv), "pn": mk(nh)}
    return bufs

@torch.no_grad()
def binary_cd_step(trainer, v0: Tensor, lr: float, momentum: float) -> None:
    """``RBMTrainer.step`` for binary units in one process, with fewer passes over memory.

    The same maths and the same random numbers, in the same order, as the general path
    (tests/test_perf.py compares them): the biases are folded into the products
    (addmm), the sigmoids run in place in buffers reused across steps, the positive
    phase's hidden probabilities are computed once (they are both E[h | v0] for the
    statistics and the probabilities the first hidden sample is drawn from), and W's
    velocity is written directly by the two statistics products.
    """
    rbm, cfg, gen = trainer.rbm, trainer.cfg, trainer.gen
    W, vb, hb = rbm.W, rbm.visible.bias, rbm.hidden.bias
    b = v0.shape[0]
    buf = _buffers(trainer, b)
    p0 = torch.addmm(hb, v0, W, out=buf["p0"]).sigmoid_()  # E[h | v0]
    sampler = trainer.sampler
    if type(sampler) is PCD:
        if sampler.chains is None:
            sampler.chains = sampler._initial_chains(v0)
        vn = sampler.chains
        nb = vn.shape[0]
        pb = _buffers(trainer, nb)
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
        for step in range(sampler.k):
            h = torch.lt(torch.rand(p.shape, generator=gen, device=p.device, dtype=p.dtype, out=buf["h"]), p,
                         out=buf["h"])
            vn = torch.addmm(vb, h, W.T, out=buf["pv"]).sigmoid_()
            if sampler.sample_visible or step < sampler.k - 1:  # only the last reconstruction may be E[v | h]
                u = torch.rand(vn.shape, generator=gen, device=vn.device, dtype=vn.dtype)
                vn = torch.lt(u, vn, out=u)
            p = torch.addmm(hb, vn, W, out=buf["pn"]).sigmoid_()
    pn = p
    vel_w = trainer.velocities[0]
    vel_w.addmm_(vn.T, pn, beta=momentum, alpha=-lr / nb)
    vel_w.addmm_(v0.T, p0, alpha=lr / b)
    if cfg.weight_decay:
        vel_w.add_(W, alpha=-lr * cfg.weight_decay)
    g_vb, g_hb = trainer._grads[trainer._vb], trainer._grads[trainer._hb]
    torch.sum(v0, 0, out=g_vb).mul_(1.0 / b).sub_(vn.sum(0), alpha=1.0 / nb)
    torch.sum(p0, 0, out=g_hb).mul_(1.0 / b).sub_(pn.sum(0), alpha=1.0 / nb)
    lo = W.numel()
    trainer._vel_flat[lo:].mul_(momentum).add_(trainer._flat[lo : trainer._n_param], alpha=lr)
    torch._foreach_add_(trainer.params, trainer.velocities)
