"""The interface every unit type implements, and the registry of unit types.

A unit type is one subclass of ``Units`` with a new ``kind``; defining the class registers
it (``UNIT_TYPES``), after which model files, recipes, estimators, stacking, unrolling,
exact enumeration and AIS accept it by name. Each per-kind fact the rest of the library
needs is a method or class attribute here, so no other module switches on ``kind``.
Shapes: ``x``, ``u`` are (batch, n); parameters are (n,).
"""

from __future__ import annotations

from typing import Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepbelief.errors import ConfigError, check_int, check_memory
from deepbelief.rng import StepUniforms
from deepbelief.sharding import shard_rows

#: kind -> unit class; filled by defining subclasses of ``Units`` (``__init_subclass__``)
UNIT_TYPES: dict[str, type["Units"]] = {}

#: name -> element-wise function, the deterministic activations of an unrolled net
#: (``Units.activation`` names one; ``finetune.DeepClassifier`` stores the names). A unit
#: type with a new activation defines ``activation = "name"`` and a static ``activate(z)``.
ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    "softplus": F.softplus,
    "identity": lambda t: t,
}


class Units(nn.Module):
    """Base class: ``n`` units of one type with a bias vector (the linear term of E_u).

    The default methods implement units whose self-energy is linear, ``E_u(u) = -b . u``,
    and whose scale is the identity; subclasses override what differs.
    """

    kind: ClassVar[str] = ""
    #: where a recipe, an estimator or the CLI may use the type by name: "visible", "hidden"
    roles: ClassVar[tuple[str, ...]] = ()
    #: True when the unit's scale s(u) depends on its parameters (Gaussian learned
    #: variances); then grad_energy needs ``back = E[s(other)] @ W^T`` (one extra matmul).
    needs_back: ClassVar[bool] = False
    #: True when every state lies in [0, 1] (Bernoulli, softmax): such data is checked like
    #: probabilities, and AIS anneals such a visible layer by default.
    unit_interval: ClassVar[bool] = False
    #: True for independent binary logistic units (Bernoulli): binary data sets, binary
    #: noise to start fantasies from, and the delta rules of up-down fine-tuning.
    is_binary: ClassVar[bool] = False
    #: True when the units model standardised (zero-mean, unit-variance) real-valued data:
    #: recipes apply their input transform and estimators standardise (Gaussian).
    standardized_data: ClassVar[bool] = False
    #: name in ``ACTIVATIONS`` of E[u | x] as a function of the total input z = x + b: the
    #: layer of an unrolled feed-forward net (finetune.unroll). None: cannot be unrolled.
    activation: ClassVar[str | None] = None
    #: CD must sample these units in the negative phase, not take their means (Gaussian)
    sample_negative: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("kind")
        if not kind:  # a subclass that keeps its parent's kind is not a new type
            return
        old = UNIT_TYPES.get(kind)
        if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ConfigError(f"unit type {kind!r} is already registered by {old.__module__}.{old.__qualname__}; "
                              f"give {cls.__qualname__} another kind")
        UNIT_TYPES[kind] = cls
        if "activate" in cls.__dict__ and cls.activation:
            ACTIVATIONS[cls.activation] = cls.__dict__["activate"].__func__

    def __init__(self, n: int):
        super().__init__()
        self.n = check_int("n_units", n, minimum=1)
        check_memory("n_units", self.n, f"{self.n:,} units' biases")
        self.bias = nn.Parameter(torch.zeros(self.n))

    # -- maths ------------------------------------------------------------------------
    def preact(self, x: Tensor) -> Tensor:
        return x + self.bias

    def mean(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def sample(self, x: Tensor, gen: torch.Generator | None) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def stat(self, x: Tensor) -> Tensor:
        return self.mean(x)

    def scale(self, u: Tensor) -> Tensor:
        return u

    def energy(self, u: Tensor) -> Tensor:
        return -(u @ self.bias)

    def free_energy(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def grad_energy(self, u: Tensor, back: Tensor | None) -> dict[str, Tensor]:
        """d/dtheta of [E_u(u) + F_other(s(u) W)], summed over the batch (W excluded)."""
        return {"bias": -u.sum(0)}

    def grad_free_energy(self, x: Tensor) -> dict[str, Tensor]:
        """d/dtheta of free_energy(x), summed over the batch."""
        return {"bias": -self.mean(x).sum(0)}

    # -- per-kind facts the rest of the library asks for ---------------------------------
    def unit_groups(self) -> list["Units"]:
        """The unit groups of the layer: ``[self]``, or a joint layer's groups."""
        return [self]

    def base_rate_bias(self, data: Tensor, eps: float = 1e-3) -> Tensor | None:
        """Biases (n,) of the factorised model matching the marginals of ``data`` (batch, n),
        for initialising visible biases (Hinton's guide, section 8) and AIS base models;
        None: this type has no such rule and keeps its current bias."""
        return None

    @torch.no_grad()
    def set_bias_(self, bias: Tensor) -> None:
        self.bias.copy_(bias)

    def fold_scale(self, w: Tensor) -> Tensor:
        """Weights (n, m) with the scale folded in, so s(u) @ W == u @ fold_scale(W): the
        first layer of an unrolled net, or filters seen in data space. Identity scale: W."""
        if type(self).scale is not Units.scale:
            raise ConfigError(f"units of type {self.kind!r} have a scale s(u) that cannot be folded into the "
                              "weights; define fold_scale")
        return w

    def unit_values(self) -> list[float] | None:
        """The values one unit can take, if finitely many (enumeration order); None: continuous."""
        return None

    def n_states(self) -> int | float:
        """Number of configurations of the layer (``math.inf`` for continuous units)."""
        vals = self.unit_values()
        return float("inf") if vals is None else len(vals) ** self.n

    def enumerate_states(self, *, device=None, dtype=torch.float64) -> Tensor:
        """Every configuration, shape (n_states, n), the first unit the most significant
        digit (exact.py sums over them; keep n_states small)."""
        vals = self.unit_values()
        if vals is None:
            raise ConfigError(f"exact enumeration needs discrete units (with unit_values() or enumerate_states()), "
                              f"got {self.kind!r}")
        base = len(vals)
        idx = torch.arange(base**self.n, device=device)
        digits = (idx.unsqueeze(1) // base ** torch.arange(self.n - 1, -1, -1, device=device)) % base
        return torch.as_tensor(vals, dtype=dtype, device=device)[digits]

    # -- bookkeeping -----------------------------------------------------------------
    def lr_scale(self) -> dict[str, float]:
        """Per-parameter learning-rate multipliers (default 1)."""
        return {}

    def constrain_(self) -> None:
        """Project parameters back into their allowed set after an update."""

    def config(self) -> dict:
        return {"type": self.kind, "n": self.n}

    @classmethod
    def from_config(cls, cfg: dict, n: int | None = None) -> "Units":
        """Units from ``config()`` minus its ``type`` (``n`` if the dict has none)."""
        cfg = dict(cfg)
        size = cfg.pop("n", n)
        if size is None:
            raise ConfigError(f"units config for {cls.kind!r} needs 'n' (the number of units)")
        try:
            return cls(size, **cfg)
        except TypeError as exc:
            raise ConfigError(f"bad options for {cls.kind!r} units: {exc}") from None

    def check_data(self, name: str, x: Tensor) -> None:
        """Raise DataError if ``x`` is not a valid state of these units (values only)."""

    def extra_repr(self) -> str:
        return f"n={self.n}"


def kinds(role: str | None = None) -> list[str]:
    """Registered unit kinds, sorted; with ``role`` ("visible", "hidden") those offered there."""
    return sorted(k for k, c in UNIT_TYPES.items() if role is None or role in c.roles)


def unit_type(kind: str) -> type[Units]:
    """The class registered under ``kind``."""
    if kind not in UNIT_TYPES:
        raise ConfigError(f"unit type must be one of {kinds()}, got {kind!r}")
    return UNIT_TYPES[kind]


def units_from_config(cfg: dict | str | Units, n: int | None = None) -> Units:
    """Build units from ``{"type": name, "n": size, ...options}``, a name plus ``n``, or units."""
    if isinstance(cfg, Units):
        return cfg
    if isinstance(cfg, str):
        cfg = {"type": cfg, "n": n}
    if not isinstance(cfg, dict) or "type" not in cfg:
        raise ConfigError(f"units config must be a dict with a 'type' key, got {cfg!r}")
    cfg = dict(cfg)
    kind = cfg.pop("type")
    if not isinstance(kind, str) or kind not in UNIT_TYPES:
        raise ConfigError(f"unit type must be one of {kinds()}, got {kind!r}")
    return UNIT_TYPES[kind].from_config(cfg, n)


def uniform(shape, like: Tensor, gen: torch.Generator | None) -> Tensor:
    """U(0, 1) numbers of ``like``'s device and dtype from the run's generator.

    Comparing with bulk uniforms is several times cheaper than torch.bernoulli on the CPU
    (benchmarks/step_ablation.py). shard_rows: in a data-parallel step each rank draws the
    global batch's block and keeps its rows, so N processes use the numbers one would.
    ``gen`` may also be a ``rng.StepUniforms`` (a fused step's block of numbers): its next
    numbers are returned, so the reference code draws what the fused step draws."""
    if isinstance(gen, StepUniforms):
        return shard_rows(gen.take, shape)
    return shard_rows(lambda s: torch.rand(s, generator=gen, device=like.device, dtype=like.dtype), shape)


def normal(shape, like: Tensor, gen: torch.Generator | None) -> Tensor:
    """N(0, 1) numbers of ``like``'s device and dtype (sharded like ``uniform``)."""
    return shard_rows(lambda s: torch.randn(s, generator=gen, device=like.device, dtype=like.dtype), shape)
