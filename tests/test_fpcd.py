"""Fast PCD (fpcd.FPCD): its chains sample the model with theta + theta_f (exact enumeration),
the fast weights follow their recurrence, fast_lr = 0 is PCD, and training resumes bit for bit."""

import pytest
import torch

from deepbelief import exact
from deepbelief.errors import ConfigError
from deepbelief.fpcd import FPCD
from deepbelief.rbm import RBM
from deepbelief.trainer import RBMTrainer
from deepbelief.training import RBMTrainConfig, train_rbm


def tiny(seed=0, nv=4, nh=3, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    r = RBM(nv, nh, generator=g).double()
    with torch.no_grad():
        r.W.copy_(scale * torch.randn(nv, nh, generator=g, dtype=torch.float64))
        r.visible.bias.copy_(0.5 * torch.randn(nv, generator=g, dtype=torch.float64))
        r.hidden.bias.copy_(0.5 * torch.randn(nh, generator=g, dtype=torch.float64))
    return r


def histogram(v):
    codes = (v.long() * (2 ** torch.arange(v.shape[1] - 1, -1, -1))).sum(1)
    return torch.bincount(codes, minlength=2 ** v.shape[1]).double() / v.shape[0]


def test_chains_sample_the_model_with_the_fast_weights_added():
    rbm, fast = tiny(0), tiny(1, scale=1.5)  # fast weights as large as the regular ones
    s = FPCD(k=1, n_chains=4000)
    s.fast = {n: p.detach().clone() for n, p in fast.named_parameters()}
    both = tiny(0)
    with torch.no_grad():
        for p, f in zip(both.parameters(), fast.parameters()):
            p.add_(f)
    gen = torch.Generator().manual_seed(2)
    v0 = (torch.rand(4000, 4, generator=gen, dtype=torch.float64) < 0.5).double()
    for _ in range(30):  # burn-in: the chains forget their start
        v, x = s.negative(rbm, v0, None, gen)
    counts = torch.zeros(16, dtype=torch.float64)
    n_draws = 20
    for _ in range(n_draws):
        v, x = s.negative(rbm, v0, None, gen)
        counts += histogram(v)
    counts /= n_draws
    _, p_both = exact.visible_distribution(both)
    _, p_rbm = exact.visible_distribution(rbm)
    # total variation against the oracle, with a 3-sigma bound as if the 80,000 states were
    # independent, doubled for the chains' autocorrelation between draws
    n = 4000 * n_draws
    bound = 2 * 3 * 0.5 * float(torch.sqrt(p_both * (1 - p_both) / n).sum())
    assert 0.5 * float((counts - p_both).abs().sum()) <= bound
    assert 0.5 * float((p_both - p_rbm).abs().sum()) > 10 * bound  # the test can tell the two apart
    torch.testing.assert_close(x, rbm.hidden_input(v))  # statistics under the regular parameters


def test_fast_weights_follow_their_recurrence():
    rbm = tiny(3, nv=6, nh=4).float()
    cfg = RBMTrainConfig(method="fpcd", lr=0.05, fast_lr=0.2, fast_decay=0.9, momentum=0.0, final_momentum=0.0,
                         weight_decay=1e-3, batch_size=8, epochs=1)
    t = RBMTrainer(rbm, cfg, torch.Generator().manual_seed(4))
    data = (torch.rand(16, 6, generator=torch.Generator().manual_seed(5)) < 0.5).float()
    before = {n: p.detach().clone() for n, p in rbm.named_parameters()}
    t.step(data[:8], cfg.lr, 0.0)
    # momentum 0 from zero velocities: the regular step is lr g, so the fast weights are fast_lr g
    g1 = {n: (p.detach() - before[n]) / cfg.lr for n, p in rbm.named_parameters()}
    for n, g in g1.items():
        torch.testing.assert_close(t.sampler.fast[n], cfg.fast_lr * g, rtol=1e-4, atol=1e-6)
    mid = {n: p.detach().clone() for n, p in rbm.named_parameters()}
    t.step(data[8:], cfg.lr, 0.0)
    for n, p in rbm.named_parameters():
        g2 = (p.detach() - mid[n]) / cfg.lr
        torch.testing.assert_close(t.sampler.fast[n], cfg.fast_decay * cfg.fast_lr * g1[n] + cfg.fast_lr * g2,
                                   rtol=1e-4, atol=1e-6)


def _train(method, epochs=3, ck=None, resume=False, seed=6, **kw):
    data = (torch.rand(80, 8, generator=torch.Generator().manual_seed(0)) < 0.4).float()
    cfg = RBMTrainConfig(epochs=epochs, batch_size=10, method=method, n_chains=10, lr=0.05, **kw)
    gen = torch.Generator().manual_seed(seed)
    rbm = RBM(8, 5, generator=gen)
    train_rbm(rbm, data, cfg, generator=gen, checkpoint=ck, resume=resume)
    return rbm


def test_fast_lr_zero_is_pcd():
    pcd, fpcd = _train("pcd"), _train("fpcd", fast_lr=0.0)
    # the same chains and updates; PCD takes the fused binary step, FPCD the general one
    torch.testing.assert_close(fpcd.W, pcd.W, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(_train("fpcd").W, pcd.W, atol=1e-3)  # the default fast_lr = lr moves it


def test_training_resumes_bit_for_bit(tmp_path):
    straight = _train("fpcd", epochs=3)
    ck = tmp_path / "ck.safetensors"
    _train("fpcd", epochs=1, ck=ck)
    resumed = _train("fpcd", epochs=3, ck=ck, resume=True, seed=99)
    assert torch.equal(resumed.W, straight.W)
    assert torch.equal(resumed.hidden.bias, straight.hidden.bias)


@pytest.mark.parametrize("field,value,said", [("fast_decay", 1.5, "fast_decay"), ("fast_lr", -0.1, "fast_lr"),
                                              ("method", "fastpcd", "method")])
def test_bad_settings_are_named(field, value, said):
    with pytest.raises(ConfigError, match=said):
        RBMTrainConfig(**{"method": "fpcd", field: value}).validate()
    assert RBMTrainConfig(method="fpcd", k=1, k_final=5).validate().k_final == 5
