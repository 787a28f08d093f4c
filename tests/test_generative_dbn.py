"""The labelled generative DBN and contrastive wake-sleep against exact oracles.

Tiny models (a few units per layer) are enumerated exactly: p(label | features) by summing
the top RBM's energy over every hidden state, the top RBM's distribution over every
visible state, and the DBN's p(image, label) over every state of the layer below the top.
"""

import copy
import dataclasses
import math

import pytest
import torch

from deepbelief import exact
from deepbelief.dbn import GenerativeDBN
from deepbelief.stacking import pretrain_generative
from deepbelief.errors import ConfigError, DataError
from deepbelief.io import load_model, save_model
from deepbelief.rbm import RBM
from deepbelief.training import RBMTrainConfig
from deepbelief.units import Bernoulli, Joint, Softmax
from deepbelief.wake_sleep import UpDownConfig, UpDownTrainer, step_uniforms, up_down, up_down_grads


def tiny_model(seed=0, sizes=(6, 4, 3), n_labels=3, scale=1.0) -> GenerativeDBN:
    """A float64 model with random weights (std ``scale``) and random biases."""
    g = torch.Generator().manual_seed(seed)
    m = GenerativeDBN.build(list(sizes), n_labels, generator=g, weight_std=scale).double()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.5)
    return m


def enumerated_label_posterior(top: RBM, f: torch.Tensor, n_labels: int) -> torch.Tensor:
    """p(label | features) by summing exp(-E([f, e_k], h)) over every binary h (no free energy)."""
    hs = exact.all_binary(top.n_hidden)
    out = torch.empty(f.shape[0], n_labels, dtype=torch.float64)
    for k in range(n_labels):
        lab = torch.zeros(f.shape[0], n_labels, dtype=torch.float64)
        lab[:, k] = 1
        v = torch.cat([f, lab], -1)
        b, S = v.shape[0], hs.shape[0]
        with torch.no_grad():  # every (row, h) pair in one call
            e = top.energy(v.repeat_interleave(S, 0), hs.repeat(b, 1)).reshape(b, S)
        out[:, k] = torch.logsumexp(-e, 1)
    return torch.softmax(out, 1)


# -- tied and untied weights ------------------------------------------------------------------
def test_tied_model_uses_the_same_matrices_and_one_step_unties_them():
    m = tiny_model(1, sizes=(6, 5, 4, 3), n_labels=2, scale=0.5)
    assert m.tied
    for r, g in zip(m.recognition_weights(), m.generative_weights()):
        assert r is g  # the same Parameter, not a copy
    # tied bottom-up pass equals the stack's RBM hidden means
    x = torch.rand(5, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.allclose(m.features(x), m.lower[1].mean_hidden(m.lower[0].mean_hidden(x)), atol=1e-14)
    w0 = [w.detach().clone() for w in m.generative_weights()]
    m.untie_()
    assert not m.tied and all(torch.equal(a, b) for a, b in zip(m.recognition_weights(), w0))

    lr = 0.3
    trainer = UpDownTrainer(m, UpDownConfig(lr=lr, momentum=0.0, gibbs_steps=[2]), torch.Generator().manual_seed(5))
    y = m.one_hot([0, 1, 1, 0, 1])
    xb = (x > 0.5).double()
    # replay the step's random numbers to get the states it used
    grads, st = up_down_grads(m, xb, y, 2, step_uniforms(m, xb, 2, torch.Generator().manual_seed(5)))
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    trainer.step(xb, y, lr, 0.0, 2)
    after = dict(m.named_parameters())
    for n in before:
        assert torch.allclose(after[n] - before[n], lr * grads[n], atol=1e-12), n
    for i in range(2):
        rec, gen = m.recognition_weights()[i], m.generative_weights()[i]
        assert not torch.allclose(rec, gen)
        # the recognition weights moved by the sleep statistics, the generative by the wake ones
        wake, sleep = st["wake"], st["sleep"]
        d_gen = (wake[i] - torch.sigmoid(wake[i + 1] @ w0[i].T + before[f"lower.{i}.visible.bias"])).T @ wake[i + 1]
        d_rec = sleep[i].T @ (sleep[i + 1] - torch.sigmoid(sleep[i] @ w0[i] + before[f"lower.{i}.hidden.bias"]))
        assert torch.allclose(gen - w0[i], lr * d_gen / 5, atol=1e-12)
        assert torch.allclose(rec - w0[i], lr * d_rec / 5, atol=1e-12)


def test_up_down_grads_are_log_likelihood_gradients():
    """Wake grads = d/dtheta mean log p(s_i | s_{i+1}); sleep grads = d/dtheta mean log q(s'_{i+1} | s'_i);
    top grads = -d/dtheta [mean F(v_pos) - mean F(v_neg)], all by autograd on the returned states."""
    m = tiny_model(2, sizes=(6, 4, 3, 5), n_labels=3, scale=0.7).untie_()
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(9, 6, generator=g) < 0.4).double()
    y = m.one_hot(torch.randint(0, 3, (9,), generator=g))
    grads, st = up_down_grads(m, x, y, 3, g)
    params = dict(m.named_parameters())

    def bern_ll(s, logits):
        return (s * logits - torch.nn.functional.softplus(logits)).sum(1).mean()

    wake, sleep = st["wake"], st["sleep"]
    for i, r in enumerate(m.lower):
        ll = bern_ll(wake[i], wake[i + 1] @ r.W.T + r.visible.bias)
        gw, gb = torch.autograd.grad(ll, [r.W, r.visible.bias])
        assert torch.allclose(grads[f"lower.{i}.W"], gw, atol=1e-12)
        assert torch.allclose(grads[f"lower.{i}.visible.bias"], gb, atol=1e-12)
        ll = bern_ll(sleep[i + 1], sleep[i] @ m.rec_weights[i] + r.hidden.bias)
        gw, gb = torch.autograd.grad(ll, [m.rec_weights[i], r.hidden.bias])
        assert torch.allclose(grads[f"rec_weights.{i}"], gw, atol=1e-12)
        assert torch.allclose(grads[f"lower.{i}.hidden.bias"], gb, atol=1e-12)
    obj = m.top.free_energy(st["v_neg"][0]).mean() - m.top.free_energy(st["v_pos"][0]).mean()
    top_names = [n for n in params if n.startswith("top.")]
    auto = torch.autograd.grad(obj, [params[n] for n in top_names])
    for n, a in zip(top_names, auto):
        assert torch.allclose(grads[n], a, atol=1e-12), n
    # the sleep pass starts at the features the Gibbs run ended on, and the labels of the
    # negative phase are probabilities
    assert torch.equal(sleep[-1], st["v_neg"][0][:, :3])
    assert torch.allclose(st["v_neg"][0][:, 3:].sum(1), torch.ones(9, dtype=torch.float64))


# -- classification ---------------------------------------------------------------------------
def test_free_energy_classification_matches_enumeration():
    m = tiny_model(3, sizes=(7, 5, 4, 6), n_labels=4, scale=1.0)
    x = torch.rand(30, 7, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    f = torch.sigmoid(torch.sigmoid(x @ m.lower[0].W + m.lower[0].hidden.bias) @ m.lower[1].W + m.lower[1].hidden.bias)
    expected = enumerated_label_posterior(m.top, f.detach(), 4)
    assert torch.allclose(m.predict_proba(x), expected, atol=1e-12)
    assert torch.equal(m.predict(x), expected.argmax(1))
    # the classes are not all the same, so the test distinguishes labels
    assert len(set(m.predict(x).tolist())) > 1


def test_label_posterior_matches_the_joint_distribution_for_binary_features():
    """For binary features, p(label | f) from the enumerated joint p(f, label) of the top RBM."""
    m = tiny_model(4, sizes=(3, 5), n_labels=3)  # no lower layers: the data are the features
    states, p = exact.visible_distribution(m.top)  # (3 * 2^3, 6)
    f, lab = states[:, :3], states[:, 3:]
    got = m.predict_proba(f)
    for s in range(states.shape[0]):
        same = (f == f[s]).all(1)
        cond = (p[same].unsqueeze(1) * lab[same]).sum(0) / p[same].sum()
        assert torch.allclose(got[s], cond, atol=1e-12)


# -- generation ---------------------------------------------------------------------------------
def _codes(v):
    return (v.round().long() * (2 ** torch.arange(v.shape[1] - 1, -1, -1))).sum(1)


@pytest.mark.parametrize("clamp", [None, 1])
def test_top_gibbs_sampling_converges_to_exact_distribution(clamp):
    """Total variation between many parallel chains and the enumerated top-level distribution
    (joint over [features, label], or conditional on a clamped label) is below 3 times its
    expected size for that many samples."""
    m = tiny_model(5, sizes=(5, 4, 4), n_labels=3, scale=0.8).float()
    states, p = exact.visible_distribution(m.top)  # (2^4 * 3, 7), float64
    nf = 4
    if clamp is not None:
        keep = states[:, nf + clamp] == 1
        states, p = states[keep], p[keep] / p[keep].sum()
    g = torch.Generator().manual_seed(0)
    n = 40000
    pen = (torch.rand(n, nf, generator=g) < 0.5).float()
    lab = m.one_hot([clamp if clamp is not None else 0] * n).float()
    pen, lab, _, _ = m.gibbs_top(pen, lab, 30, g, clamp=clamp is not None)
    if clamp is not None:
        assert torch.all(lab.argmax(1) == clamp)
    code = _codes(torch.cat([pen, lab], 1).double())
    table = torch.full((2 ** states.shape[1],), -1, dtype=torch.long)
    table[_codes(states)] = torch.arange(states.shape[0])
    assert torch.all(table[code] >= 0)
    counts = torch.bincount(table[code], minlength=states.shape[0]).double() / n
    tv = 0.5 * float((counts - p).abs().sum())
    bound = 3 * 0.5 * float(torch.sqrt(p * (1 - p) / n).sum())
    assert tv < bound


def test_generated_pixel_marginals_match_exact_class_conditional():
    """sample(label=k) with one directed layer sends p(pen | h) of the chain's last top state
    down as probabilities, so the mean generated image is E[sigmoid(p(pen | h) W^T + b) | k]
    with h distributed as the top RBM's p(h | label k): enumerated exactly over (pen, h) and
    compared within 5 standard errors."""
    m = tiny_model(6, sizes=(5, 3, 4), n_labels=2, scale=1.0).float()
    md = copy.deepcopy(m).double()
    label = 1
    nf = 3
    hs = exact.all_binary(4)
    fs = exact.all_binary(nf)
    lab = torch.tensor([0.0, 1.0], dtype=torch.float64)
    v = torch.cat([fs, lab.expand(fs.shape[0], -1)], 1)
    with torch.no_grad():
        e = torch.stack([md.top.energy(v, h.expand(v.shape[0], -1)) for h in hs], 1)  # (2^nf, 2^nh)
        ph = torch.softmax(-e.flatten(), 0).reshape(e.shape).sum(0)  # p(h | label), (16,)
        pen_prob = torch.sigmoid(hs @ md.top.W[:nf].T + md.top.visible.groups[0].bias)  # (16, nf)
        expected = (ph.unsqueeze(1) * md.lower[0].mean_visible(pen_prob)).sum(0)  # (5,)
    g = torch.Generator().manual_seed(1)
    n = 20000
    x = m.sample(n, label=label, steps=30, generator=g)
    assert x.shape == (n, 5)
    se = x.double().std(0) / math.sqrt(n)
    assert torch.all((x.double().mean(0) - expected).abs() < 5 * se + 1e-6)


def test_sample_frames_and_errors():
    m = tiny_model(7, sizes=(4, 3, 3), n_labels=3).float()
    g = torch.Generator().manual_seed(0)
    x, labels, frames = m.sample(5, label=[0, 1, 2, 0, 1], steps=6, generator=g, frames_every=2, return_frames=True)
    assert labels.tolist() == [0, 1, 2, 0, 1] and len(frames) == 3 and torch.equal(frames[-1], x)
    with pytest.raises(DataError, match="label"):
        m.sample(2, label=3, steps=1, generator=g)
    with pytest.raises(ConfigError, match="steps"):
        m.sample(2, label=1, steps=-1, generator=g)
    with pytest.raises(ConfigError, match="Softmax"):
        GenerativeDBN([], RBM(Joint([Bernoulli(3), Bernoulli(2)]), 4))
    with pytest.raises(ConfigError, match="feature group"):
        GenerativeDBN([RBM(4, 5)], RBM(Joint([Bernoulli(3), Softmax(2)]), 4))


# -- the up-down algorithm on an exactly tractable DBN -----------------------------------------
def exact_log_p(m: GenerativeDBN, x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean log p(x, y) of a DBN with one directed layer: sum over s1 of p(x | s1) p_top(s1, y)."""
    md = copy.deepcopy(m).double()  # Module.double() works in place: keep the trained model as is
    s1 = exact.all_binary(md.n_features)  # (S, n1)
    log_z = exact.log_partition(md.top)
    lab = torch.nn.functional.one_hot(y, md.n_labels).double()
    with torch.no_grad():
        # log p_top(s1, k) for every state s1 and label k: (S, n_labels)
        eye = torch.eye(md.n_labels, dtype=torch.float64)
        log_top = torch.stack([-md.top.free_energy(torch.cat([s1, eye[k].expand(s1.shape[0], -1)], 1)) - log_z
                               for k in range(md.n_labels)], 1)
        logits = s1 @ md.lower[0].W.T + md.lower[0].visible.bias  # (S, n0)
        log_px = x.double() @ logits.T - torch.nn.functional.softplus(logits).sum(1)  # (batch, S)
        return float(torch.logsumexp(log_px + (lab @ log_top.T), 1).mean())


def _toy_data(n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    protos = torch.tensor([[1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1], [1, 0, 1, 0, 1, 0]], dtype=torch.float32)
    y = torch.randint(0, 3, (n,), generator=g)
    x = (protos[y] + (torch.rand(n, 6, generator=g) < 0.05).float()) % 2
    return x, y


def test_up_down_does_not_decrease_exact_log_probability():
    """After brief greedy training, 200 up-down updates never lower the exact mean
    log p(x, y) of the training data (checked after every epoch, tolerance 0.01 nats) and
    raise it in the end. The model's directed layer has 2^5 states, summed exactly."""
    x, y = _toy_data()
    g = torch.Generator().manual_seed(0)
    m = pretrain_generative(x, y, [6, 5, 8], RBMTrainConfig(epochs=3, batch_size=20, lr=0.1), generator=g, n_labels=3)
    ll0 = exact_log_p(m, x, y)
    lls = []
    up_down(m, x, y, UpDownConfig(epochs=20, batch_size=20, lr=0.1, momentum=0.5, gibbs_steps=[3, 6, 10]),
            generator=g, callback=lambda e, _: lls.append(exact_log_p(m, x, y)))
    assert min(lls) > ll0 - 0.01
    assert lls[-1] > ll0 + 0.05
    assert lls[-1] < 0


@pytest.mark.parametrize("persistent,decay,clamped", [(False, 0.0, 0.0), (True, 0.0, 0.0), (True, 0.9, 0.0),
                                                     (True, 0.0, 0.6)])
def test_resume_is_bit_exact(tmp_path, persistent, decay, clamped, interrupt):
    """A run stopped after its first epoch and resumed from the checkpoint (with a generator
    seeded otherwise: its state comes from the file) ends with the same weights; with
    persistent chains that needs the chains in the checkpoint too, with averaging the average
    (clamped chains take their labels from the config)."""
    x, y = _toy_data(60, seed=1)
    base = tiny_model(8, sizes=(6, 4, 5), n_labels=3, scale=0.1).float()
    cfg = UpDownConfig(epochs=3, batch_size=10, lr=0.05, momentum=0.5, gibbs_steps=[1, 2, 3], persistent=persistent,
                       average_decay=decay, clamped_chains=clamped)
    straight = GenerativeDBN.from_config(base.config())
    straight.load_state_dict(base.state_dict())
    up_down(straight, x, y, cfg, generator=torch.Generator().manual_seed(3))

    ckpt = tmp_path / "ud.ckpt.safetensors"
    first = GenerativeDBN.from_config(base.config())
    first.load_state_dict(base.state_dict())
    with pytest.raises(interrupt.Stop):
        up_down(first, x, y, cfg, generator=torch.Generator().manual_seed(3), checkpoint=ckpt, callback=interrupt(0))
    resumed = GenerativeDBN.from_config(base.config())
    resumed.load_state_dict(base.state_dict())
    hist = up_down(resumed, x, y, cfg, generator=torch.Generator().manual_seed(99), checkpoint=ckpt, resume=True)
    assert len(hist) == 3
    for (n, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), n


def test_save_load_keeps_recognition_and_generative_weights(tmp_path):
    m = tiny_model(9, sizes=(6, 4, 3, 5), n_labels=3).float()
    p = tmp_path / "tied.safetensors"
    save_model(p, m)
    back = load_model(p)
    assert back.tied and not any(k.startswith("rec_weights") for k in back.state_dict())
    m.untie_()
    with torch.no_grad():
        m.rec_weights[0].add_(0.5)
    p2 = tmp_path / "untied.safetensors"
    save_model(p2, m)
    back = load_model(p2)
    assert not back.tied
    for a, b in zip(m.recognition_weights() + m.generative_weights(), back.recognition_weights() + back.generative_weights()):
        assert torch.equal(a, b)
    x = torch.rand(8, 6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(m.predict_proba(x), back.predict_proba(x))
    assert not torch.allclose(back.recognition_weights()[0], back.generative_weights()[0])


def test_bad_inputs_name_the_parameter():
    m = tiny_model(10, sizes=(6, 4, 3), n_labels=3).float()
    with pytest.raises(DataError, match="x must have 6 features"):
        m.predict(torch.rand(2, 5))
    with pytest.raises(ConfigError, match="gibbs_steps"):
        UpDownConfig(gibbs_steps=[]).validate()
    with pytest.raises(ConfigError, match="lr"):
        UpDownConfig(lr=0).validate()
    x, y = _toy_data(20)
    with pytest.raises(DataError, match="y"):
        up_down(m, x, y + 5, UpDownConfig(epochs=1, batch_size=10), generator=torch.Generator())


@pytest.mark.parametrize("persistent,clamped", [(False, 0.0), (True, 0.0), (True, 0.6)])
def test_fast_updown_step_equals_the_reference_step(persistent, clamped):
    """UpDownTrainer._fast_step (fused, sums, 1/b in the step) against up_down_grads, float64,
    for CD-K and for persistent chains (whose end states must agree too), some of them with
    their labels clamped."""
    from deepbelief.wake_sleep import UpDownConfig, UpDownTrainer

    def trained(fast):
        gen = torch.Generator().manual_seed(7)
        m = GenerativeDBN.build([12, 8, 6, 9], 3, generator=gen, weight_std=0.5).double()
        with torch.no_grad():
            for p in m.parameters():
                p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.3)  # non-zero biases
        cfg = UpDownConfig(epochs=3, batch_size=10, lr=0.05, momentum=0.7, weight_decay=0.01,
                           gibbs_steps=[1, 3, 2], fast=fast, persistent=persistent, clamped_chains=clamped)
        x = torch.rand(40, 12, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        y = torch.arange(40) % 3
        trainer = UpDownTrainer(m, cfg, gen)
        hist = trainer.fit(x, y)
        return m, hist, trainer.chains

    fast, hf, cf = trained(True)
    ref, hr, cr = trained(False)
    for (n, a), (_, b) in zip(fast.named_parameters(), ref.named_parameters()):
        assert torch.allclose(a, b, atol=1e-10, rtol=0), n
    assert len(hf) == len(hr) == 3
    if persistent:
        assert cf is not None and torch.equal(cf, cr) and cf.shape == (10, 9)
    else:
        assert cf is None and cr is None


def test_persistent_chains_sample_the_top_rbm_exactly():
    """With ``persistent`` the top-level Gibbs run continues from the previous step's end and
    samples the labels, so over many steps the chains' visible states (features, label) are
    distributed as the top RBM's exact marginal p(v) (enumerated). Tolerance: 4 x the
    standard error of the total variation, sum_s se_s / 2, with se_s from 20 batch means
    over time (so the chains' autocorrelation is in it). CD-1 restarted from the wake state
    each step misses the same distribution by about ten times that tolerance."""
    m = tiny_model(4, sizes=(6, 5, 3, 4), n_labels=3, scale=0.8).untie_()
    g = torch.Generator().manual_seed(11)
    x = (torch.rand(40, 6, generator=g) < 0.5).double()
    y = m.one_hot(torch.arange(40) % 3)
    states = torch.cartesian_prod(*[torch.tensor([0.0, 1.0], dtype=torch.float64)] * 3)
    vs = torch.cat([states.repeat_interleave(3, 0), torch.eye(3, dtype=torch.float64).repeat(8, 1)], 1)
    with torch.no_grad():
        p_exact = torch.softmax(-m.top.free_energy(vs), 0)
    weights = torch.tensor([12.0, 6.0, 3.0], dtype=torch.float64)

    def visited(persistent: bool) -> torch.Tensor:
        """(steps after burn-in, states) counts of the negative visible states."""
        chains, per = None, []
        for t in range(1020):
            _, st = up_down_grads(m, x, y, 1, g, persistent=True, chains=chains)
            chains = st["chains"][0] if persistent else None
            if t >= 20:
                v = st["v_neg"][0]
                assert torch.equal(v[:, 3:].sum(1), torch.ones(40, dtype=torch.float64))  # labels one-hot
                code = (v[:, :3] @ weights + v[:, 3:].argmax(1)).long()
                per.append(torch.bincount(code, minlength=len(vs)).double())
        return torch.stack(per)

    def tv_and_tolerance(per):
        batches = per.reshape(20, -1, len(vs)).sum(1)
        se = (batches / batches.sum(1, keepdim=True)).std(0) / 20 ** 0.5
        p_emp = per.sum(0) / per.sum()
        return float(0.5 * (p_emp - p_exact).abs().sum()), float(4 * 0.5 * se.sum())

    tv, tol = tv_and_tolerance(visited(True))
    assert tv < tol, (tv, tol)
    tv_cd, _ = tv_and_tolerance(visited(False))
    assert tv_cd > 2 * tol, (tv_cd, tol)  # the test can tell a sampler from CD-1
    _, st = up_down_grads(m, x, y, 2, g)  # CD-K (appendix B): labels as probabilities, no chains
    assert "chains" not in st and float(st["v_neg"][0][:, 3:].max(1).values.min()) < 1.0


def test_clamped_chains_sample_the_class_conditionals_exactly():
    """With ``clamp`` the first m persistent chains keep their labels: over many steps the
    features of the chains clamped to class c are distributed as the exact p(features | c)
    (enumerated), and the free chains still as the exact p(features, label). Tolerance as in
    the test above: 4 x the standard error of each total variation from 20 batch means; the
    model is chosen so that every p(features | c) is further than twice that from p(features)."""
    from deepbelief.wake_sleep import clamped_labels

    m = tiny_model(5, sizes=(6, 5, 3, 4), n_labels=3, scale=1.2).untie_()
    g = torch.Generator().manual_seed(12)
    x = (torch.rand(120, 6, generator=g) < 0.5).double()
    y = m.one_hot(torch.arange(120) % 3)
    clamp = clamped_labels(m, UpDownConfig(batch_size=120, persistent=True, clamped_chains=0.75))
    assert clamp.shape == (90, 3) and torch.equal(clamp.sum(0), torch.full((3,), 30.0, dtype=torch.float64))
    states = torch.cartesian_prod(*[torch.tensor([0.0, 1.0], dtype=torch.float64)] * 3)
    vs = torch.cat([states.repeat_interleave(3, 0), torch.eye(3, dtype=torch.float64).repeat(8, 1)], 1)
    with torch.no_grad():
        p_joint = torch.softmax(-m.top.free_energy(vs), 0)
    p_cond = p_joint.reshape(8, 3) / p_joint.reshape(8, 3).sum(0)  # (feature state, class): p(f | c)
    code_f = torch.tensor([4.0, 2.0, 1.0], dtype=torch.float64)
    counts_c, counts_free, chains = [], [], None
    for t in range(2020):
        _, st = up_down_grads(m, x, y, 1, g, persistent=True, chains=chains, clamp=clamp)
        chains = st["chains"][0]
        v = st["v_neg"][0]
        assert torch.equal(v[:90, 3:], clamp)  # the clamped chains never change label
        if t >= 20:
            f = (v[:, :3] @ code_f).long()
            counts_c.append(torch.stack([torch.bincount(f[:90][clamp.argmax(1) == c], minlength=8)
                                         for c in range(3)], 1).double())  # (8, 3)
            counts_free.append(torch.bincount(3 * f[90:] + v[90:, 3:].argmax(1), minlength=24).double())

    def tv_and_tolerance(per, p):
        per = per.reshape(per.shape[0], -1)
        batches = per.reshape(20, -1, per.shape[1]).sum(1)
        se = (batches / batches.sum(1, keepdim=True)).std(0) / 20 ** 0.5
        p_emp = per.sum(0) / per.sum()
        return float(0.5 * (p_emp - p).abs().sum()), float(4 * 0.5 * se.sum())

    per_c = torch.stack(counts_c)  # (steps, 8, 3)
    for c in range(3):
        tv, tol = tv_and_tolerance(per_c[:, :, c], p_cond[:, c])
        assert tv < tol, (c, tv, tol)
        assert 0.5 * float((p_cond[:, c] - p_joint.reshape(8, 3).sum(1)).abs().sum()) > 2 * tol  # it can tell
    tv, tol = tv_and_tolerance(torch.stack(counts_free), p_joint)
    assert tv < tol, (tv, tol)


def test_clamped_chains_bad_settings_name_the_parameter():
    with pytest.raises(ConfigError, match="clamped_chains needs persistent=true"):
        UpDownConfig(clamped_chains=0.5).validate()
    with pytest.raises(ConfigError, match="clamped_chains must be"):
        UpDownConfig(persistent=True, clamped_chains=1.5).validate()
    m = tiny_model()
    with pytest.raises(ConfigError, match=r"multiple of the number of labels \(3\).*batch_size=10 \(5 chains\)"):
        UpDownTrainer(m, UpDownConfig(batch_size=10, persistent=True, clamped_chains=0.5), torch.Generator())


def test_sampling_from_an_up_pass_starts_at_the_images_features():
    """With zero Gibbs steps, a chain started from images sends down exactly the binary
    features it drew from the images' bottom-up probabilities (HOT 2006, figure 9)."""
    m = tiny_model(3, sizes=(6, 5, 4, 3), n_labels=2, scale=0.5)
    x = torch.rand(7, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = m.sample(7, label=1, steps=0, generator=torch.Generator().manual_seed(9), start=x)
    g = torch.Generator().manual_seed(9)
    up = m.features(x)
    pen = (torch.rand(up.shape, generator=g, dtype=up.dtype) < up).to(up.dtype)
    assert torch.allclose(out, m.down(pen), atol=1e-12)
    with pytest.raises(ConfigError, match="one image per chain"):
        m.sample(3, label=1, steps=1, start=x)


def test_sampling_from_top_noise_starts_at_random_top_states():
    """init="top-noise" (Hinton's digit movies): the top RBM's hidden units start on with
    probability 1/2 and the features are sampled from them; with zero Gibbs steps exactly
    those features go down."""
    m = tiny_model(3, sizes=(6, 5, 4, 3), n_labels=2, scale=0.5)
    out = m.sample(7, label=1, steps=0, generator=torch.Generator().manual_seed(9), init="top-noise")
    g = torch.Generator().manual_seed(9)
    h = (torch.rand(7, 3, generator=g, dtype=torch.float64) < 0.5).double()
    p = torch.sigmoid(h @ m.top.W[:4].T + m.top.visible.groups[0].bias)
    pen = (torch.rand(p.shape, generator=g, dtype=p.dtype) < p).double()
    assert torch.allclose(out, m.down(pen), atol=1e-12)
    with pytest.raises(ConfigError, match="init must be one of"):
        m.sample(2, label=0, steps=1, init="noise")


@pytest.mark.parametrize("k", [1, 4])
@pytest.mark.parametrize("persistent,fresh", [(False, True), (True, True), (True, False)])
def test_step_uniforms_counts_exactly_the_numbers_a_step_draws(k, persistent, fresh):
    m = GenerativeDBN.build([12, 8, 6, 10], 3, generator=torch.Generator().manual_seed(0)).double()
    m.untie_()
    x = (torch.rand(7, 12, generator=torch.Generator().manual_seed(1)) > 0.5).double()
    chains = None if fresh else torch.ones(7, 10, dtype=torch.float64)
    u = step_uniforms(m, x, k, torch.Generator().manual_seed(2), persistent=persistent, fresh=fresh)
    up_down_grads(m, x, m.one_hot([0, 1, 2, 0, 1, 2, 0]), k, u, persistent=persistent, chains=chains)
    assert u.used == u.n


def test_updown_learning_rate_anneals_linearly_and_each_epoch_steps_with_its_rate(monkeypatch):
    cfg = UpDownConfig(epochs=5, lr=0.1, lr_final=0.02).validate()
    assert [round(cfg.lr_at(e), 12) for e in range(5)] == [0.1, 0.08, 0.06, 0.04, 0.02]
    assert UpDownConfig(epochs=5, lr=0.1).lr_at(4) == 0.1
    with pytest.raises(ConfigError, match="lr_final"):
        UpDownConfig(lr_final=-1.0).validate()
    m = tiny_model(5, sizes=(6, 4, 3), n_labels=3).float()
    x, y = _toy_data(20)
    trainer = UpDownTrainer(m, UpDownConfig(epochs=3, batch_size=10, lr=0.3, lr_final=0.1), torch.Generator())
    seen = []
    step = trainer.step
    monkeypatch.setattr(trainer, "step", lambda xb, yb, lr, mom, k: seen.append(lr) or step(xb, yb, lr, mom, k))
    hist = trainer.fit(x, y)
    assert seen == pytest.approx([0.3, 0.3, 0.2, 0.2, 0.1, 0.1])
    assert [h["lr"] for h in hist] == pytest.approx([0.3, 0.2, 0.1])


def test_final_updown_epochs_continue_at_the_annealed_rate(monkeypatch):
    """run_recipe's last phase (all the data) keeps the schedule's last K and its final rate."""
    import deepbelief.wake_sleep as ws
    from deepbelief.runner import _run_updown

    seen = []
    monkeypatch.setattr(ws, "up_down", lambda model, x, y, cfg, **kw: seen.append(
        (cfg.epochs, cfg.lr, cfg.lr_final, cfg.gibbs_steps)) or [])
    ud = UpDownConfig(epochs=4, lr=0.05, lr_final=0.005, gibbs_steps=[3, 10], final_epochs=2)
    _run_updown(None, ud, {}, gen=None, train=(None, None), all_data=(None, None), valid=(None, None),
                folder=None, resume=False, checkpoint_every=1, log=lambda s: None, logger=None, prog=None)
    assert seen == [(4, 0.05, 0.005, [3, 10]), (2, 0.005, None, [10])]
    f = UpDownConfig(epochs=4, lr=0.05, gibbs_steps=[3, 6], final_epochs=3, persistent=True).final_phase()
    assert (f.epochs, f.lr, f.lr_final, f.gibbs_steps, f.final_epochs, f.persistent) == (3, 0.05, None, [6], 0, True)


def test_final_epochs_stop_once_the_training_error_is_as_low_as_asked(tmp_path):
    """``fit(stop_train_error=t)`` (HOT 2006's rule for the final epochs): each epoch's
    ``train_error`` is the free-energy error of the model on all of x, and the run ends after
    the first epoch where it is <= t, with the weights an uninterrupted run has after that
    many epochs (the measurement draws no random numbers); a resumed run that had stopped
    trains no more."""
    x, y = _toy_data(60, seed=2)
    base = tiny_model(4, sizes=(6, 4, 5), n_labels=3, scale=0.1).float()
    cfg = UpDownConfig(epochs=8, batch_size=10, lr=0.2, momentum=0.5, gibbs_steps=[2])

    def fresh():
        m = GenerativeDBN.from_config(base.config())
        m.load_state_dict(base.state_dict())
        return m

    free, errs = fresh(), []
    up_down(free, x, y, cfg, generator=torch.Generator().manual_seed(5),
            callback=lambda e, _: errs.append(float(free.error_rate(x, y))))
    j = next(i for i, e in enumerate(errs) if e < errs[0])  # the first epoch that improves on epoch 0
    target = errs[j]
    ckpt = tmp_path / "final.ckpt.safetensors"
    stopped = fresh()
    hist = up_down(stopped, x, y, cfg, generator=torch.Generator().manual_seed(5), stop_train_error=target,
                   checkpoint=ckpt)
    assert len(hist) == j + 1
    assert [h["train_error"] for h in hist] == pytest.approx(errs[: j + 1])
    short = fresh()
    up_down(short, x, y, dataclasses.replace(cfg, epochs=j + 1), generator=torch.Generator().manual_seed(5))
    for (n, a), b in zip(short.state_dict().items(), stopped.state_dict().values()):
        assert torch.equal(a, b), n
    again = fresh()
    hist2 = up_down(again, x, y, cfg, generator=torch.Generator().manual_seed(7), stop_train_error=target,
                    checkpoint=ckpt, resume=True)
    assert len(hist2) == j + 1
    for (n, a), b in zip(stopped.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), n
    never = fresh()
    assert len(up_down(never, x, y, cfg, generator=torch.Generator().manual_seed(5), stop_train_error=-1.0)) == 8
    assert "train_error" not in up_down(fresh(), x, y, dataclasses.replace(cfg, epochs=1),
                                        generator=torch.Generator().manual_seed(5))[0]


def test_the_recipe_s_final_phase_stops_at_the_first_phase_s_training_error(monkeypatch):
    """run_recipe's final phase with ``final_until_train_error``: the target is the model's
    free-energy error on the training split after the first phase; only the final phase stops
    by it, and ``final_epochs`` is the most it runs; with final_epochs 0 there is no final phase."""
    import deepbelief.wake_sleep as ws
    from deepbelief.runner import _run_updown

    seen = []
    monkeypatch.setattr(ws, "up_down", lambda model, x, y, cfg, **kw: seen.append(
        (x.shape[0], cfg.epochs, kw["stop_train_error"], cfg.final_until_train_error)) or [])
    train, everything = (torch.zeros(50, 6), torch.zeros(50)), (torch.zeros(60, 6), torch.zeros(60))

    class Model:
        def error_rate(self, x, y):
            assert x is train[0] and y is train[1]
            return torch.tensor(0.0125)

    ud = UpDownConfig(epochs=4, gibbs_steps=[3, 10], final_epochs=20, final_until_train_error=True).validate()
    result = {}
    _run_updown(Model(), ud, result, gen=None, train=train, all_data=everything,
                valid=(None, None), folder=None, resume=False, checkpoint_every=1, log=lambda s: None, logger=None,
                prog=None)
    assert seen == [(50, 4, None, True), (60, 20, pytest.approx(0.0125), False)]
    assert result["updown_train_error"] == pytest.approx(0.0125)
    seen.clear()
    _run_updown(Model(), dataclasses.replace(ud, final_epochs=0).validate(), {}, gen=None, train=train,
                all_data=everything, valid=(None, None), folder=None, resume=False, checkpoint_every=1,
                log=lambda s: None, logger=None, prog=None)
    assert seen == [(50, 4, None, True)]  # no final phase, and no target measured for it
    with pytest.raises(ConfigError, match="final_until_train_error must be true or false"):
        UpDownConfig(final_epochs=3, final_until_train_error="yes").validate()


def test_checkpoint_error_script_rebuilds_the_checkpointed_models(tmp_path, monkeypatch):
    """benchmarks/hot2006_checkpoint_error.py rebuilds, from a real up-down checkpoint alone,
    the model up_down left (its average, bit for bit) and the iterate it trained on."""
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from hot2006_checkpoint_error import read_checkpoint, skeleton

    x, y = _toy_data(60, seed=2)
    model = tiny_model(4, sizes=(6, 4, 5), n_labels=3, scale=0.1).float()
    cfg = UpDownConfig(epochs=3, batch_size=10, lr=0.2, momentum=0.5, gibbs_steps=[2], average_decay=0.9)
    ckpt = tmp_path / "updown.ckpt.safetensors"
    up_down(model, x, y, cfg, generator=torch.Generator().manual_seed(5), checkpoint=ckpt)
    sets, meta = read_checkpoint(ckpt)
    assert set(sets) == {"model", "average"} and meta["epoch"] == 3
    rebuilt = {}
    for prefix, params in sets.items():
        rebuilt[prefix] = skeleton(meta)
        rebuilt[prefix].load_state_dict(params, strict=True)
        assert rebuilt[prefix].sizes == model.sizes and not rebuilt[prefix].tied
    for (n, a), b in zip(model.state_dict().items(), rebuilt["average"].state_dict().values()):
        assert torch.equal(a, b), n  # up_down leaves the average in the model
    assert float(rebuilt["average"].error_rate(x, y)) == float(model.error_rate(x, y))
    assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                       rebuilt["model"].state_dict().values()))


def test_the_plan_s_up_down_time_is_the_schedule_s_steps_at_the_timed_step_seconds(monkeypatch):
    """runner._plan: up-down time = sum over epochs of (batches x the timed step of that epoch's
    K) + final epochs x (batches of all the data x the last K's step); exact with the step
    times fixed."""
    from deepbelief import runner
    from deepbelief.progress import fmt_seconds
    from deepbelief.recipes import get_recipe

    recipe = get_recipe("hot2006")
    ud = recipe.updown  # 150 epochs, K = 3 / 6 / 10 in thirds, at most 59 final epochs, batch 100
    step = {3: 0.01, 6: 0.02, 10: 0.04}
    seen = {}

    def fake(u, sizes, n_labels, dev, steps=5):
        seen.update(sizes=sizes, n_labels=n_labels)
        return step

    monkeypatch.setattr(runner, "_updown_step_seconds", fake)
    text = runner._plan(recipe, recipe.rbm_configs(), ud, [784, 500, 500, 2000], 10, 1000, 1200,
                        torch.device("cpu"))
    assert ud.epochs == 150 and ud.gibbs_steps == [3, 6, 10]
    expected = 10 * 50 * (0.01 + 0.02 + 0.04) + ud.final_epochs * 12 * 0.04  # 35 + 28.32 s
    assert f"up-down at most {150 + ud.final_epochs} epochs (about {fmt_seconds(expected)}," in text
    assert seen == {"sizes": [784, 500, 500, 2000], "n_labels": 10}


def test_the_timed_up_down_steps_time_every_k_of_the_schedule(monkeypatch):
    """runner._updown_step_seconds on a tiny model, with a fake clock on which the steps of K
    take 100 s (the warm-up), then K and 3K seconds: the median of the timed ones, exactly 2K
    (with the warm-up counted it would be 3K), every step at rate 0 (the model unchanged)."""
    from deepbelief import runner

    clock, calls = [0.0], []

    def fake_step(self, x, y, lr, momentum, k):
        calls.append((k, lr, momentum))
        clock[0] += (100.0, k, 3.0 * k)[(len(calls) - 1) % 3]  # steps=2: a warm-up, then 2 timed

    class FakeTime:
        @staticmethod
        def perf_counter():
            return clock[0]

    monkeypatch.setattr(UpDownTrainer, "step", fake_step)
    monkeypatch.setattr(runner, "time", FakeTime)
    ud = UpDownConfig(epochs=3, batch_size=4, gibbs_steps=[2, 1, 2], persistent=True, average_decay=0.9).validate()
    t = runner._updown_step_seconds(ud, [6, 5, 4, 8], 2, torch.device("cpu"), steps=2)
    assert t == {1: 2.0, 2: 4.0}
    assert calls == [(1, 0.0, 0.0)] * 3 + [(2, 0.0, 0.0)] * 3
