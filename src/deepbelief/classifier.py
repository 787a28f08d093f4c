"""The feed-forward classifier a pre-trained stack unrolls into (``unroll``), or its random
draw (``random_classifier``, the no-pre-training baseline).

A plain ``torch.nn.Module``: hidden layers ``Linear -> activation`` (an activation named
in ``units.ACTIVATIONS``, the mean function of the unit type it came from) and a linear
output layer to logits. Training lives in ``finetune.py``; files in ``io.py``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from deepbelief.errors import ConfigError, as_data, check_choice, check_float, check_int
from deepbelief.units import ACTIVATIONS


class DeepClassifier(nn.Module):
    """Feed-forward classifier: hidden layers ``Linear -> activation``, then a linear
    layer to ``n_classes`` logits (softmax lives in the loss / ``predict_proba``).

    Args:
        sizes: layer sizes from the input to the last hidden layer, e.g. [784, 500, 500, 2000].
        activations: a name in ``units.ACTIVATIONS`` per hidden layer (``sigmoid``, ``relu``,
            ``softplus``, ``identity``, or one a unit type added).
        n_classes: number of output classes.
        dropout: drop probability of hidden units during training.
        input_dropout: drop probability of input units during training.
    """

    kind = "classifier"

    def __init__(self, sizes, activations, n_classes: int = 10, *, dropout: float = 0.0, input_dropout: float = 0.0):
        super().__init__()
        if len(sizes) < 1 or len(activations) != len(sizes) - 1:
            raise ConfigError(f"need one activation per hidden layer: sizes={sizes}, activations={activations}")
        for a in activations:
            check_choice("activation", a, set(ACTIVATIONS))
        self.sizes = [check_int("sizes[i]", s, minimum=1) for s in sizes]
        self.activations = list(activations)
        self.n_classes = check_int("n_classes", n_classes, minimum=2)
        self.dropout = check_float("dropout", dropout, minimum=0.0, maximum=0.99)
        self.input_dropout = check_float("input_dropout", input_dropout, minimum=0.0, maximum=0.99)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(self.sizes[:-1], self.sizes[1:]))
        self.out = nn.Linear(self.sizes[-1], self.n_classes)

    def _drop(self, x: Tensor, p: float, gen: torch.Generator | None) -> Tensor:
        if not self.training or p == 0.0:
            return x
        keep = torch.rand(x.shape, generator=gen, device=x.device, dtype=x.dtype) >= p
        return x * keep / (1.0 - p)

    def features(self, x: Tensor, gen: torch.Generator | None = None) -> Tensor:
        x = self._drop(x, self.input_dropout, gen)
        for lin, act in zip(self.hidden, self.activations):
            x = self._drop(ACTIVATIONS[act](lin(x)), self.dropout, gen)
        return x

    def forward(self, x: Tensor, gen: torch.Generator | None = None) -> Tensor:
        """Logits, shape (batch, n_classes)."""
        return self.out(self.features(x, gen))

    @torch.no_grad()
    def predict_proba(self, x, batch_size: int = 4096) -> Tensor:
        x = self._check(x)
        was = self.training
        self.eval()
        out = torch.cat([torch.softmax(self(x[i : i + batch_size]), -1) for i in range(0, x.shape[0], batch_size)])
        self.train(was)
        return out

    def predict(self, x) -> Tensor:
        return self.predict_proba(x).argmax(-1)

    def _check(self, x) -> Tensor:
        w = self.out.weight
        return as_data("x", x, n_features=self.sizes[0], device=w.device, dtype=w.dtype)

    def config(self) -> dict:
        return {
            "sizes": self.sizes,
            "activations": self.activations,
            "n_classes": self.n_classes,
            "dropout": self.dropout,
            "input_dropout": self.input_dropout,
        }

    @classmethod
    def from_config(cls, cfg: dict) -> "DeepClassifier":
        return cls(cfg["sizes"], cfg["activations"], cfg["n_classes"], dropout=cfg.get("dropout", 0.0),
                   input_dropout=cfg.get("input_dropout", 0.0))


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
