"""The RBM's maths against exact enumeration on tiny models (6 visible x 4 hidden)."""

import math

import pytest
import torch

from deepbelief import exact
from deepbelief.rbm import RBM
from deepbelief.units import Bernoulli, Gaussian, Joint, Softmax

from _models import tiny_rbm


tiny = tiny_rbm


def test_free_energy_equals_enumerated_sum():
    r = tiny()
    vs = exact.all_binary(6)
    hs = exact.all_binary(4)
    for v in vs[::7]:
        e = torch.stack([r.energy(v[None], h[None])[0] for h in hs])
        expected = -torch.logsumexp(-e, 0)
        assert torch.allclose(r.free_energy(v[None])[0], expected, atol=1e-12)
    for h in hs:
        e = torch.stack([r.energy(v[None], h[None])[0] for v in vs])
        assert torch.allclose(r.free_energy_hidden(h[None])[0], -torch.logsumexp(-e, 0), atol=1e-12)


def test_log_partition_same_over_either_layer():
    r = tiny(1)
    assert exact.log_partition(r, over="visible") == pytest.approx(exact.log_partition(r, over="hidden"), abs=1e-10)


def test_conditionals_match_enumeration():
    r = tiny(2)
    vs, hs, p = exact.joint_distribution(r)
    # p(h_j = 1 | v) = sum_h h_j P(v, h) / P(v)
    ph_enum = (p @ hs) / p.sum(1, keepdim=True)
    assert torch.allclose(r.mean_hidden(vs), ph_enum, atol=1e-12)
    pv_enum = (p.T @ vs) / p.sum(0).unsqueeze(1)
    assert torch.allclose(r.mean_visible(hs), pv_enum, atol=1e-12)


def test_softmax_joint_free_energy_matches_enumeration():
    vis = Joint([Bernoulli(3), Softmax(3)])
    r = tiny(3, visible=vis, hidden=Bernoulli(4))
    vs = exact.layer_states(r.visible)
    assert vs.shape == (8 * 3, 6) and torch.all(vs[:, 3:].sum(1) == 1)
    hs = exact.all_binary(4)
    for v in vs:
        e = torch.stack([r.energy(v[None], h[None])[0] for h in hs])
        assert torch.allclose(r.free_energy(v[None])[0], -torch.logsumexp(-e, 0), atol=1e-12)
    # Z over visible states (softmax rows one-hot) equals Z over hidden states
    assert exact.log_partition(r, over="visible") == pytest.approx(exact.log_partition(r, over="hidden"), abs=1e-10)


PAIRINGS = {
    "bernoulli-bernoulli": (lambda: Bernoulli(5), lambda: Bernoulli(4)),
    "gaussian-bernoulli": (lambda: Gaussian(5), lambda: Bernoulli(4)),
    "gaussian_fixed-bernoulli": (lambda: Gaussian(5, learn_var=False), lambda: Bernoulli(4)),
    "joint-bernoulli": (lambda: Joint([Bernoulli(3), Softmax(2)]), lambda: Bernoulli(4)),
    "bernoulli-gaussian": (lambda: Bernoulli(5), lambda: Gaussian(4)),
    "bernoulli-softmax": (lambda: Bernoulli(5), lambda: Softmax(4)),
}


@pytest.mark.parametrize("name", sorted(PAIRINGS))
def test_free_energy_gradient_matches_autograd(name):
    mk_v, mk_h = PAIRINGS[name]
    r = tiny(4, visible=mk_v(), hidden=mk_h(), scale=0.5)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        if hasattr(r.visible, "log_var"):
            r.visible.log_var.copy_(torch.randn(5, generator=g, dtype=torch.float64) * 0.3)
        if hasattr(r.hidden, "log_var"):
            r.hidden.log_var.copy_(torch.randn(4, generator=g, dtype=torch.float64) * 0.3)
    v = r.sample_visible(torch.rand(7, r.n_hidden, generator=g, dtype=torch.float64).round(), g)
    if name.startswith("bernoulli-") or name.startswith("joint"):
        v = r.sample_visible(r.sample_hidden(v, g), g)
    v = v.detach()
    hand = r.free_energy_grad(v)
    params = dict(r.named_parameters())
    auto = torch.autograd.grad(r.free_energy(v).sum(), [p for p in params.values() if p.requires_grad])
    auto = dict(zip([k for k, p in params.items() if p.requires_grad], auto))
    assert set(hand) == set(auto)
    for k in auto:
        assert torch.allclose(hand[k], auto[k], atol=1e-10), k


def test_cd_step_is_free_energy_difference_gradient():
    """One trainer step with lr=1, no momentum/decay moves the parameters by exactly
    -(dF(v0) - dF(v_neg)) / batch, which autograd computes independently."""
    from deepbelief.sampling import CD
    from deepbelief.training import RBMTrainConfig, RBMTrainer

    r = tiny(6).float()
    before = {k: p.detach().clone() for k, p in r.named_parameters()}
    g = torch.Generator().manual_seed(0)
    v0 = (torch.rand(8, 6, generator=g) < 0.5).float()
    cfg = RBMTrainConfig(lr=1.0, momentum=0.0, final_momentum=0.0, weight_decay=0.0)
    t = RBMTrainer(r, cfg, torch.Generator().manual_seed(1))
    # replay the sampler with the same generator state to get v_neg
    r_copy = tiny(6).float()
    with torch.no_grad():
        vn, _ = CD(1).negative(r_copy, v0, r_copy.hidden_input(v0), torch.Generator().manual_seed(1))
    t.step(v0, lr=1.0, momentum=0.0)
    params = dict(r_copy.named_parameters())
    loss = (r_copy.free_energy(v0).sum() - r_copy.free_energy(vn).sum()) / 8
    auto = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
    for k, p in r.named_parameters():
        assert torch.allclose(p.detach() - before[k], -auto[k], atol=1e-5), k


def test_monte_carlo_conditionals_match_means():
    r = tiny(7).float()
    g = torch.Generator().manual_seed(3)
    v = (torch.rand(1, 6, generator=g) < 0.5).float().expand(40000, 6)
    p = r.mean_hidden(v[:1])[0]
    s = r.sample_hidden(v, g).mean(0)
    se = torch.sqrt(p * (1 - p) / v.shape[0])
    assert torch.all((s - p).abs() < 5 * se + 1e-6)
    h = (torch.rand(1, 4, generator=g) < 0.5).float().expand(40000, 4)
    q = r.mean_visible(h[:1])[0]
    s = r.sample_visible(h, g).mean(0)
    assert torch.all((s - q).abs() < 5 * torch.sqrt(q * (1 - q) / 40000) + 1e-6)


def test_softmax_sampling_frequencies():
    u = Softmax(4)
    with torch.no_grad():
        u.bias.copy_(torch.tensor([0.0, 1.0, -1.0, 0.5]))
    g = torch.Generator().manual_seed(0)
    n = 50000
    s = u.sample(torch.zeros(n, 4), g)
    assert torch.all(s.sum(1) == 1)
    p = torch.softmax(u.bias.detach(), 0)
    assert torch.all((s.mean(0) - p).abs() < 5 * torch.sqrt(p * (1 - p) / n))


def test_gibbs_chain_converges_to_exact_distribution():
    """Total variation between the empirical distribution of many parallel chains and the
    enumerated p(v) is below a threshold computed from the sample size."""
    r = tiny(8, scale=0.7).float()
    states, p = exact.visible_distribution(r)
    g = torch.Generator().manual_seed(0)
    n = 40000
    v = (torch.rand(n, 6, generator=g) < 0.5).float()
    v = r.gibbs(v, steps=60, gen=g)
    codes = (v.long() * (2 ** torch.arange(5, -1, -1))).sum(1)
    counts = torch.bincount(codes, minlength=64).double() / n
    tv = 0.5 * (counts - p).abs().sum()
    # E[TV] for a multinomial sample is about sum sqrt(p(1-p)/n) * sqrt(2/pi) / 2
    bound = 3 * 0.5 * float(torch.sqrt(p * (1 - p) / n).sum())
    assert float(tv) < bound


def test_pcd_long_chains_match_exact_gradient():
    """With many long persistent chains the PCD negative statistics converge to the model
    expectation; compare the gradient estimate with the exact one within 5 standard errors."""
    r = tiny(9, scale=0.5).float()
    data = (torch.rand(20, 6, generator=torch.Generator().manual_seed(1)) < 0.3).double()
    ex = exact.log_likelihood_grad(r, data)
    g = torch.Generator().manual_seed(2)
    n = 20000
    v = r.gibbs((torch.rand(n, 6, generator=g) < 0.5).float(), steps=100, gen=g).double()
    rd = r.double()
    neg_rows = -(v.unsqueeze(2) * rd.mean_hidden(v).unsqueeze(1))  # per-sample dF/dW
    pos = rd.free_energy_grad(data)
    est_w = neg_rows.mean(0) - pos["W"] / 20
    se = neg_rows.std(0) / math.sqrt(n)
    assert torch.all((est_w - ex["W"]).abs() < 5 * se + 1e-9)


def test_training_raises_exact_log_likelihood():
    from deepbelief.training import RBMTrainConfig, train_rbm

    g = torch.Generator().manual_seed(0)
    protos = torch.tensor([[1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]], dtype=torch.float32)
    idx = torch.randint(0, 2, (200,), generator=g)
    data = protos[idx]
    flip = (torch.rand(200, 6, generator=g) < 0.05).float()
    data = (data + flip) % 2
    r = RBM(6, 4, generator=torch.Generator().manual_seed(0))
    ll0 = float(exact.log_prob(r, data).mean())
    train_rbm(r, data, RBMTrainConfig(epochs=30, batch_size=10, lr=0.1), generator=torch.Generator().manual_seed(1))
    ll1 = float(exact.log_prob(r, data).mean())
    assert ll1 > ll0 + 1.0
    # the data's entropy bounds the achievable log-likelihood from above
    assert ll1 < 0


def test_same_seed_same_weights():
    from deepbelief.training import RBMTrainConfig, train_rbm

    data = (torch.rand(100, 6, generator=torch.Generator().manual_seed(0)) < 0.4).float()
    out = []
    for _ in range(2):
        gen = torch.Generator().manual_seed(42)
        r = RBM(6, 4, generator=gen)
        train_rbm(r, data, RBMTrainConfig(epochs=3, batch_size=10, method="pcd"), generator=gen)
        out.append(r.W.detach().clone())
    assert torch.equal(out[0], out[1])


def test_k_final_raises_gibbs_steps_linearly():
    """k_final: epoch e runs round(k + (k_final - k) * e / (epochs - 1)) Gibbs steps, the same
    updates as a run whose sampler is given those step counts by hand (Salakhutdinov &
    Murray's CD-25 schedule); k_final == k is the constant-k run, bit for bit."""
    from deepbelief.trainer import RBMTrainer
    from deepbelief.training import RBMTrainConfig, train_rbm

    cfg = RBMTrainConfig(epochs=5, k=1, k_final=25)
    assert [cfg.k_at(e) for e in range(5)] == [1, 7, 13, 19, 25]
    data = (torch.rand(60, 6, generator=torch.Generator().manual_seed(0)) < 0.4).float()

    def run(method, k, k_final, by_hand=False):
        gen = torch.Generator().manual_seed(3)
        r = RBM(6, 4, generator=gen)
        c = RBMTrainConfig(epochs=3, batch_size=10, method=method, k=k, k_final=k_final)
        trainer = RBMTrainer(r, c, gen)
        seen = []

        def cb(epoch, m):
            seen.append(m.get("k"))
            if by_hand:
                trainer.sampler.k = epoch + 2  # the next epoch's steps: 2, then 3
        trainer.fit(data, callback=cb)
        return r.W.detach().clone(), seen

    for method in ("cd", "pcd"):
        w_ramp, seen = run(method, 1, 3)
        assert seen == [1, 2, 3]
        w_hand, _ = run(method, 1, None, by_hand=True)
        assert torch.equal(w_ramp, w_hand)
        assert not torch.equal(w_ramp, run(method, 1, None)[0])
        assert torch.equal(run(method, 2, 2)[0], run(method, 2, None)[0])
    from deepbelief.errors import ConfigError

    with pytest.raises(ConfigError, match="k_final"):
        RBMTrainConfig(k_final=0).validate()
    with pytest.raises(ConfigError, match="k_final"):
        train_rbm(RBM(6, 4), data, RBMTrainConfig(method="pt", k_final=3), generator=torch.Generator())


def test_k_ramp_epochs_reaches_k_final_early_and_keeps_it():
    """k_ramp_epochs R: k moves linearly to k_final over epochs 0..R-1, then stays there; R at
    least the run's epochs is the whole-run ramp; the trainer runs exactly those steps."""
    from deepbelief.errors import ConfigError
    from deepbelief.trainer import RBMTrainer
    from deepbelief.training import RBMTrainConfig

    cfg = RBMTrainConfig(epochs=8, k=1, k_final=25, k_ramp_epochs=3)
    assert [cfg.k_at(e) for e in range(8)] == [1, 13, 25, 25, 25, 25, 25, 25]
    assert [RBMTrainConfig(epochs=4, k=1, k_final=4, k_ramp_epochs=1).k_at(e) for e in range(4)] == [4] * 4
    whole = RBMTrainConfig(epochs=5, k=1, k_final=25)
    for r in (5, 9):
        longer = RBMTrainConfig(epochs=5, k=1, k_final=25, k_ramp_epochs=r)
        assert [longer.k_at(e) for e in range(5)] == [whole.k_at(e) for e in range(5)]
    data = (torch.rand(40, 6, generator=torch.Generator().manual_seed(0)) < 0.4).float()
    seen = []
    c = RBMTrainConfig(epochs=4, batch_size=10, k=1, k_final=3, k_ramp_epochs=2)
    RBMTrainer(RBM(6, 4, generator=torch.Generator().manual_seed(1)), c, torch.Generator().manual_seed(2)).fit(
        data, callback=lambda e, m: seen.append(m["k"]))
    assert seen == [1, 3, 3, 3]
    with pytest.raises(ConfigError, match="k_ramp_epochs"):
        RBMTrainConfig(k_final=3, k_ramp_epochs=0).validate()
    with pytest.raises(ConfigError, match="k_ramp_epochs .* needs k_final"):
        RBMTrainConfig(k_ramp_epochs=3).validate()


def test_cd_k_steps_are_a_gibbs_chain_with_only_the_last_reconstruction_a_mean():
    """CD-k's negative statistic, by enumeration: k - 1 full Gibbs steps from v0 (binary visible
    states, transition T = P(h | v) P(v' | h)), then h ~ P(h | v_{k-1}) and the reconstruction
    m(h) = E[v | h] with its hidden probabilities, E[m(h) sigmoid(m(h) W + c)^T]; the sample
    average over 20,000 chains lies within 4.5 standard errors of it. The same steps with means
    in place of the intermediate visible states (what CD-k did before 2026-12-06) give a statistic
    far outside that tolerance, so the test can tell the two apart."""
    import itertools

    from deepbelief.sampling import CD

    g = torch.Generator().manual_seed(11)
    nv, nh, k, n = 3, 2, 3, 20_000
    rbm = RBM(nv, nh, generator=g).double()
    with torch.no_grad():
        rbm.W.copy_(torch.randn(nv, nh, generator=g, dtype=torch.float64) * 2.0)
        rbm.visible.bias.copy_(torch.randn(nv, generator=g, dtype=torch.float64))
        rbm.hidden.bias.copy_(torch.randn(nh, generator=g, dtype=torch.float64))
    W, b, c = rbm.W.detach(), rbm.visible.bias.detach(), rbm.hidden.bias.detach()
    V = torch.tensor(list(itertools.product([0.0, 1.0], repeat=nv)), dtype=torch.float64)
    H = torch.tensor(list(itertools.product([0.0, 1.0], repeat=nh)), dtype=torch.float64)

    def cond(states, p):  # P(states | p) for factorial Bernoulli probabilities p (rows) -> (rows, states)
        return (p[:, None, :] ** states * (1 - p[:, None, :]) ** (1 - states)).prod(-1)

    A = cond(H, torch.sigmoid(V @ W + c))      # P(h | v), (8, 4)
    m = torch.sigmoid(H @ W.T + b)             # E[v | h], (4, 3)
    T = A @ cond(V, m)                          # one full Gibbs step v -> v', (8, 8)
    v0 = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    d = (V == v0).all(1).double() @ torch.linalg.matrix_power(T, k - 1)  # law of v_{k-1}
    ph = d @ A                                                            # law of h_{k-1}
    per_h = m[:, :, None] * torch.sigmoid(m @ W + c)[:, None, :]          # the statistic given h, (4, 3, 2)
    exact_stat = (ph[:, None, None] * per_h).sum(0)
    sd = ((ph[:, None, None] * per_h ** 2).sum(0) - exact_stat ** 2).clamp_min(0).sqrt()

    vs = v0.expand(n, nv).contiguous()
    vn, xn = CD(k).negative(rbm, vs, rbm.hidden_input(vs), torch.Generator().manual_seed(5))
    with torch.no_grad():
        mc = vn.T @ rbm.hidden.mean(xn) / n  # the unit adds its bias to the input
    assert ((mc - exact_stat).abs() <= 4.5 * sd / math.sqrt(n) + 1e-12).all(), (mc, exact_stat)

    # the old steps: h_j ~ P(h | m_j) with m_0 = v0 and m_{j+1} = E[v | h_j]; enumerate the h paths
    old = torch.zeros(nv, nh, dtype=torch.float64)
    for path in itertools.product(range(len(H)), repeat=k):
        prob, mv = 1.0, v0
        for j in path:
            q = torch.sigmoid(mv @ W + c)
            prob = prob * float((q ** H[j] * (1 - q) ** (1 - H[j])).prod())
            mv = m[j]
        old += prob * mv[:, None] * torch.sigmoid(mv @ W + c)[None, :]
    assert ((old - exact_stat).abs() > 10 * sd / math.sqrt(n)).any()
