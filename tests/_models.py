"""Tiny models shared by the enumeration tests (small enough for exact log Z and marginals)."""

import torch

from deepbelief.rbm import RBM


def tiny_rbm(seed=0, nv=6, nh=4, scale=1.0, visible=None, hidden=None) -> RBM:
    """A float64 RBM with weights ``scale * N(0, 1)`` and biases ``0.5 * N(0, 1)``, all drawn from
    ``torch.Generator().manual_seed(seed)`` in the order W, visible bias, hidden bias; ``visible`` /
    ``hidden`` replace the Bernoulli layers of ``nv`` / ``nh`` units (then every parameter named
    ``*bias`` is drawn, in ``named_parameters`` order)."""
    g = torch.Generator().manual_seed(seed)
    r = RBM(visible or nv, hidden or nh, weight_std=scale, generator=g).double()
    with torch.no_grad():
        for name, p in r.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.5)
    return r
