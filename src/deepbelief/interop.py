"""PyTorch interop: deepbelief models as plain ``torch.nn`` building blocks.

Every deepbelief model already is an ``nn.Module`` (``RBM``, ``DBN``, ``DeepClassifier``),
so it moves with ``.to(device)``, saves with ``state_dict`` and trains with any torch
optimiser. This module adds two conversions for code that should not depend on
deepbelief at all (deployment, ``torch.export`` / ONNX, other frameworks' trainers):

- ``rbm_layer(rbm)``: ``nn.Sequential(nn.Linear, activation)`` computing E[h | v], the
  deterministic up-pass of one RBM, as a layer of a user's model;
- ``to_sequential(net)``: a fine-tuned ``DeepClassifier`` as a plain ``nn.Sequential``
  producing the same logits.

Both copy the weights (the results are independent of the source model).
"""

from __future__ import annotations

import torch
from torch import nn

from deepbelief.errors import ConfigError
from deepbelief.units import ACTIVATIONS

_MODULES = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "softplus": nn.Softplus, "identity": nn.Identity}


class Activation(nn.Module):
    """An element-wise activation from ``units.ACTIVATIONS`` that torch.nn has no class for."""

    def __init__(self, name: str):
        super().__init__()
        if name not in ACTIVATIONS:
            raise ConfigError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
        self.name = name

    def forward(self, x):
        return ACTIVATIONS[self.name](x)

    def extra_repr(self) -> str:
        return self.name


def _module(name: str) -> nn.Module:
    return _MODULES[name]() if name in _MODULES else Activation(name)


@torch.no_grad()
def rbm_layer(rbm) -> nn.Sequential:
    """The RBM's up-pass E[h | v] = act(s_v(v) W + c) as ``Linear(n_visible, n_hidden)`` +
    activation. The visible scale is folded into the weights (Gaussian: W / sigma^2)."""
    if rbm.hidden.activation is None:
        raise ConfigError(f"hidden units of type {rbm.hidden.kind!r} have no feed-forward activation")
    w = rbm.visible.fold_scale(rbm.W)
    lin = nn.Linear(rbm.n_visible, rbm.n_hidden, device=w.device, dtype=w.dtype)
    lin.weight.copy_(w.T)
    lin.bias.copy_(rbm.hidden.bias)
    return nn.Sequential(lin, _module(rbm.hidden.activation))


@torch.no_grad()
def to_sequential(net) -> nn.Sequential:
    """A ``DeepClassifier`` as ``nn.Sequential(Linear, act, ..., Linear)`` (logits out).

    Dropout layers are included as ``nn.Dropout`` with the net's probabilities, so
    ``.train()`` / ``.eval()`` behave as usual in the user's loop.
    """
    layers: list[nn.Module] = []
    if net.input_dropout:
        layers.append(nn.Dropout(net.input_dropout))
    for lin, act in zip(net.hidden, net.activations):
        new = nn.Linear(lin.in_features, lin.out_features, device=lin.weight.device, dtype=lin.weight.dtype)
        new.load_state_dict(lin.state_dict())
        layers += [new, _module(act)]
        if net.dropout:
            layers.append(nn.Dropout(net.dropout))
    out = nn.Linear(net.out.in_features, net.out.out_features, device=net.out.weight.device,
                    dtype=net.out.weight.dtype)
    out.load_state_dict(net.out.state_dict())
    layers.append(out)
    return nn.Sequential(*layers).train(net.training)
