"""Real-valued and count unit types: Gaussian (learned variances), stepped sigmoid, NReLU."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepbelief.errors import ConfigError, DataError, check_float, check_int
from deepbelief.units.base import Units, normal, uniform

_LOG_2PI = math.log(2.0 * math.pi)


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
    roles = ("visible",)
    needs_back = True
    standardized_data = True
    activation = "identity"

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
        noise = normal(m.shape, m, gen)
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

    def base_rate_bias(self, data, eps=1e-3):
        return data.mean(0).to(self.bias.dtype)  # b_i = the mean of component i

    def fold_scale(self, w):
        return w * self.inv_var().unsqueeze(1)  # s(v) W = v (W / sigma^2)

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
    roles = ("hidden",)
    #: the unrolled net uses softplus(z), the large-N limit of the mean (not the exact sum)
    activation = "softplus"

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
        u = uniform(p.shape, p, gen)
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

    def unit_values(self):
        return [float(k) for k in range(self.copies + 1)]  # counts 0..copies

    def check_data(self, name, x):
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
    roles = ("hidden",)
    activation = "relu"

    def mean(self, x):
        return torch.relu(x + self.bias)

    def sample(self, x, gen):
        y = x + self.bias
        noise = normal(y.shape, y, gen)
        return torch.relu(y + noise * torch.sigmoid(y).sqrt())

    def energy(self, u):
        return (0.5 * u * u - u * self.bias).sum(-1)

    def free_energy(self, x):
        return -0.5 * torch.relu(x + self.bias).square().sum(-1)

    def check_data(self, name, x):
        if x.numel() and float(x.min()) < 0.0:
            raise DataError(f"{name} must be >= 0 for NReLU units, got minimum {float(x.min()):g}")
