"""The fused training step against the plain update rule, and the matmul precisions.

Oracles: (1) a direct transcription of the update rule (Hinton's practical guide) built
from ``RBM.free_energy_grad``, whose correctness tests/test_rbm.py checks against
autograd, replayed with the same generator; (2) a rounding-error bound for bf16
matrix multiplies; (3) the exact log-likelihood (enumeration) of tiny models trained in
fp32 and bf16.
"""

import pytest
import torch

from deepbelief import exact
from deepbelief.errors import ConfigError
from deepbelief.precision import UNIT_ROUNDOFF, check_precision, matmul_precision
from deepbelief.rbm import RBM
from deepbelief.sampling import make_sampler
from deepbelief.training import RBMTrainConfig, RBMTrainer
from deepbelief.units import Bernoulli, Gaussian, Joint, Softmax


def reference_run(rbm, cfg, batches, seed, schedule):
    """The update rule written out plainly, one parameter at a time (no fusion)."""
    gen = torch.Generator().manual_seed(seed)
    sampler = make_sampler(cfg.method, cfg.k, sample_visible=cfg.sample_visible, n_chains=cfg.n_chains)
    params = {n: p for n, p in rbm.named_parameters() if p.requires_grad}
    vel = {n: torch.zeros_like(p) for n, p in params.items()}
    scales = rbm.lr_scales()
    q = None
    with torch.no_grad():
        for v0, (lr, mom) in zip(batches, schedule):
            x0 = rbm.hidden_input(v0)
            vn, xn = sampler.negative(rbm, v0, x0, gen)
            pos, neg = rbm.free_energy_grad(v0, x0), rbm.free_energy_grad(vn, xn)
            grads = {n: neg[n] / vn.shape[0] - pos[n] / v0.shape[0] for n in params}
            grads["W"] = grads["W"] - cfg.weight_decay * params["W"]
            if cfg.sparsity_target is not None:
                act = rbm.hidden.mean(x0).mean(0)
                q = act if q is None else cfg.sparsity_decay * q + (1 - cfg.sparsity_decay) * act
                d = (cfg.sparsity_target - q) * cfg.sparsity_cost
                grads["hidden.bias"] = grads["hidden.bias"] + d
                grads["W"] = grads["W"] + torch.outer(rbm.visible.scale(v0).mean(0), d)
            for n, p in params.items():
                vel[n] = mom * vel[n] + lr * scales.get(n, 1.0) * grads[n]
                p.add_(vel[n])
            rbm.constrain_()
    return rbm, gen


CASES = {
    "cd1-decay-momentum": dict(),
    "cd3-sampled-visible": dict(k=3, sample_visible=True),
    "pcd-more-chains": dict(method="pcd", n_chains=12),
    "pcd2": dict(method="pcd", k=2),
    "sparsity": dict(sparsity_target=0.1, sparsity_cost=0.5),
    "gaussian-visible": dict(visible="gaussian"),
    "joint-visible": dict(visible="joint"),
}


def _visible(kind):
    if kind == "gaussian":
        return Gaussian(7)
    if kind == "joint":  # features + a one-hot label, as in the top RBM of a labelled DBN
        return Joint([Bernoulli(4), Softmax(3)])
    return 7


@pytest.mark.parametrize("case", sorted(CASES))
def test_fused_step_equals_plain_update_rule(case):
    opts = dict(CASES[case])
    kind = opts.pop("visible", None)
    g = torch.Generator().manual_seed(3)
    data = (torch.rand(40, 7, generator=g, dtype=torch.float64) < 0.4).double()
    if kind == "gaussian":
        data = torch.randn(40, 7, generator=g, dtype=torch.float64)
    if kind == "joint":
        data[:, 4:] = torch.nn.functional.one_hot(torch.randint(3, (40,), generator=g), 3).double()
    cfg = RBMTrainConfig(weight_decay=0.01, lr=0.05, **opts)
    mk = lambda: RBM(_visible(kind), 5, weight_std=0.3, generator=torch.Generator().manual_seed(0)).double()
    batches = [data[i : i + 8] for i in range(0, 40, 8)] * 2
    schedule = [(0.05, 0.5)] * 5 + [(0.03, 0.9)] * 5
    fast = mk()
    trainer = RBMTrainer(fast, cfg, torch.Generator().manual_seed(1))
    for v0, (lr, mom) in zip(batches, schedule):
        trainer.step(v0, lr, mom)
    ref, ref_gen = reference_run(mk(), cfg, batches, 1, schedule)
    for (name, p), (_, r) in zip(fast.named_parameters(), ref.named_parameters()):
        assert torch.allclose(p, r, atol=1e-12, rtol=0), name
    # and the generator was consumed identically: the next draws agree
    assert torch.equal(torch.rand(4, generator=trainer.gen), torch.rand(4, generator=ref_gen))


@pytest.mark.parametrize("case", ["cd1-decay-momentum", "cd3-sampled-visible", "pcd-more-chains", "pcd2"])
def test_binary_fast_path_is_taken_and_equals_general_path(case):
    """Binary units take ``cd_fast.binary_cd_step``; forcing the general path gives the same
    weights and the same generator state (both are checked against the plain rule above)."""
    g = torch.Generator().manual_seed(5)
    data = (torch.rand(64, 9, generator=g) < 0.4).float()
    cfg = RBMTrainConfig(epochs=3, batch_size=16, weight_decay=0.01, **CASES[case])
    runs = []
    for fast in (True, False):
        gen = torch.Generator().manual_seed(2)
        rbm = RBM(9, 6, weight_std=0.3, generator=torch.Generator().manual_seed(0))
        trainer = RBMTrainer(rbm, cfg, gen)
        assert trainer._fast  # the fast path applies to this configuration
        trainer._fast = fast
        trainer.fit(data)
        runs.append(([p.detach().clone() for p in rbm.parameters()], torch.rand(3, generator=gen)))
    for a, b in zip(runs[0][0], runs[1][0]):
        assert torch.allclose(a, b, atol=1e-6, rtol=0)
    assert torch.equal(runs[0][1], runs[1][1])


def test_bf16_matmul_within_rounding_bound():
    g = torch.Generator().manual_seed(0)
    r = RBM(50, 30, weight_std=0.5, generator=g)
    v = (torch.rand(20, 50, generator=g) < 0.5).float()
    with torch.no_grad():
        x32 = r.hidden_input(v)
    with torch.no_grad(), matmul_precision("bf16", "cpu"):
        xbf = r.hidden_input(v).float()
    u = UNIT_ROUNDOFF["bf16"]
    # inputs rounded to bf16 (v is exact: 0/1), fp32 accumulation; the bf16 *output*
    # rounding of autocast adds one more u * |x|, and fp32 accumulation 50 * 2^-24 * |v||W|
    bound = (2 * u + u * u + 50 * 2.0**-24) * (v.abs() @ r.W.abs()) + u * x32.abs()
    err = (xbf - x32).abs()
    assert bool((err <= bound + 1e-7).all()), float((err - bound).max())
    assert float(err.max()) > 0  # bf16 really ran (it is not silently fp32)


def _train_tiny(precision):
    g = torch.Generator().manual_seed(7)
    probs = torch.rand(8, generator=g)
    data = (torch.rand(200, 8, generator=g) < probs).float()
    rbm = RBM(8, 4, generator=torch.Generator().manual_seed(0))
    cfg = RBMTrainConfig(epochs=4, batch_size=20, lr=0.1, precision=precision)
    RBMTrainer(rbm, cfg, torch.Generator().manual_seed(1)).fit(data)
    r64 = rbm.double()
    with torch.no_grad():
        return float((-r64.free_energy(data.double()) - exact.log_partition(r64)).mean())


def test_bf16_training_matches_fp32_log_likelihood():
    """Trained in bf16 and fp32 with the same seed, tiny models reach the same exact
    average log-likelihood within 0.02 nats: bf16 rounding (relative 2^-9) perturbs the
    conditionals by about 1e-3, far below the sampling noise of CD at batch 20."""
    ll32, llbf = _train_tiny("fp32"), _train_tiny("bf16")
    assert ll32 > -8 * torch.log(torch.tensor(2.0)).item() + 0.3  # learned: beats the uniform model
    assert abs(ll32 - llbf) < 0.02, (ll32, llbf)


def test_precision_errors_name_the_value():
    with pytest.raises(ConfigError, match="precision.*'fp16'"):
        RBMTrainConfig(precision="fp16").validate()
    with pytest.raises(ConfigError, match="tf32.*CUDA.*'cpu'"):
        check_precision("tf32", "cpu")
    with pytest.raises(ConfigError, match="tf32"):
        RBMTrainer(RBM(4, 3), RBMTrainConfig(precision="tf32"), torch.Generator())


def test_cli_precision_flag_reaches_the_trainer(capsys, tmp_path):
    from deepbelief.cli import main

    rc = main(["train", "--device", "cpu", "--precision", "tf32", "--epochs", "1", "--finetune-epochs", "0",
               "-o", str(tmp_path / "m.safetensors"), "--quiet"])
    assert rc == 2
    assert "precision 'tf32' needs a CUDA device" in capsys.readouterr().err
