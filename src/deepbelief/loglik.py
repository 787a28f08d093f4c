"""The measurement entry point: an RBM's test log-likelihood or a DBN's variational bound,
by forward AIS (ais.py) and, beside it, the conservative reverse-AIS figure (reverse_ais.py),
with plain-language warnings when the estimates cannot be trusted."""

from __future__ import annotations

import math
import time
from typing import Callable

import torch

from deepbelief import reverse_ais
from deepbelief.ais import AISResult, ais_log_partition, rbm_log_likelihood
from deepbelief.bound import dbn_lower_bound, top_base_data
from deepbelief.errors import ConfigError, check_int


def model_rbms(model) -> list:
    """The RBMs of an ``RBM`` (one) or a ``DBN`` (its stack), bottom first."""
    if getattr(model, "kind", None) == "rbm":
        return [model]
    if hasattr(model, "rbms"):
        return list(model.rbms)
    raise ConfigError(f"model must be an RBM or a DBN for a log-likelihood, got kind {getattr(model, 'kind', None)!r}")


def evaluate_log_likelihood(
    model,
    train,
    test,
    *,
    n_runs: int = 100,
    betas=None,
    n_samples: int = 10,
    generator: torch.Generator | None = None,
    progress: Callable[[int, int], None] | None = None,
    n_conservative: int = 0,
) -> dict:
    """Test log-likelihood of an RBM, or the variational lower bound of a DBN, in nats.

    The top RBM's log Z is estimated by AIS with its base-rate model fitted to ``train``
    (passed up the stack); one RBM gives the average log p(v) of ``test``
    (``rbm_log_likelihood``), a stack of two or more the average bound
    (``dbn_lower_bound``). Returns a dict: ``measure`` ("log_likelihood" or "lower_bound"),
    ``value``, ``low`` and ``high`` (the AIS interval carried over, widened by 3 Monte
    Carlo standard errors for a bound), ``stderr``, ``n_test``, ``ais`` (the AISResult),
    ``seconds``, and ``warnings``: what makes the figure unreliable and what to raise.

    ``n_conservative`` > 0 adds ``conservative`` (and ``conservative_stderr``): the same
    measure by reverse AIS (reverse_ais.py) on the first ``n_conservative`` test rows, one
    chain each, with the same schedule, a stochastic lower bound; with the forward figure
    it brackets the truth, so a wide gap between the two says the estimates are unreliable.
    """
    t0 = time.perf_counter()
    rbms = model_rbms(model)
    device = rbms[0].W.device
    if generator is None:
        generator = torch.Generator(device=device).manual_seed(0)
    test = rbms[0].check_input("test", test, device=device)
    base = top_base_data(rbms, rbms[0].check_input("train", train, device=device))
    res = ais_log_partition(rbms[-1], n_runs=n_runs, betas=betas, base_data=base, generator=generator,
                            progress=progress)
    down, up = res.uncertainty
    if len(rbms) == 1:
        value, stderr, measure = rbm_log_likelihood(rbms[0], test, res), 0.0, "log_likelihood"
    else:
        b = dbn_lower_bound(rbms, test, res, n_samples=n_samples, generator=generator)
        value, stderr, measure = b.value, b.stderr, "lower_bound"
    # a larger log Z means a lower log-likelihood: the interval flips
    out = {"measure": measure, "value": value, "low": value - up - 3 * stderr, "high": value + down + 3 * stderr,
           "stderr": stderr, "n_test": int(test.shape[0]), "n_layers": len(rbms), "ais": res}
    if n_conservative:
        sub = test[: check_int("n_conservative", n_conservative, minimum=0)]
        if len(rbms) == 1:
            rv = reverse_ais.raise_log_prob(rbms[0], sub, betas=betas, base_data=base, generator=generator)
        else:
            rv = reverse_ais.raise_dbn_lower_bound(rbms, sub, betas=betas, base_data=base, generator=generator)
        out.update(conservative=rv.value, conservative_stderr=rv.stderr, n_conservative=int(sub.shape[0]))
    out["warnings"] = reliability_warnings(res, out)
    out["seconds"] = time.perf_counter() - t0
    return out


def reliability_warnings(res: AISResult, out: dict) -> list[str]:
    """Plain-language reasons not to trust a log-likelihood figure, each naming what to raise."""
    warn = []
    if res.ess < 0.1 * res.n_runs:
        warn.append(f"AIS effective sample size {res.ess:.1f} is below 10% of the {res.n_runs} runs: the log Z "
                    f"estimate rests on a few runs; raise the number of runs (--ais-runs) or temperatures (--ais-betas)")
    if not (math.isfinite(out["low"]) and math.isfinite(out["high"])):
        warn.append("the AIS interval is open (mean weight - 3 standard errors <= 0): the figure has no error bar; "
                    "raise the number of runs (--ais-runs) or temperatures (--ais-betas)")
    if "conservative" in out and out["value"] - out["conservative"] > 1.0 + 3 * out["conservative_stderr"]:
        warn.append(f"forward AIS ({out['value']:.2f}) and reverse AIS ({out['conservative']:.2f}) disagree by more "
                    f"than 1 nat: the truth lies between them; raise the temperatures (--ais-betas)")
    return warn
