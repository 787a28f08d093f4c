"""Centred RBMs (Montavon & Mueller 2012; Melchior, Fischer & Wiskott 2016).

A centred binary RBM subtracts offsets mu (visible, (n_v,)) and lambda (hidden, (n_h,))
from the states in its energy:

    E_c(v, h) = -(v - mu)^T W (h - lambda) - b'^T (v - mu) - c'^T (h - lambda).

Expanding it gives the ordinary energy -v^T W h - b^T v - c^T h plus a constant, with

    b = b' - W lambda,      c = c' - W^T mu                                        (1)

so a centred RBM *is* an ordinary one with the same W: the library keeps the ordinary
parameters (W, b, c) in the ``RBM`` and centring lives only in the training update.
Every downstream tool (stacking, AIS, RAISE, unrolling, exact enumeration) therefore sees
an ordinary RBM, and the offsets are training state: ``RBM.visible_offset`` /
``RBM.hidden_offset`` buffers, saved in checkpoints and model files; they never change
the model's distribution.

The update (Melchior et al. 2016, Algorithm 1, "dd" variant: offsets from the data):

    mu     <- (1 - nu) mu     + nu <v>_data                  (sliding average, nu = rate)
    lambda <- (1 - nu) lambda + nu <E[h | v]>_data
    dW  = <(v - mu)(h - lambda)^T>_data - <(v - mu)(h - lambda)^T>_model - decay W
    db' = <v>_data - <v>_model,   dc' = <h>_data - <h>_model

with h replaced by E[h | v] in both phases. The paper re-parameterises b', c' when the
offsets move, b' <- b' + W (lambda_new - lambda), c' <- c' + W^T (mu_new - mu), which is
exactly what keeps (1)'s ordinary b, c fixed: with ordinary parameters stored, an offset
change leaves the model untouched by construction (``shift_offsets`` and the tests check
the centred bookkeeping against it). Written for the ordinary parameters, the step is

    dW^c = g_W - mu g_c^T - g_b lambda^T - decay W        (g_*: the ordinary CD/PCD gradients)
    db   = g_b - dW^c lambda,     dc = g_c - (dW^c)^T mu                            (2)

Momentum acts on these ordinary directions; while the offsets are constant this equals
the paper's momentum on the centred parameters (the map (1) is linear).
"""

from __future__ import annotations

from torch import Tensor

from deepbelief.errors import ConfigError


def check_centerable(rbm) -> None:
    """Centring is defined here for Bernoulli visible and hidden units."""
    for name, layer in (("visible", rbm.visible), ("hidden", rbm.hidden)):
        if not layer.is_binary or layer.unit_groups() != [layer]:
            raise ConfigError(f"centering needs Bernoulli units in both layers; the {name} layer has "
                              f"{layer.kind!r} units")


def centred_biases(W: Tensor, b: Tensor, c: Tensor, mu: Tensor, lam: Tensor) -> tuple[Tensor, Tensor]:
    """Ordinary (b, c) -> centred (b', c') = (b + W lambda, c + W^T mu); W (n_v, n_h)."""
    return b + W @ lam, c + W.T @ mu


def ordinary_biases(W: Tensor, bc: Tensor, cc: Tensor, mu: Tensor, lam: Tensor) -> tuple[Tensor, Tensor]:
    """Centred (b', c') -> ordinary (b, c) = (b' - W lambda, c' - W^T mu), equation (1)."""
    return bc - W @ lam, cc - W.T @ mu


def centred_energy(v: Tensor, h: Tensor, W: Tensor, bc: Tensor, cc: Tensor, mu: Tensor, lam: Tensor) -> Tensor:
    """E_c(v, h) = -(v - mu)^T W (h - lambda) - b'^T (v - mu) - c'^T (h - lambda), shape (batch,)."""
    dv, dh = v - mu, h - lam
    return -((dv @ W) * dh).sum(-1) - dv @ bc - dh @ cc


def shift_offsets(W: Tensor, bc: Tensor, cc: Tensor, mu: Tensor, lam: Tensor, mu_new: Tensor,
                  lam_new: Tensor) -> tuple[Tensor, Tensor]:
    """The centred biases after moving the offsets to (mu_new, lambda_new) such that the
    distribution is unchanged (Melchior et al. 2016, eqs. 13-14):
    b' + W (lambda_new - lambda), c' + W^T (mu_new - mu)."""
    return bc + W @ (lam_new - lam), cc + W.T @ (mu_new - mu)


def centred_directions_(g_w: Tensor, g_b: Tensor, g_c: Tensor, W: Tensor, mu: Tensor, lam: Tensor,
                        weight_decay: float = 0.0) -> None:
    """Turn ordinary ascent directions (E_data - E_model of v h^T, v, E[h | v]) into the
    centred step for the ordinary parameters, equation (2), in place. Shapes: g_w, W
    (n_v, n_h); g_b, mu (n_v,); g_c, lam (n_h,)."""
    g_w.addr_(mu, g_c, alpha=-1.0).addr_(g_b, lam, alpha=-1.0)
    if weight_decay:
        g_w.add_(W, alpha=-weight_decay)
    g_b.sub_(g_w @ lam)
    g_c.sub_(g_w.T @ mu)


def update_offsets_(mu: Tensor, lam: Tensor, mean_v: Tensor, mean_h: Tensor, rate: float) -> None:
    """Sliding averages mu <- (1 - rate) mu + rate <v>, lambda <- (1 - rate) lambda + rate <h>."""
    mu.lerp_(mean_v.to(mu.dtype), rate)
    lam.lerp_(mean_h.to(lam.dtype), rate)
