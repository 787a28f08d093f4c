"""Negative-phase samplers: contrastive divergence (CD-k), persistent CD (PCD) and
parallel tempering (PT).

Both answer one question for the training loop: given a batch of data ``v0`` (and its
hidden input ``x0 = s_v(v0) W``), which visible states ``v_neg`` stand in for the model's
distribution in the negative phase? The log-likelihood gradient is then estimated as
``-dF(v0) + dF(v_neg)`` (rbm.RBM.free_energy_grad).

- CD-k (Hinton 2002) starts k Gibbs sweeps at the data.
- PCD (Tieleman 2008) keeps persistent chains across updates; the chains are explicit
  state (``chains``) so that checkpoints can save them and data-parallel runs can shard
  them.
- PT (Desjardins et al. 2010; Cho, Raiko & Ilin 2010) keeps persistent chains at K
  inverse temperatures and swaps states between neighbours; the beta = 1 chains give the
  negative phase (PT-PCD). ``pt_sample`` draws samples from a trained RBM with it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from deepbelief.errors import check_int
from deepbelief.rbm import RBM


class CD:
    """CD-k. ``sample_visible=False`` uses E[v | h] for the reconstruction, the last visible
    state of the k steps, which Hinton's practical guide (section 3.2) recommends for binary
    data: it lowers sampling noise and leaves the hidden states, which carry the information
    bottleneck, sampled. The k - 1 visible states before it are always sampled: with means
    in their place the k steps would not be a Gibbs chain of the model (they were means before
    2026-12-06; benchmarks/RESULTS.md has the CD-25 row before and after)."""

    name = "cd"

    def __init__(self, k: int = 1, *, sample_visible: bool = False):
        self.k = check_int("cd_k", k, minimum=1)
        self.sample_visible = bool(sample_visible)

    def negative(self, rbm: RBM, v0: Tensor, x0: Tensor, gen: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """Return (v_neg, x_neg) with x_neg = hidden_input(v_neg)."""
        x = x0
        # learned variances are fitted to E[(v - b)^2]: a mean-field reconstruction has no
        # noise, so it would under-estimate that term and push the variances up (units.py)
        sample = self.sample_visible or rbm.visible.sample_negative
        for step in range(self.k):
            h = rbm.hidden.sample(x, gen)
            xv = rbm.visible_input(h)
            v = rbm.visible.sample(xv, gen) if sample or step < self.k - 1 else rbm.visible.mean(xv)
            x = rbm.hidden_input(v)
        return v, x

    def state_dict(self) -> dict[str, Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        pass

    def config(self) -> dict:
        return {"method": self.name, "k": self.k, "sample_visible": self.sample_visible}


class PCD(CD):
    """Persistent contrastive divergence with ``n_chains`` fantasy particles.

    The chains are initialised lazily from the first batch of data, which Tieleman (2008)
    found works as well as random states and avoids a separate burn-in. Visible states of a
    persistent chain are always sampled: with means the chain would not be a Markov chain
    of the model.
    """

    name = "pcd"

    def __init__(self, k: int = 1, *, n_chains: int | None = None):
        super().__init__(k, sample_visible=True)
        self.n_chains = None if n_chains is None else check_int("n_chains", n_chains, minimum=1)
        self.chains: Tensor | None = None

    def negative(self, rbm, v0, x0, gen):
        if self.chains is None:
            self.chains = self._initial_chains(v0)
        v = self.chains
        x = rbm.hidden_input(v)
        for _ in range(self.k):
            h = rbm.hidden.sample(x, gen)
            v = rbm.visible.sample(rbm.visible_input(h), gen)
            x = rbm.hidden_input(v)
        self.chains = v
        return v, x

    def _initial_chains(self, v0: Tensor) -> Tensor:
        """The first batch, repeated to ``n_chains`` rows. In a data-parallel run the chains
        are sharded: the global first batch is gathered, the global chains built from it
        exactly as one process would, and each rank keeps its rows."""
        from deepbelief import distributed
        from deepbelief.errors import ConfigError

        world, rank = distributed.world_size(), distributed.rank()
        v = distributed.all_gather_rows(v0)  # (global batch, n_visible); v0 itself in one process
        n = self.n_chains or v.shape[0]
        if n % world:
            raise ConfigError(f"n_chains must be a multiple of the number of processes ({world}), got {n}")
        chains = v.repeat(-(-n // v.shape[0]), 1)[:n]
        share = n // world
        return chains[rank * share : (rank + 1) * share].clone()

    def state_dict(self):
        return {} if self.chains is None else {"chains": self.chains}

    def load_state_dict(self, state):
        self.chains = state.get("chains")

    def config(self):
        return {"method": self.name, "k": self.k, "n_chains": self.n_chains}


def pt_betas(n_temperatures: int = 10, spacing: str = "linear", min_beta: float = 0.0) -> Tensor:
    """Inverse temperatures 1 = beta_0 > beta_1 > ... > beta_{K-1} = ``min_beta``, float64, (K,).

    ``linear``: beta_k = 1 - (1 - min_beta) k / (K - 1), the spacing of Cho, Raiko & Ilin
    (2010) and Desjardins et al. (2010), with min_beta = 0 the uniform distribution.
    ``geometric``: beta_k = min_beta^(k / (K - 1)), constant ratios (needs min_beta > 0),
    which puts more temperatures near beta = 1 where the model's energy landscape is steep.
    """
    from deepbelief.errors import ConfigError, check_choice, check_float

    K = check_int("pt_temperatures", n_temperatures, minimum=2)
    check_choice("pt_spacing", spacing, {"linear", "geometric"})
    lo = check_float("pt_min_beta", min_beta, minimum=0.0, maximum=1.0)
    if lo >= 1.0:
        raise ConfigError(f"pt_min_beta must be < 1 (the lowest inverse temperature), got {min_beta!r}")
    t = torch.arange(K, dtype=torch.float64) / (K - 1)
    if spacing == "linear":
        return 1.0 - (1.0 - lo) * t
    if lo <= 0.0:
        raise ConfigError(f"pt_min_beta must be > 0 for geometric spacing, got {min_beta!r}")
    return lo ** t


def check_temperable(rbm: RBM) -> None:
    """Raise ConfigError unless beta E(v, h) is again an RBM of the same unit types: every
    unit group discrete, with the linear self-energy -b . u and the identity scale
    (Bernoulli, softmax and joints of them)."""
    from deepbelief.errors import ConfigError
    from deepbelief.units import Units

    for name, layer in (("visible", rbm.visible), ("hidden", rbm.hidden)):
        for g in layer.unit_groups():
            t = type(g)
            if t.energy is not Units.energy or t.scale is not Units.scale or g.n_states() == float("inf"):
                raise ConfigError(
                    f"parallel tempering scales the energy (beta E), which needs discrete units with a linear "
                    f"self-energy (bernoulli, softmax); the {name} layer has {g.kind!r} units")


class PT(PCD):
    """Parallel tempering with persistent chains (PT-PCD).

    The tempered models are the RBM's energy scaled by an inverse temperature,

        p_beta(v, h) ∝ exp(-beta E(v, h)),   1 = beta_0 > beta_1 > ... > beta_{K-1} >= 0,

    i.e. the same RBM with W, b and c multiplied by beta (Desjardins et al. 2010, Cho,
    Raiko & Ilin 2010); beta = 0 is the uniform distribution. Each of ``n_chains`` replica
    sets holds one visible state per temperature. One update runs ``k`` Gibbs sweeps of
    every chain at its own temperature, then proposes swaps between neighbours, the pairs
    (0,1), (2,3), ... on even updates and (1,2), (3,4), ... on odd ones. The chains run on
    the visible marginal, so a swap of states v_i (at beta_i) and v_j (at beta_j = beta_{i+1})
    is accepted with the Metropolis probability

        a = min(1, exp(F_i(v_i) + F_j(v_j) - F_i(v_j) - F_j(v_i))),
        F_beta(v) = -log sum_h exp(-beta E(v, h)) = beta E_v(v) + F_h(beta (s(v) W + c) - c),

    the tempered free energy with h summed out. (On joint states (v, h) the same rule reads
    min(1, exp((beta_i - beta_j)(E(x_i) - E(x_j)))); the marginal version is its
    Rao-Blackwellisation and accepts at least as often on average.) The beta = 1 states
    are the negative phase.

    State: ``chains`` (n_chains, K, n_visible), every temperature of a replica set in one
    row, so data-parallel runs shard rows (rank r keeps replica sets
    [r n / N, (r+1) n / N)) and swaps never cross ranks; ``accepted`` (n_chains, K - 1),
    the accepted swaps of each pair per replica set; ``updates``, the number of updates
    so far (it fixes the parity of the next swap round).

    Args:
        k: Gibbs sweeps per update.
        n_chains: replica sets (default: the batch size).
        betas: (K,) inverse temperatures, decreasing from 1 (``pt_betas``).
    """

    name = "pt"
    #: state whose rows are replica sets: gathered in checkpoints, sharded across ranks
    sharded_keys = ("chains", "accepted")

    def __init__(self, k: int = 1, *, n_chains: int | None = None, betas=None):
        from deepbelief.errors import ConfigError

        super().__init__(k, n_chains=n_chains)
        b = pt_betas() if betas is None else torch.as_tensor(betas, dtype=torch.float64).detach().cpu().reshape(-1)
        if b.numel() < 2 or float(b[0]) != 1.0 or not bool((b[1:] < b[:-1]).all()) or float(b[-1]) < 0.0:
            raise ConfigError(f"betas must decrease strictly from 1 to a value >= 0 (at least 2), got {b.tolist()}")
        self.betas = b
        self.accepted: Tensor | None = None
        self.updates = 0

    @property
    def n_temperatures(self) -> int:
        return self.betas.numel()

    def negative(self, rbm, v0, x0, gen):
        if self.chains is None:
            check_temperable(rbm)
            init = self._initial_chains(v0)  # (n, n_visible)
            self.chains = init.unsqueeze(1).repeat(1, self.n_temperatures, 1)
            self.accepted = torch.zeros(init.shape[0], self.n_temperatures - 1, dtype=torch.float64,
                                        device=init.device)
        self.chains = self.step(rbm, self.chains, gen)
        v = self.chains[:, 0].contiguous()
        return v, rbm.hidden_input(v)

    @torch.no_grad()
    def step(self, rbm: RBM, chains: Tensor, gen: torch.Generator | None) -> Tensor:
        """``k`` tempered Gibbs sweeps then one round of swaps: (n, K, n_v) -> (n, K, n_v)."""
        n, K, nv = chains.shape
        beta = self.betas.to(device=chains.device, dtype=chains.dtype)
        col = beta.repeat(n).unsqueeze(1)  # (n K, 1): rows are chain-major, temperature-minor
        v = chains.reshape(n * K, nv)
        cb, bb = rbm.hidden.bias, rbm.visible.bias
        for _ in range(self.k):
            # p_beta(h | v): total input beta (vW + c), i.e. interaction input beta vW + (beta - 1) c
            h = rbm.hidden.sample(col * rbm.hidden_input(v) + (col - 1) * cb, gen)
            v = rbm.visible.sample(col * rbm.visible_input(h) + (col - 1) * bb, gen)
        chains = v.reshape(n, K, nv)
        return self.swap(rbm, chains, gen)

    @torch.no_grad()
    def swap(self, rbm: RBM, chains: Tensor, gen: torch.Generator | None) -> Tensor:
        """One round of neighbour swaps on ``chains`` (n, K, n_v); counts acceptances."""
        from deepbelief.units.base import uniform

        n, K, nv = chains.shape
        parity = self.updates % 2
        self.updates += 1
        lo = torch.arange(parity, K - 1, 2, device=chains.device)
        if lo.numel() == 0:  # K = 2 on odd updates: no pair of this parity
            return chains
        hi = lo + 1
        beta = self.betas.to(device=chains.device, dtype=chains.dtype)
        # F_beta(v) = beta E_v(v) + F_h(beta x + (beta - 1) c): E_v and x = s(v) W once per state
        e = rbm.visible.energy(chains.reshape(n * K, nv)).reshape(n, K)
        x = rbm.hidden_input(chains.reshape(n * K, nv)).reshape(n, K, -1)
        cb = rbm.hidden.bias

        def f(rows, b):  # tempered free energy of the states in columns ``rows`` at betas b (P,)
            bb = b.view(1, -1, 1)
            return b * e[:, rows] + rbm.hidden.free_energy(bb * x[:, rows] + (bb - 1) * cb)

        b_lo, b_hi = beta[lo], beta[hi]
        log_a = f(lo, b_lo) + f(hi, b_hi) - f(hi, b_lo) - f(lo, b_hi)  # (n, P)
        u = uniform(log_a.shape, log_a, gen)
        acc = torch.log(u) < log_a  # (n, P); u = 0 gives -inf: accepted unless a = 0
        # one gather moves the states: column j of the result reads column idx[:, j]
        idx = torch.arange(K, device=chains.device).repeat(n, 1)
        idx[:, lo] = torch.where(acc, hi, lo)
        idx[:, hi] = torch.where(acc, lo, hi)
        if self.accepted is None or self.accepted.shape[0] != n:
            self.accepted = torch.zeros(n, K - 1, dtype=torch.float64, device=chains.device)
        self.accepted[:, lo] += acc.to(torch.float64)
        return chains.gather(1, idx.unsqueeze(-1).expand(n, K, nv))

    def swap_counts(self) -> tuple[Tensor, Tensor]:
        """(accepted, proposed): float64 (K - 1,) swap counts of each neighbour pair (i, i+1),
        summed over every replica set (all ranks in a data-parallel run: a collective)."""
        from deepbelief import distributed

        K = self.n_temperatures
        acc = (torch.zeros(K - 1, dtype=torch.float64) if self.accepted is None
               else self.accepted.sum(0).cpu())
        n = 0 if self.accepted is None else self.accepted.shape[0]
        glob = torch.cat([acc, torch.tensor([float(n)], dtype=torch.float64)])
        if distributed.world_size() > 1:
            dev = self.accepted.device if self.accepted is not None else "cpu"
            glob = distributed.all_reduce_sum_(glob.to(dev)).cpu()
        acc, n = glob[:-1], float(glob[-1])
        i = torch.arange(K - 1)
        rounds = torch.div(self.updates - i % 2 + 1, 2, rounding_mode="floor").clamp_min(0).to(torch.float64)
        return acc, rounds * n

    def swap_rates(self) -> list[float]:
        """Fraction of proposed swaps accepted for each neighbour pair (i, i+1) since the
        chains started (NaN for a pair not proposed yet), length K - 1."""
        acc, tried = self.swap_counts()
        return [a / t if t > 0 else float("nan") for a, t in zip(acc.tolist(), tried.tolist())]

    def state_dict(self):
        if self.chains is None:
            return {}
        return {"chains": self.chains, "accepted": self.accepted,
                "updates": torch.tensor([self.updates], dtype=torch.int64)}

    def load_state_dict(self, state):
        self.chains = state.get("chains")
        self.accepted = state.get("accepted")
        upd = state.get("updates")
        self.updates = 0 if upd is None else int(upd.reshape(-1)[0])

    def config(self):
        return {"method": self.name, "k": self.k, "n_chains": self.n_chains, "betas": self.betas.tolist()}


def tempered_free_energy(rbm: RBM, v: Tensor, beta: Tensor) -> Tensor:
    """F_beta(v) = -log sum_h exp(-beta E(v, h)) = beta E_v(v) + F_h(beta (s(v) W + c) - c)
    for linear-energy units (``check_temperable``). ``v`` (..., n_v) and ``beta``
    broadcastable to v's leading shape; returns shape (...)."""
    b = beta.unsqueeze(-1)
    x = rbm.hidden_input(v)
    return beta * rbm.visible.energy(v) + rbm.hidden.free_energy(b * x + (b - 1) * rbm.hidden.bias)


def swap_log_acceptance(rbm: RBM, v_i: Tensor, v_j: Tensor, beta_i: Tensor, beta_j: Tensor) -> Tensor:
    """log of the Metropolis ratio of exchanging v_i (at beta_i) and v_j (at beta_j):
    F_i(v_i) + F_j(v_j) - F_i(v_j) - F_j(v_i), shape of the leading dims. The acceptance
    probability is min(1, exp(.)) (Swendsen & Wang 1986; Desjardins et al. 2010)."""
    return (tempered_free_energy(rbm, v_i, beta_i) + tempered_free_energy(rbm, v_j, beta_j)
            - tempered_free_energy(rbm, v_j, beta_i) - tempered_free_energy(rbm, v_i, beta_j))


@torch.no_grad()
def pt_sample(
    rbm: RBM,
    n_samples: int,
    *,
    n_sweeps: int = 1000,
    betas=None,
    init: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, list[float]]:
    """Draw ``n_samples`` visible states from a trained RBM by parallel tempering.

    ``n_samples`` independent replica sets (each with K temperatures, ``betas``; default
    ``pt_betas()``: 10 linearly spaced) run ``n_sweeps`` updates of one Gibbs sweep and one
    round of neighbour swaps (``PT``); the beta = 1 states of the last update are returned.

    Args:
        rbm: the model (discrete linear-energy units, see ``check_temperable``).
        init: (n_samples, n_visible) starting states for every temperature (default: the
            factorised model of the visible biases, one draw per chain).
        generator: the run's generator on the model's device (None: a fresh one seeded 0).
    Returns:
        (samples (n_samples, n_visible), swap acceptance rate of each neighbour pair).
    """
    from deepbelief.errors import ConfigError

    check_temperable(rbm)
    n_samples = check_int("n_samples", n_samples, minimum=1)
    n_sweeps = check_int("n_sweeps", n_sweeps, minimum=1)
    dev = rbm.W.device
    if generator is None:
        generator = torch.Generator(device=dev).manual_seed(0)
    pt = PT(1, n_chains=n_samples, betas=betas)
    if init is None:
        zero = torch.zeros(n_samples, rbm.n_visible, device=dev, dtype=rbm.W.dtype)
        init = rbm.visible.sample(zero, generator)
    init = rbm.check_input("init", init)
    if init.shape[0] != n_samples:
        raise ConfigError(f"init must have n_samples ({n_samples}) rows, got {init.shape[0]}")
    chains = init.unsqueeze(1).repeat(1, pt.n_temperatures, 1)
    pt.chains, pt.accepted = chains, torch.zeros(n_samples, pt.n_temperatures - 1, dtype=torch.float64, device=dev)
    for _ in range(n_sweeps):
        pt.chains = pt.step(rbm, pt.chains, generator)
    return pt.chains[:, 0].contiguous(), pt.swap_rates()


def make_sampler(method: str = "cd", k: int = 1, *, sample_visible: bool = False, n_chains: int | None = None,
                 betas=None):
    """Build a sampler by name: ``cd``, ``pcd`` or ``pt`` (``betas``: its temperatures)."""
    from deepbelief.errors import check_choice

    check_choice("method", method, {"cd", "pcd", "pt"})
    if method == "pt":
        return PT(k, n_chains=n_chains, betas=betas)
    return CD(k, sample_visible=sample_visible) if method == "cd" else PCD(k, n_chains=n_chains)
