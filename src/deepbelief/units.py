"""Unit types of a Restricted Boltzmann Machine, behind one small interface.

An RBM's energy splits into a self-energy of each layer and one bilinear interaction:

    E(v, h) = E_v(v) + E_h(h) - s_v(v)^T W s_h(h)

where ``s`` is a unit type's *scale* (the identity for binary units, ``v / sigma^2`` for
Gaussian units with variance ``sigma^2``, Cho, Ilin & Raiko 2011). A unit type therefore
needs to know only its own parameters and the *interaction input* ``x`` that the other
layer sends it (``x = s_v(v) @ W`` for the hidden layer, ``x = s_h(h) @ W.T`` for the
visible layer). Everything the RBM needs follows from a handful of functions of ``x``:

- ``mean(x)``: E[u | x], what a deterministic pass sends up or down;
- ``sample(x, gen)``: a draw of u | x using the run's explicit generator;
- ``stat(x)``: E[s(u) | x] = -d free_energy(x) / dx, the statistic paired with W in
  the gradient (equal to ``mean`` except for Gaussian units);
- ``energy(u)``: the self-energy E_u(u), shape (batch,);
- ``free_energy(x)``: -log sum_u exp(-E_u(u) + s(u) . x), shape (batch,), the
  contribution of this layer when it is summed (or integrated) out;
- ``grad_energy(u, back)`` and ``grad_free_energy(x)``: the gradients of those two
  terms with respect to the unit's own parameters, summed over the batch; the RBM
  combines them with the W statistics into the exact free-energy gradient.

A new unit type is one small class here; the RBM never changes (STYLE.md, habit 1).
Shapes: ``x``, ``u`` are (batch, n); parameters are (n,).
"""

from __future__ import annotations

import math
from typing import Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepbelief.distributed import shard_rows
from deepbelief.errors import ConfigError, check_float, check_int, check_memory

_LOG_2PI = math.log(2.0 * math.pi)


class Units(nn.Module):
    """Base class: ``n`` units of one type with a bias vector (the linear term of E_u).

    The default methods implement units whose self-energy is linear, ``E_u(u) = -b . u``,
    and whose scale is the identity; subclasses override what differs.
    """

    kind: ClassVar[str] = ""
    #: True when the unit's scale s(u) depends on its parameters (Gaussian learned
    #: variances); then grad_energy needs ``back = E[s(other)] @ W^T`` (one extra matmul).
    needs_back: ClassVar[bool] = False
    #: True for unit types whose values lie in [0, 1] (Bernoulli data checks).
    unit_interval: ClassVar[bool] = False

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

    # -- bookkeeping -----------------------------------------------------------------
    def lr_scale(self) -> dict[str, float]:
        """Per-parameter learning-rate multipliers (default 1)."""
        return {}

    def constrain_(self) -> None:
        """Project parameters back into their allowed set after an update."""

    def config(self) -> dict:
        return {"type": self.kind, "n": self.n}

    def check_data(self, name: str, x: Tensor) -> None:
        """Raise DataError if ``x`` is not a valid state of these units (values only)."""

    def extra_repr(self) -> str:
        return f"n={self.n}"


def _uniform(shape, like: Tensor, gen: torch.Generator | None) -> Tensor:
    # Comparing with bulk uniforms is several times cheaper than torch.bernoulli on the
    # CPU (notes/performance.md) and draws from the same explicit generator.
    # shard_rows: in a data-parallel step each rank draws the global batch's block and
    # keeps its rows, so N processes use the numbers one process would (distributed.py).
    return shard_rows(lambda s: torch.rand(s, generator=gen, device=like.device, dtype=like.dtype), shape)


def _normal(shape, like: Tensor, gen: torch.Generator | None) -> Tensor:
    return shard_rows(lambda s: torch.randn(s, generator=gen, device=like.device, dtype=like.dtype), shape)


class Bernoulli(Units):
    """Binary (logistic) units: p(u=1 | x) = sigmoid(x + b)."""

    kind = "bernoulli"
    unit_interval = True

    def mean(self, x):
        return torch.sigmoid(x + self.bias)

    def sample(self, x, gen):
        p = self.mean(x)
        u = _uniform(p.shape, p, gen)
        # compare into the uniforms' own buffer: no bool temporary and no cast pass
        # (several times cheaper than (u < p).to(dtype) on the CPU, benchmarks/step_ablation.py)
        return torch.lt(u, p, out=u)

    def free_energy(self, x):
        # -log sum_{u in {0,1}^n} exp(u . (x + b)) = -sum softplus(x + b)
        return -F.softplus(x + self.bias).sum(-1)

    def check_data(self, name, x):
        from deepbelief.errors import DataError

        if x.numel() and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
            raise DataError(
                f"{name} must lie in [0, 1] for Bernoulli units, got values in "
                f"[{float(x.min()):g}, {float(x.max()):g}]"
            )


class Softmax(Units):
    """One-of-n units (a label): exactly one unit is on, p(u=e_k | x) = softmax(x + b)_k."""

    kind = "softmax"
    unit_interval = True

    def mean(self, x):
        return torch.softmax(x + self.bias, dim=-1)

    def sample(self, x, gen):
        p = self.mean(x)
        # inverse-CDF sampling with one uniform per row: no Python loop, one generator
        u = _uniform((p.shape[0], 1), p, gen)
        idx = (torch.cumsum(p, dim=-1) < u).sum(-1, keepdim=True).clamp_(max=self.n - 1)
        return torch.zeros_like(p).scatter_(-1, idx, 1.0)

    def free_energy(self, x):
        return -torch.logsumexp(x + self.bias, dim=-1)

    def check_data(self, name, x):
        from deepbelief.errors import DataError

        if x.numel() and not bool(((x == 0) | (x == 1)).all() and (x.sum(-1) == 1).all()):
            raise DataError(f"{name} must be one-hot rows for softmax units (exactly one 1 per row)")


class Gaussian(Units):
    """Real-valued units with a per-unit variance, u | x ~ N(b + x, sigma^2).

    Energy E_u(u) = sum (u - b)^2 / (2 sigma^2), scale s(u) = u / sigma^2 (Cho, Ilin &
    Raiko 2011), so p(h_j = 1 | v) = sigmoid(c_j + sum_i W_ij v_i / sigma_i^2). The
    variance is parametrised as ``log_var = log sigma^2`` so it stays positive; it is
    learned when ``learn_var`` is true. Learning tight variances is unstable (the
    lecture's warning): ``log_var`` is clamped to ``[log_var_min, log_var_max]`` after each
    update and its learning rate is multiplied by ``var_lr_scale``. Standardise the data
    (unit variance per component) so the defaults (sigma^2 in [e^-4, e^2]) make sense.
    """

    kind = "gaussian"
    needs_back = True

    def __init__(
        self,
        n: int,
        *,
        learn_var: bool = True,
        log_var: float = 0.0,
        log_var_min: float = -4.0,
        log_var_max: float = 2.0,
        var_lr_scale: float = 0.1,
    ):
        super().__init__(n)
        self.learn_var = bool(learn_var)
        self.log_var_min = check_float("log_var_min", log_var_min)
        self.log_var_max = check_float("log_var_max", log_var_max)
        if self.log_var_min > self.log_var_max:
            raise ConfigError(f"log_var_min must be <= log_var_max, got {log_var_min} > {log_var_max}")
        log_var = check_float("log_var", log_var, minimum=self.log_var_min, maximum=self.log_var_max)
        self.var_lr_scale = check_float("var_lr_scale", var_lr_scale, minimum=0.0)
        self.log_var = nn.Parameter(torch.full((self.n,), log_var), requires_grad=self.learn_var)

    @property
    def sample_negative(self) -> bool:
        """CD must sample these units in the negative phase when variances are learned:
        d free_energy / d log sigma^2 has the term -(v - b)^2 / (2 sigma^2), whose model
        expectation a noise-free mean reconstruction underestimates by 1/2 per unit, a bias
        that drives every variance up to its upper bound."""
        return self.learn_var

    def inv_var(self) -> Tensor:
        return torch.exp(-self.log_var)

    def mean(self, x):
        return x + self.bias

    def sample(self, x, gen):
        m = self.mean(x)
        noise = _normal(m.shape, m, gen)
        return m + noise * torch.exp(0.5 * self.log_var)

    def stat(self, x):
        return self.mean(x) * self.inv_var()

    def scale(self, u):
        return u * self.inv_var()

    def energy(self, u):
        return (0.5 * (u - self.bias) ** 2 * self.inv_var()).sum(-1)

    def free_energy(self, x):
        # -log int exp(-(u-b)^2 / (2 s2) + u x / s2) du = -[(2bx + x^2)/(2 s2) + log(2 pi s2)/2]
        iv = self.inv_var()
        return -((self.bias * x + 0.5 * x * x) * iv + 0.5 * (_LOG_2PI + self.log_var)).sum(-1)

    def grad_energy(self, u, back):
        iv = self.inv_var()
        d = u - self.bias
        grads = {"bias": -(d * iv).sum(0)}
        if self.learn_var:
            # energy term: d/dlv (d^2/2 e^-lv) = -d^2/(2 s2); scale term: s(u) = u e^-lv
            # and dF_other/ds = -back, so it contributes back * u / s2.
            grads["log_var"] = ((-0.5 * d * d + u * back) * iv).sum(0)
        return grads

    def grad_free_energy(self, x):
        iv = self.inv_var()
        grads = {"bias": -(x * iv).sum(0)}
        if self.learn_var:
            grads["log_var"] = ((self.bias * x + 0.5 * x * x) * iv - 0.5).sum(0)
        return grads

    def lr_scale(self):
        return {"log_var": self.var_lr_scale}

    @torch.no_grad()
    def constrain_(self):
        self.log_var.clamp_(self.log_var_min, self.log_var_max)

    def config(self):
        return {
            **super().config(),
            "learn_var": self.learn_var,
            "log_var_min": self.log_var_min,
            "log_var_max": self.log_var_max,
            "var_lr_scale": self.var_lr_scale,
        }


def _log_qbinomial_table(n: int, q: float) -> Tensor:
    """log of the Gaussian (q-)binomial coefficients [n choose k]_q for k = 0..n, float64.

    [n k]_q = L(n) / (L(k) L(n-k)) with L(m) = prod_{i=1}^m (1 - q^i); O(n) and stable.
    """
    i = torch.arange(1, n + 1, dtype=torch.float64)
    logl = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(torch.log1p(-(q**i)), 0)])
    k = torch.arange(n + 1)
    return logl[n] - logl[k] - logl[n - k]


class SteppedSigmoid(Units):
    """``copies`` binary units sharing weights, with bias offsets -0.5, -1.5, ..., -(N - 0.5).

    The unit's value u in {0, ..., N} is the number of copies that are on (Nair & Hinton
    2010, section 2). Mean and sampling are exact:
    E[u | x] = sum_{n=1}^N sigmoid(y - n + 0.5) with y = x + b, and a sample is a sum of N
    independent Bernoulli draws. Summing the copies out gives the free energy
    ``F(x) = -sum_n softplus(y - n + 0.5)``. As N grows the mean approaches
    softplus(y) = log(1 + e^y) (a midpoint sum of sigmoids approximating its integral).

    Energy of a state: the copies are exchangeable, so p(u = k | x) sums over the
    C(N, k) subsets of copies that are on; with q_n = exp(-(n - 1/2)) that sum is the
    elementary symmetric polynomial e_k(q) = e^{-k^2/2} [N k]_{1/e} (a q-binomial
    coefficient), hence the exact self-energy

        E_u(k) = -b k + k^2 / 2 - log [N k]_{1/e}.

    When the units are *visible* units of a higher RBM their data are means, not counts;
    E_u is then the linear interpolation of that table between integers (the q-binomial
    term lies in [0, 0.7), so the interpolation changes the energy by less than that).
    """

    kind = "stepped_sigmoid"

    def __init__(self, n: int, *, copies: int = 10):
        super().__init__(n)
        self.copies = check_int("copies", copies, minimum=1, maximum=10_000)
        self.register_buffer("offsets", torch.arange(self.copies, dtype=torch.float32) + 0.5, persistent=False)
        k = torch.arange(self.copies + 1, dtype=torch.float64)
        # the part of E_u(k) that does not depend on parameters, k = 0..N
        table = 0.5 * k * k - _log_qbinomial_table(self.copies, math.exp(-1.0))
        self.register_buffer("count_energy", table, persistent=False)  # float64: exact table

    def _shifted(self, x):  # (batch, n, N)
        return (x + self.bias).unsqueeze(-1) - self.offsets.to(x.dtype)

    def mean(self, x):
        return torch.sigmoid(self._shifted(x)).sum(-1)

    def sample(self, x, gen):
        p = torch.sigmoid(self._shifted(x))
        u = _uniform(p.shape, p, gen)
        return torch.lt(u, p, out=u).sum(-1)

    def energy(self, u):
        table = self.count_energy.to(u.dtype)
        uc = u.clamp(0, self.copies)
        lo = uc.floor().clamp(max=self.copies - 1).long()
        frac = uc - lo.to(u.dtype)
        c = table[lo] * (1 - frac) + table[lo + 1] * frac  # exact at integers
        return (c - u * self.bias).sum(-1)

    def free_energy(self, x):
        return -F.softplus(self._shifted(x)).sum((-1, -2))

    def check_data(self, name, x):
        from deepbelief.errors import DataError

        if x.numel() and (float(x.min()) < 0.0 or float(x.max()) > self.copies):
            raise DataError(
                f"{name} must lie in [0, {self.copies}] (the number of copies) for stepped sigmoid units, "
                f"got values in [{float(x.min()):g}, {float(x.max()):g}]"
            )

    def config(self):
        return {**super().config(), "copies": self.copies}


class NReLU(Units):
    """Noisy rectified linear units (Nair & Hinton 2010, "Rectified linear units improve
    restricted Boltzmann machines", section 2).

    With y = x + b: mean max(0, y), and a sample is max(0, y + N(0, sigmoid(y))) (the
    noise *variance* is sigmoid(y)). They stand for stepped sigmoid units with infinitely
    many copies, whose mean sum_n sigmoid(y - n + 0.5) ~ softplus(y) Nair & Hinton replace
    by max(0, y). We apply the same approximation to the free energy, so that it is the
    exact integral of the mean the unit uses:

        F(x) = -max(0, y)^2 / 2,   -dF/dx = max(0, y) = E[u | x] = ``stat``.

    The exact infinite stepped-sigmoid sum -sum_n softplus(y - n + 0.5) differs from this
    by a bounded amount (between 0 and about pi^2/6 - 1/24 ~ 1.6 per unit), and its
    derivative by softplus(y) - max(0, y) <= log 2; using it instead would make the W
    gradient pair v with softplus(y) while the unit sends max(0, y) up, i.e. it would not
    be the gradient of the model that is sampled. Use ``SteppedSigmoid`` for the exact sum.

    Self-energy of a state u >= 0 (needed when NReLU units are the *visible* layer of the
    next RBM in a stack): E_u(u) = u^2 / 2 - b u, the stepped-sigmoid energy without its
    bounded q-binomial term, so the layer behaves like a rectified unit-variance Gaussian.
    """

    kind = "nrelu"

    def mean(self, x):
        return torch.relu(x + self.bias)

    def sample(self, x, gen):
        y = x + self.bias
        noise = _normal(y.shape, y, gen)
        return torch.relu(y + noise * torch.sigmoid(y).sqrt())

    def energy(self, u):
        return (0.5 * u * u - u * self.bias).sum(-1)

    def free_energy(self, x):
        return -0.5 * torch.relu(x + self.bias).square().sum(-1)

    def check_data(self, name, x):
        from deepbelief.errors import DataError

        if x.numel() and float(x.min()) < 0.0:
            raise DataError(f"{name} must be >= 0 for NReLU units, got minimum {float(x.min()):g}")


class Joint(Units):
    """Several unit groups side by side in one layer, e.g. [500 features, 10 softmax labels].

    Every function splits its input along the last dimension and concatenates (or sums)
    the groups' answers, so the top RBM of a labelled DBN is the ordinary RBM class.
    Parameters are named ``groups.<i>.<name>``.
    """

    kind = "joint"

    def __init__(self, groups: list[Units]):
        nn.Module.__init__(self)
        if not groups:
            raise ConfigError("Joint units need at least one group, got []")
        self.groups = nn.ModuleList(groups)
        self.sizes = [g.n for g in groups]
        self.n = sum(self.sizes)
        self.needs_back = any(g.needs_back for g in groups)
        self.sample_negative = any(getattr(g, "sample_negative", False) for g in groups)
        self.unit_interval = all(g.unit_interval for g in groups)

    @property
    def bias(self):  # concatenated view, for initialisation and inspection
        return torch.cat([g.bias for g in self.groups])

    def split(self, t: Tensor) -> tuple[Tensor, ...]:
        return torch.split(t, self.sizes, dim=-1)

    def _cat(self, fn: Callable, *ts):
        parts = [fn(g, *(p[i] for p in ts)) for i, g in enumerate(self.groups)]
        return torch.cat(parts, dim=-1)

    def mean(self, x):
        return torch.cat([g.mean(p) for g, p in zip(self.groups, self.split(x))], dim=-1)

    def sample(self, x, gen):
        return torch.cat([g.sample(p, gen) for g, p in zip(self.groups, self.split(x))], dim=-1)

    def stat(self, x):
        return torch.cat([g.stat(p) for g, p in zip(self.groups, self.split(x))], dim=-1)

    def scale(self, u):
        return torch.cat([g.scale(p) for g, p in zip(self.groups, self.split(u))], dim=-1)

    def energy(self, u):
        return sum(g.energy(p) for g, p in zip(self.groups, self.split(u)))

    def free_energy(self, x):
        return sum(g.free_energy(p) for g, p in zip(self.groups, self.split(x)))

    def grad_energy(self, u, back):
        backs = self.split(back) if back is not None else [None] * len(self.groups)
        out = {}
        for i, (g, p, b) in enumerate(zip(self.groups, self.split(u), backs)):
            out.update({f"groups.{i}.{k}": v for k, v in g.grad_energy(p, b).items()})
        return out

    def grad_free_energy(self, x):
        out = {}
        for i, (g, p) in enumerate(zip(self.groups, self.split(x))):
            out.update({f"groups.{i}.{k}": v for k, v in g.grad_free_energy(p).items()})
        return out

    def lr_scale(self):
        return {f"groups.{i}.{k}": v for i, g in enumerate(self.groups) for k, v in g.lr_scale().items()}

    def constrain_(self):
        for g in self.groups:
            g.constrain_()

    def check_data(self, name, x):
        for i, (g, p) in enumerate(zip(self.groups, self.split(x))):
            g.check_data(f"{name}[group {i}]", p)

    def config(self):
        return {"type": self.kind, "groups": [g.config() for g in self.groups]}

    def extra_repr(self):
        return f"sizes={self.sizes}"


UNIT_TYPES: dict[str, type[Units]] = {
    cls.kind: cls for cls in (Bernoulli, Softmax, Gaussian, SteppedSigmoid, NReLU)
}


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
    if kind == Joint.kind:
        return Joint([units_from_config(g) for g in cfg.get("groups", [])])
    if kind not in UNIT_TYPES:
        raise ConfigError(f"unit type must be one of {sorted(UNIT_TYPES) + ['joint']}, got {kind!r}")
    size = cfg.pop("n", n)
    if size is None:
        raise ConfigError(f"units config for {kind!r} needs 'n' (the number of units)")
    try:
        return UNIT_TYPES[kind](size, **cfg)
    except TypeError as exc:
        raise ConfigError(f"bad options for {kind!r} units: {exc}") from None
