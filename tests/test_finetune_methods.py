"""Fine-tuning by conjugate gradients, dropout as published (max-norm, momentum ramp) and
the random-init baseline's initialisation."""

import importlib
import itertools
import math

import pytest
import torch

from deepbelief import DBN, RBM, ConfigError
from deepbelief.classifier import DeepClassifier
from deepbelief.finetune import FinetuneConfig, finetune, random_classifier, unroll
from deepbelief.training import make_generator

ft_mod = importlib.import_module("deepbelief.finetune")  # the module; deepbelief.finetune is also the function


def _data(n=300, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=g)
    y = (x[:, :4].sum(1) > 2).long() + (x[:, 4] > 0.5).long()
    return x, y


def _net(seed=4, d=16, h=8):
    g = make_generator(seed)
    return unroll(DBN([RBM(d, h, generator=g, weight_std=0.3), RBM(h, 6, generator=g, weight_std=0.3)]), 3,
                  generator=g), g


def _cross_entropy(net, x, y):
    with torch.no_grad():
        return float(torch.nn.functional.cross_entropy(net.eval()(x), y))


# -- conjugate gradients --------------------------------------------------------------------
@pytest.mark.parametrize("fast", [True, False])
def test_cg_lowers_the_training_loss_and_reports_it(fast):
    x, y = _data()
    net, g = _net()
    before = _cross_entropy(net, x, y)
    hist = finetune(net, x, y, FinetuneConfig(epochs=4, method="cg", cg_batch_size=100, top_only_epochs=1,
                                              fast=fast), generator=g)
    after = _cross_entropy(net, x, y)
    assert after < before - 0.05
    assert hist[0]["loss"] == pytest.approx(before, rel=0.05)  # the first batches' loss before their updates
    # each batch: one evaluation at the start, then at least one per line search (3), at most 20 each
    assert all(1 + 3 <= row["cg_evaluations_per_batch"] <= 1 + 3 * 20 for row in hist)


def test_cg_evaluations_per_batch_counts_every_call_of_the_objective(monkeypatch):
    calls = []
    real = ft_mod.cg_batch

    def counting(*args, **kwargs):
        res = real(*args, **kwargs)
        calls.append(res.evaluations)
        return res

    monkeypatch.setattr(ft_mod, "cg_batch", counting)
    x, y = _data()
    net, g = _net()
    hist = finetune(net, x, y, FinetuneConfig(epochs=2, method="cg", cg_batch_size=100, top_only_epochs=1), generator=g)
    assert [row["cg_evaluations_per_batch"] for row in hist] == [sum(calls[:3]) / 3, sum(calls[3:]) / 3]
    sgd = finetune(*_net()[:1], x, y, FinetuneConfig(epochs=1), generator=make_generator(0))
    assert "cg_evaluations_per_batch" not in sgd[0]


def test_cg_on_a_fitted_batch_keeps_its_line_searches_short():
    # A net that fits its batch far past float32's resolution of 1 - p_y (every case's loss
    # near 1e-7): the textbook loss (log_softmax) is then rounding noise at the scale of a line
    # search's decrease, and the searches ran out of evaluations (20 each). With the accurate
    # loss they meet the Wolfe conditions in a few evaluations and keep lowering the loss.
    from deepbelief.backprop import cg_batch

    x, _ = _data(n=200)
    net, g = _net()
    with torch.no_grad():
        logits = net.eval()(x)
        y = logits.argmax(1)  # labels the net gets right: a fitted batch
        top2 = logits.topk(2, 1).values
        scale = 16.0 / float((top2[:, 0] - top2[:, 1]).min())  # every margin >= 16: p_y >= 1 - 2 exp(-16)
        net.out.weight.mul_(scale)
        net.out.bias.mul_(scale)
    loss0 = _cross_entropy(net, x, y)
    assert 0 < loss0 < 1e-5
    cfg = FinetuneConfig(method="cg", cg_batch_size=200, cg_line_searches=3)
    res = cg_batch(net.train(), x, y, cfg, ft_mod.FastBackprop(net), torch.zeros(()), top_only=False)
    assert all(ls.accepted for ls in res.line_searches)
    assert res.evaluations <= 1 + 3 * 8
    assert res.f < 0.5 * loss0


def test_cg_top_only_phase_leaves_the_lower_layers_bit_identical():
    x, y = _data()
    net, g = _net()
    lower = {k: v.clone() for k, v in net.state_dict().items() if not k.startswith("out.")}
    out_before = net.out.weight.clone()
    finetune(net, x, y, FinetuneConfig(epochs=2, method="cg", cg_batch_size=100, top_only_epochs=2), generator=g)
    for k, v in net.state_dict().items():
        if k in lower:
            assert torch.equal(v, lower[k]), k
    assert not torch.equal(net.out.weight, out_before)


def test_cg_top_only_search_equals_the_full_objective_restricted_to_the_output_layer():
    """The cached-features objective of the top-only phase and its hand-written gradient
    equal autograd's on the whole net with only the output layer free."""
    x, y = _data(100)
    net, _ = _net()
    captured = {}
    from deepbelief.backprop import cg_batch as orig

    import deepbelief.cg as cg

    real = cg.minimize_cg

    def spy(fun, x0, **kw):
        captured["fun"], captured["x0"] = fun, x0.clone()
        return real(fun, x0, **kw)

    cg.minimize_cg = spy
    try:
        orig(net, x, y, FinetuneConfig(method="cg", cg_batch_size=100), None, torch.zeros(()), top_only=True)
    finally:
        cg.minimize_cg = real
    torch.set_grad_enabled(True)
    v = captured["x0"] + 0.01 * torch.randn(captured["x0"].shape, generator=torch.Generator().manual_seed(1))
    f, grad = captured["fun"](v)
    W = v[: net.out.weight.numel()].view_as(net.out.weight).clone().requires_grad_(True)
    b = v[net.out.weight.numel():].clone().requires_grad_(True)
    with torch.no_grad():
        h = net.features(x)
    loss = torch.nn.functional.cross_entropy(h @ W.T + b, y)
    loss.backward()
    assert float(f) == pytest.approx(float(loss.detach()), rel=1e-6)
    assert torch.allclose(grad, torch.cat([W.grad.reshape(-1), b.grad]), atol=1e-6)


@pytest.mark.parametrize("stop_at,carry", [(1, False), (3, False), (3, True)])
def test_cg_interrupted_and_resumed_matches_straight_run(tmp_path, stop_at, carry):
    class Interrupt(Exception):
        pass

    def interrupt(epoch, m):
        if epoch == stop_at:
            raise Interrupt

    x, y = _data()
    xv, yv = x[:60], y[:60]
    cfg = FinetuneConfig(epochs=5, method="cg", cg_batch_size=100, top_only_epochs=2, weight_decay=1e-3,
                         cg_carry_scale=carry)
    net, g = _net()
    h_straight = finetune(net, x, y, cfg, generator=g, valid=(xv, yv))
    ckpt = tmp_path / "cg.safetensors"
    net2, g2 = _net()
    with pytest.raises(Interrupt):
        finetune(net2, x, y, cfg, generator=g2, valid=(xv, yv), checkpoint=ckpt, callback=interrupt)
    net3, _ = _net()
    h_resumed = finetune(net3, x, y, cfg, generator=make_generator(99), valid=(xv, yv), checkpoint=ckpt,
                         resume=True)
    for k, v in net.state_dict().items():
        assert torch.equal(v, net3.state_dict()[k]), k
    assert [r["loss"] for r in h_straight] == [r["loss"] for r in h_resumed]


def test_cg_refuses_dropout_and_max_norm_and_checks_its_batch_size():
    with pytest.raises(ConfigError, match="cannot use dropout"):
        FinetuneConfig(method="cg", dropout=0.5).validate()
    with pytest.raises(ConfigError, match="max_norm"):
        FinetuneConfig(method="cg", max_norm=3.0).validate()
    with pytest.raises(ConfigError, match="method must be one of"):
        FinetuneConfig(method="lbfgs").validate()
    x, y = _data(50)
    net, g = _net()
    with pytest.raises(ConfigError, match="cg_batch_size must be <= the number of training rows"):
        finetune(net, x, y, FinetuneConfig(method="cg"), generator=g)


# -- dropout as published -------------------------------------------------------------------
@torch.no_grad()
def test_dropout_expected_output_equals_the_deterministic_net_exactly_for_a_linear_net():
    """Enumerating every mask of a tiny linear net: the average of the training-mode outputs
    (inverted dropout: kept units scaled by 1 / keep) equals the test-time net's output. In
    the paper's parametrisation (masks unscaled, test weights W * keep) the same net has
    weights W / keep while training: starting dropout fine-tuning from pre-trained W / keep
    gives the pre-trained expected input, which here is the unchanged W."""
    torch.manual_seed(0)  # throw-away init of the nn.Linear layers, overwritten below
    net = DeepClassifier([3, 2], ["identity"], 2, dropout=0.5, input_dropout=0.2).double()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    x = torch.randn(4, 3, generator=g, dtype=torch.float64)
    keep_in, keep_h = 0.8, 0.5
    expected = torch.zeros(4, 2, dtype=torch.float64)
    for m_in in itertools.product([0, 1], repeat=3):
        for m_h in itertools.product([0, 1], repeat=2):
            mi, mh = torch.tensor(m_in, dtype=torch.float64), torch.tensor(m_h, dtype=torch.float64)
            prob = math.prod(keep_in if m else 1 - keep_in for m in m_in) * math.prod(
                keep_h if m else 1 - keep_h for m in m_h)
            hid = net.hidden[0](x * mi / keep_in) * mh / keep_h  # the training-mode pass with this mask
            expected += prob * net.out(hid)
    net.eval()
    diff = float((expected - net(x)).abs().max())
    assert diff < 1e-12, diff
    # and DeepClassifier's own training pass draws masks with those keep probabilities
    net.train()
    gen = torch.Generator().manual_seed(2)
    mean = sum(net(x, gen) for _ in range(20_000)) / 20_000
    # Monte Carlo: each output's standard error from the per-mask outputs' spread
    samples = torch.stack([net(x, gen) for _ in range(2_000)])
    se = samples.std(0) / math.sqrt(20_000)
    assert ((mean - expected).abs() <= 5 * se + 1e-12).all()


def _paper_parametrisation_run(net, x, y, cfg, gen, epochs):
    """The oracle: SGD written out in the papers' parametrisation (Hinton et al. 2012;
    Srivastava et al. 2014) on a copy of ``net``: weights W' = W / q trained with unscaled
    masks, the test-time net W = q W'. The generator is drawn in ``finetune``'s order (a
    permutation per epoch, then per batch the input mask and one mask per hidden layer)."""
    q_in, q = 1.0 - cfg.input_dropout, 1.0 - cfg.dropout
    layers = list(net.hidden) + [net.out]
    qs = [q_in] + [q] * len(net.hidden)
    W = [(lin.weight.detach() / qq).clone().requires_grad_() for lin, qq in zip(layers, qs)]
    b = [lin.bias.detach().clone().requires_grad_() for lin in layers]
    bufs, n, bs = {}, x.shape[0], cfg.batch_size
    for epoch in range(epochs):
        perm = torch.randperm(n, generator=gen)
        m = cfg.momentum_at(epoch)
        for i in range(n // bs):
            idx = perm[i * bs:(i + 1) * bs]
            h = x[idx] * (torch.rand(x[idx].shape, generator=gen, dtype=x.dtype) >= cfg.input_dropout)
            for Wl, bl in zip(W[:-1], b[:-1]):
                a = torch.sigmoid(h @ Wl.T + bl)
                h = a * (torch.rand(a.shape, generator=gen, dtype=a.dtype) >= cfg.dropout)
            loss = torch.nn.functional.cross_entropy(h @ W[-1].T + b[-1], y[idx])
            grads = torch.autograd.grad(loss, W + b)
            with torch.no_grad():
                for k, (par, gr) in enumerate(zip(W + b, grads)):
                    gr = gr + cfg.weight_decay * par
                    damp = m if cfg.dampen_momentum else 0.0
                    bufs[k] = gr.clone() if k not in bufs else m * bufs[k] + (1 - damp) * gr
                    par -= cfg.lr * bufs[k]
    return [(Wl.detach() * qq, bl.detach()) for Wl, bl, qq in zip(W, b, qs)]


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_paper_dropout_steps_are_sgd_in_the_papers_parametrisation(fast, momentum):
    """``paper_dropout_steps``: the net after two epochs equals SGD run on W' = W / q with
    unscaled masks (the papers' parametrisation), mapped back to W = q W', for the fused step
    (momentum > 0), the hand-written step without it and autograd."""
    x, y = _data(n=60)
    x = x.double()
    net, _ = _net()
    net = net.double()
    cfg = FinetuneConfig(epochs=2, batch_size=20, lr=0.7, lr_decay=1.0, momentum=momentum, dampen_momentum=True,
                         weight_decay=1e-3, top_only_epochs=0, dropout=0.5, input_dropout=0.2, fast=fast,
                         paper_dropout_steps=True)
    want = _paper_parametrisation_run(net, x, y, cfg, make_generator(3), epochs=2)
    finetune(net, x, y, cfg, generator=make_generator(3))
    for lin, (w, bias) in zip(list(net.hidden) + [net.out], want):
        torch.testing.assert_close(lin.weight.detach(), w, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(lin.bias.detach(), bias, rtol=1e-10, atol=1e-12)
    # without the option the same rate takes 1 / q^2 times larger steps on the weights: not this run
    plain, _ = _net()
    plain = plain.double()
    finetune(plain, x, y, FinetuneConfig(**{**cfg.__dict__, "paper_dropout_steps": False}), generator=make_generator(3))
    assert not torch.allclose(plain.hidden[1].weight, net.hidden[1].weight, atol=1e-6)


def test_paper_dropout_steps_scales_by_the_keep_probability_of_each_layers_inputs():
    net = DeepClassifier([4, 3, 2], ["sigmoid", "sigmoid"], 2, dropout=0.5, input_dropout=0.2)
    assert ft_mod.weight_gradient_scales(net) == pytest.approx([0.64, 0.25, 0.25])
    with pytest.raises(ConfigError, match="paper_dropout_steps must be true or false"):
        FinetuneConfig(paper_dropout_steps="yes").validate()


def test_max_norm_holds_after_every_step():
    x, y = _data()
    net, g = _net()
    c = 0.5  # below the pre-trained rows' norms, so the constraint binds from the first step
    assert (torch.linalg.vector_norm(net.hidden[0].weight, dim=1) > c).any()
    seen = []
    real = ft_mod._max_norm_

    def check(n, cc):
        real(n, cc)
        seen.append(max(float(torch.linalg.vector_norm(lin.weight.detach(), dim=1).max()) for lin in n.hidden))

    ft_mod._max_norm_ = check
    try:
        cfg = FinetuneConfig(epochs=3, batch_size=30, lr=0.5, top_only_epochs=0, dropout=0.5, input_dropout=0.2,
                             max_norm=c)
        finetune(net, x, y, cfg, generator=g)
    finally:
        ft_mod._max_norm_ = real
    assert len(seen) == 3 * (300 // 30)  # once after each update
    assert max(seen) <= c + 1e-6


def test_max_norm_leaves_short_rows_alone():
    net, _ = _net()
    with torch.no_grad():
        net.hidden[0].weight.mul_(0.01)
    before = net.hidden[0].weight.clone()
    ft_mod._max_norm_(net, 100.0)
    assert torch.equal(before, net.hidden[0].weight)


def test_momentum_ramp_and_dampening():
    cfg = FinetuneConfig(momentum=0.5, final_momentum=0.99, momentum_ramp_epochs=10)
    assert [cfg.momentum_at(e) for e in (0, 5, 10, 50)] == pytest.approx([0.5, 0.745, 0.99, 0.99])
    assert FinetuneConfig(momentum=0.9).momentum_at(7) == 0.9
    x, y = _data()
    net, g = _net()
    hist = finetune(net, x, y, FinetuneConfig(epochs=3, batch_size=50, momentum=0.5, final_momentum=0.9,
                                              momentum_ramp_epochs=2, dampen_momentum=True, top_only_epochs=0),
                    generator=g)
    assert [r["momentum"] for r in hist] == pytest.approx([0.5, 0.7, 0.9])
    # one step of the dampened update from a warm buffer: v <- m v + (1 - m) g, w <- w - lr v
    p = torch.nn.Parameter(torch.zeros(1))
    opt = ft_mod._sgd([p], 1.0, FinetuneConfig(momentum=0.9, dampen_momentum=True))
    for _ in range(2):
        p.grad = torch.ones(1)
        opt.step()
    assert float(p.detach()) == pytest.approx(-(1 + 0.9 * 1 + 0.1 * 1))


def test_existing_defaults_are_unchanged_by_the_new_options():
    """New options off: the same run as an SGD run that never heard of them."""
    x, y = _data()
    a, ga = _net()
    b, gb = _net()
    base = FinetuneConfig(epochs=3, batch_size=50, top_only_epochs=1, dropout=0.2)
    finetune(a, x, y, base, generator=ga)
    finetune(b, x, y, FinetuneConfig(**{**base.__dict__, "method": "sgd", "max_norm": 0.0, "final_momentum": None}),
             generator=gb)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])


# -- random initialisation -------------------------------------------------------------------
@pytest.mark.parametrize("init,activation", [("glorot", "sigmoid"), ("glorot", "relu"), ("normal", "sigmoid")])
def test_random_init_matches_its_stated_distribution(init, activation):
    """Sample mean and variance of every layer's weights against the formula, within 5
    standard errors computed from the distribution's own fourth moment; biases are zero."""
    sizes = [300, 200, 100]
    net = random_classifier(sizes, 10, activation=activation, init=init, init_std=0.05, generator=make_generator(0))
    for lin in list(net.hidden) + [net.out]:
        fan_out, fan_in = lin.weight.shape
        w = lin.weight.detach().double().reshape(-1)
        n = w.numel()
        if init == "glorot":
            r = math.sqrt(6.0 / (fan_in + fan_out)) * (4.0 if activation == "sigmoid" else 1.0)
            var, fourth = r * r / 3, r ** 4 / 5  # U(-r, r): E w^2 = r^2 / 3, E w^4 = r^4 / 5
            assert float(w.abs().max()) <= r
        else:
            var, fourth = 0.05 ** 2, 3 * 0.05 ** 4
        assert abs(float(w.mean())) <= 5 * math.sqrt(var / n)
        assert abs(float((w * w).mean()) - var) <= 5 * math.sqrt((fourth - var * var) / n)
        assert torch.equal(lin.bias, torch.zeros_like(lin.bias))


def test_random_init_default_is_the_glorot_draw_it_always_was():
    a = random_classifier([20, 10], 3, generator=make_generator(5))
    g = make_generator(5)
    w = (torch.rand((10, 20), generator=g) * 2 - 1) * math.sqrt(6 / 30) * 4
    assert torch.equal(a.hidden[0].weight.detach(), w)
    with pytest.raises(ConfigError, match="init must be one of"):
        random_classifier([20, 10], 3, init="xavier", generator=make_generator(5))
