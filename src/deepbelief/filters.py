"""First-layer filters of any deepbelief model, as stored and as they act on the raw input.

Used by ``deepbelief show-filters`` and ``deepbelief plot filters``; plain functions of a
model, so the command line only reads files and writes images.
"""

from __future__ import annotations

from deepbelief.errors import ConfigError
from deepbelief.transforms import transform_from_dict


def first_layer_filters(model):
    """(n_hidden, n_visible) first-layer weights of any deepbelief model."""
    kind = getattr(model, "kind", "")
    if kind == "rbm":
        return model.W.T
    if kind == "classifier":
        return model.hidden[0].weight
    if hasattr(model, "rbms"):
        return model.rbms[0].W.T
    if hasattr(model, "recognition_weights"):
        return model.recognition_weights()[0].T
    raise ConfigError(f"model of kind {kind!r} has no first-layer filters to show")


def input_space_filters(model, w, meta: dict):
    """First-layer filters (n_hidden, n_inputs) as they act on the *untransformed* input.

    A Gaussian-visible RBM sends s_v(v) W = (v / sigma^2) W up, so its effective filters
    are W / sigma^2; if the data went through a linear input transform x' = (x - m) A
    (standardisation, ZCA), the filter acting on x is A (W / sigma^2).
    """
    rbm = model if getattr(model, "kind", "") == "rbm" else (model.rbms[0] if hasattr(model, "rbms") else None)
    if rbm is not None:
        w = rbm.visible.fold_scale(w.T).T.detach()
    t = transform_from_dict(meta.get("input_transform"))
    if t is not None:
        a = t.linear_part().to(w.device, w.dtype)  # (d, d')
        w = w @ a.T
    return w
