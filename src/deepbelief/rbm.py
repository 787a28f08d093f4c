"""The one Restricted Boltzmann Machine: a weight matrix between two unit layers.

    E(v, h) = E_v(v) + E_h(h) - s_v(v)^T W s_h(h)           (units.py explains E_u, s)
    F(v)    = -log sum_h exp(-E(v, h)) = E_v(v) + F_h(s_v(v) W)
    F(h)    = -log sum_v exp(-E(v, h)) = E_h(h) + F_v(s_h(h) W^T)

This module is maths only: energies, free energies, conditionals, Gibbs steps and the
exact gradient of the free energy. Training lives in ``training.py`` and ``trainer.py``, the
negative-phase samplers in ``sampling.py``. Shapes: v (batch, n_visible), h (batch,
n_hidden), W (n_visible, n_hidden).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from deepbelief.errors import ConfigError, as_data, check_float, check_memory
from deepbelief.units import Bernoulli, Units, units_from_config


class RBM(nn.Module):
    """A Restricted Boltzmann Machine with any pair of unit types.

    Args:
        visible: a ``Units`` instance, a config dict, or an int (Bernoulli units).
        hidden: likewise.
        weight_std: standard deviation of the initial weights. Hinton's practical guide
            (2010, section 8) recommends small random values from N(0, 0.01^2), so that
            the hidden units start near 0.5 and learning breaks the symmetry.
        generator: the run's generator for the initial weights (the device of the
            generator decides where the parameters live).
        centered: give the RBM centring offsets, buffers ``visible_offset`` (n_visible,)
            and ``hidden_offset`` (n_hidden,), initially 0.5 (centering.py). They are
            training state of the centred update only: the distribution is always that
            of the ordinary parameters W, b, c.
    """

    kind = "rbm"

    def __init__(
        self,
        visible: Units | dict | int,
        hidden: Units | dict | int,
        *,
        weight_std: float = 0.01,
        generator: torch.Generator | None = None,
        centered: bool = False,
    ):
        super().__init__()
        self.visible = _layer("visible", visible)
        self.hidden = _layer("hidden", hidden)
        self.weight_std = check_float("weight_std", weight_std, minimum=0.0)
        device = generator.device if generator is not None else None
        check_memory("visible x hidden", self.visible.n * self.hidden.n,
                     f"the {self.visible.n:,} x {self.hidden.n:,} weights", device=device)
        w = torch.randn(self.visible.n, self.hidden.n, generator=generator, device=device) * self.weight_std
        self.W = nn.Parameter(w)
        if centered:
            self.add_offsets_()
        if device is not None:
            self.to(device)

    @property
    def centered(self) -> bool:
        return hasattr(self, "visible_offset")

    @torch.no_grad()
    def add_offsets_(self, mu: Tensor | None = None, lam: Tensor | None = None) -> None:
        """Register (or overwrite) the centring offsets mu (n_visible,) and lambda (n_hidden,);
        default 0.5 (Melchior et al. 2016). The model's distribution does not change."""
        w = self.W
        for name, n, val in (("visible_offset", self.n_visible, mu), ("hidden_offset", self.n_hidden, lam)):
            t = torch.full((n,), 0.5, device=w.device, dtype=w.dtype) if val is None else \
                torch.as_tensor(val, device=w.device, dtype=w.dtype).reshape(n).clone()
            if hasattr(self, name):
                getattr(self, name).copy_(t)
            else:
                self.register_buffer(name, t)

    @property
    def n_visible(self) -> int:
        return self.visible.n

    @property
    def n_hidden(self) -> int:
        return self.hidden.n

    # -- energies -------------------------------------------------------------------
    def hidden_input(self, v: Tensor) -> Tensor:
        """x_h = s_v(v) @ W, shape (batch, n_hidden)."""
        return self.visible.scale(v) @ self.W

    def visible_input(self, h: Tensor) -> Tensor:
        """x_v = s_h(h) @ W^T, shape (batch, n_visible)."""
        return self.hidden.scale(h) @ self.W.T

    def energy(self, v: Tensor, h: Tensor) -> Tensor:
        """E(v, h), shape (batch,)."""
        inter = (self.hidden_input(v) * self.hidden.scale(h)).sum(-1)
        return self.visible.energy(v) + self.hidden.energy(h) - inter

    def free_energy(self, v: Tensor) -> Tensor:
        """F(v) = -log sum_h exp(-E(v, h)), shape (batch,); log p(v) = -F(v) - log Z."""
        return self.visible.energy(v) + self.hidden.free_energy(self.hidden_input(v))

    def free_energy_hidden(self, h: Tensor) -> Tensor:
        """F(h) = -log sum_v exp(-E(v, h)), shape (batch,); log p(h) = -F(h) - log Z."""
        return self.hidden.energy(h) + self.visible.free_energy(self.visible_input(h))

    # -- conditionals ------------------------------------------------------------------
    def mean_hidden(self, v: Tensor) -> Tensor:
        """E[h | v], shape (batch, n_hidden)."""
        return self.hidden.mean(self.hidden_input(v))

    def mean_visible(self, h: Tensor) -> Tensor:
        """E[v | h], shape (batch, n_visible)."""
        return self.visible.mean(self.visible_input(h))

    def sample_hidden(self, v: Tensor, gen: torch.Generator | None = None) -> Tensor:
        return self.hidden.sample(self.hidden_input(v), gen)

    def sample_visible(self, h: Tensor, gen: torch.Generator | None = None) -> Tensor:
        return self.visible.sample(self.visible_input(h), gen)

    def gibbs(self, v: Tensor, steps: int = 1, gen: torch.Generator | None = None) -> Tensor:
        """Run ``steps`` full sweeps v -> h -> v of alternating Gibbs sampling."""
        for _ in range(steps):
            v = self.sample_visible(self.sample_hidden(v, gen), gen)
        return v

    def reconstruct(self, v: Tensor) -> Tensor:
        """Mean-field reconstruction E[v | E[h | v]], used for monitoring."""
        return self.mean_visible(self.mean_hidden(v))

    # -- gradient ------------------------------------------------------------------------
    def free_energy_grad(self, v: Tensor, x: Tensor | None = None, *, weights: bool = True) -> dict[str, Tensor]:
        """Exact gradient of sum_batch F(v) with respect to every parameter.

        ``x`` is ``hidden_input(v)`` if the caller already has it. The log-likelihood
        gradient is -E_data[dF/dtheta] + E_model[dF/dtheta]; CD and PCD estimate the second
        term with samples. dF/dW = -s_v(v)^T E[s_h(h) | v]. ``weights=False`` leaves out
        the W entry (the training loop fuses that matmul into its update).
        """
        if x is None:
            x = self.hidden_input(v)
        stat = self.hidden.stat(x)
        grads = {"W": -(self.visible.scale(v).T @ stat)} if weights else {}
        back = stat @ self.W.T if self.visible.needs_back else None
        grads.update({f"visible.{k}": g for k, g in self.visible.grad_energy(v, back).items()})
        grads.update({f"hidden.{k}": g for k, g in self.hidden.grad_free_energy(x).items()})
        return grads

    def lr_scales(self) -> dict[str, float]:
        scales = {f"visible.{k}": s for k, s in self.visible.lr_scale().items()}
        scales.update({f"hidden.{k}": s for k, s in self.hidden.lr_scale().items()})
        return scales

    def constrain_(self) -> None:
        self.visible.constrain_()
        self.hidden.constrain_()

    # -- set-up and serialisation ---------------------------------------------------------
    @torch.no_grad()
    def init_visible_bias_(self, data: Tensor, eps: float = 1e-3) -> None:
        """Set visible biases from the data (Hinton's guide, section 8): each unit type's
        ``base_rate_bias`` (Bernoulli: b_i = log(p_i / (1 - p_i)) with p_i the fraction of
        data where unit i is on, clipped to [eps, 1 - eps]; Gaussian: the mean of component
        i). Unit types without such a rule keep their biases."""
        bias = self.visible.base_rate_bias(data, eps)
        if bias is not None:
            self.visible.set_bias_(bias)

    def config(self) -> dict:
        cfg = {"visible": self.visible.config(), "hidden": self.hidden.config(), "weight_std": self.weight_std}
        if self.centered:  # only then: ordinary models keep the config (and files) they had
            cfg["centered"] = True
        return cfg

    @classmethod
    def from_config(cls, cfg: dict) -> "RBM":
        try:
            return cls(cfg["visible"], cfg["hidden"], weight_std=cfg.get("weight_std", 0.01),
                       centered=bool(cfg.get("centered", False)))
        except KeyError as exc:
            raise ConfigError(f"RBM config is missing key {exc}") from None

    def check_input(self, name: str, v, *, device=None) -> Tensor:
        """Validate user data for the visible layer and return a float tensor on ``device``."""
        t = as_data(name, v, n_features=self.n_visible, device=device or self.W.device, dtype=self.W.dtype)
        self.visible.check_data(name, t)
        return t

    def extra_repr(self) -> str:
        return f"n_visible={self.n_visible}, n_hidden={self.n_hidden}"


def _layer(name: str, spec) -> Units:
    """Units from an int, a config dict or Units; errors name ``visible``/``hidden``."""
    if isinstance(spec, bool) or not isinstance(spec, (int, dict, str, Units)):
        raise ConfigError(f"{name} must be a number of units, a units config dict or Units, got {spec!r}")
    try:
        return Bernoulli(spec) if isinstance(spec, int) else units_from_config(spec)
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def batched(fn, data: Tensor, batch_size: int = 2048) -> Tensor:
    """Apply ``fn`` to row blocks of ``data`` and concatenate, to bound peak memory."""
    if data.shape[0] <= batch_size:
        return fn(data)
    return torch.cat([fn(data[i : i + batch_size]) for i in range(0, data.shape[0], batch_size)])
