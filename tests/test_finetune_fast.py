"""The hand-written fine-tuning step (backprop.FastBackprop) against its oracle, autograd."""

import pytest
import torch
import torch.nn.functional as F

from deepbelief import ConfigError, DeepClassifier, FinetuneConfig, finetune, make_generator
from deepbelief.finetune import FastBackprop, _sgd, random_classifier

ACTS = ["sigmoid", "relu", "softplus", "identity"]


def _net(act, dropout, dtype, seed=0):
    g = make_generator(seed)
    net = random_classifier([12, 9, 7], 5, activation=act, generator=g, dropout=dropout, input_dropout=dropout / 2)
    with torch.no_grad():  # non-zero biases, so their gradients are exercised too
        for lin in list(net.hidden) + [net.out]:
            lin.bias.copy_(torch.randn(lin.bias.shape, generator=g) * 0.5)
    return net.to(dtype).train()


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("top_only", [False, True])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
@pytest.mark.parametrize("act", ACTS)
def test_gradients_equal_autograd(act, dropout, top_only, dtype, tol):
    net = _net(act, dropout, dtype)
    x = torch.rand(8, 12, dtype=dtype, generator=make_generator(1)) * 4 - 2
    y = torch.randint(0, 5, (8,), generator=make_generator(2))
    params = list(net.parameters())
    gen = make_generator(3)
    loss = F.cross_entropy(net(x, gen), y)
    want = torch.autograd.grad(loss, params)
    after_autograd = gen.get_state()

    gen = make_generator(3)
    loss_sum = torch.zeros((), dtype=dtype)
    FastBackprop(net).step(x, y, gen, loss_sum, top_only=top_only)
    assert torch.equal(gen.get_state(), after_autograd)  # the same random numbers were drawn
    torch.testing.assert_close(loss_sum, loss.detach(), rtol=tol, atol=0)
    top = {id(net.out.weight), id(net.out.bias)}
    for p, g in zip(params, want):
        if top_only and id(p) not in top:
            assert p.grad is None  # the backward pass stops at the output layer
            continue
        scale = float(g.abs().max())
        assert float((p.grad - g).abs().max()) <= tol * scale, (act, dropout, top_only, p.shape)


def test_inputs_are_not_modified_and_eval_mode_draws_nothing():
    net = _net("sigmoid", 0.5, torch.float32)
    x = torch.rand(6, 12, generator=make_generator(1))
    y = torch.randint(0, 5, (6,), generator=make_generator(2))
    x0 = x.clone()
    FastBackprop(net).step(x, y, make_generator(0), torch.zeros(()))
    assert torch.equal(x, x0)
    net.eval()
    gen = make_generator(0)
    state = gen.get_state()
    FastBackprop(net).step(x, y, gen, torch.zeros(()))
    assert torch.equal(gen.get_state(), state)


def test_buffers_follow_the_batch_size():
    net = _net("relu", 0.2, torch.float64)
    fast = FastBackprop(net)
    for b in (8, 5, 8):
        x = torch.rand(b, 12, dtype=torch.float64, generator=make_generator(b))
        y = torch.randint(0, 5, (b,), generator=make_generator(b + 1))
        want = torch.autograd.grad(F.cross_entropy(net(x, make_generator(9)), y), list(net.parameters()))
        fast.step(x, y, make_generator(9), torch.zeros((), dtype=torch.float64))
        for p, g in zip(net.parameters(), want):
            torch.testing.assert_close(p.grad, g, rtol=1e-12, atol=1e-14)


def _data(n=240, d=20, seed=5):
    g = make_generator(seed)
    x = torch.rand(n, d, generator=g)
    y = (x[:, 0] > 0.5).long() + 2 * (x[:, 1] > 0.5).long()  # four learnable, balanced classes
    return x, y


@pytest.mark.parametrize("act,dropout", [("sigmoid", 0.0), ("sigmoid", 0.3), ("relu", 0.2), ("softplus", 0.0)])
def test_finetune_fast_equals_autograd_run(act, dropout):
    x, y = _data()
    xv, yv = _data(60, seed=6)
    results = []
    for fast in (False, True):
        net = random_classifier([20, 16, 12], 4, activation=act, generator=make_generator(0))
        cfg = FinetuneConfig(epochs=4, batch_size=20, lr=0.1, momentum=0.9, top_only_epochs=1, weight_decay=1e-4,
                             dropout=dropout, input_dropout=dropout / 2, fast=fast)
        hist = finetune(net, x, y, cfg, generator=make_generator(7), valid=(xv, yv))
        results.append((net.state_dict(), hist))
    (w_slow, h_slow), (w_fast, h_fast) = results
    for k in w_slow:
        torch.testing.assert_close(w_fast[k], w_slow[k], rtol=1e-5, atol=1e-6)
    for a, b in zip(h_slow, h_fast):
        assert abs(a["loss"] - b["loss"]) <= 1e-5 * abs(a["loss"])
        assert a["valid_error"] == b["valid_error"]


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("top_only", [False, True])
@pytest.mark.parametrize("momentum,dampening,wd", [(0.9, 0.0, 0.0), (0.5, 0.5, 1e-3), (0.99, 0.99, 0.0)])
def test_fused_sgd_step_equals_step_then_torch_sgd(momentum, dampening, wd, top_only, dtype, tol):
    # the oracle: FastBackprop's gradient into .grad, then torch.optim.SGD.step(); the fused
    # step accumulates the gradient's product into the momentum buffer and updates in place
    nets = [_net("sigmoid", 0.3, dtype) for _ in range(2)]
    opts = []
    for net in nets:
        params = list(net.out.parameters()) if top_only else list(net.parameters())
        opts.append(torch.optim.SGD(params, lr=0.3, momentum=momentum, dampening=dampening, weight_decay=wd))
    assert FastBackprop.fuses(opts[1])
    steps = [FastBackprop(net) for net in nets]
    gens = [make_generator(3), make_generator(3)]
    sums = [torch.zeros((), dtype=dtype) for _ in nets]
    for t in range(4):  # the first step makes the buffers, the later ones decay them
        x = torch.rand(8, 12, dtype=dtype, generator=make_generator(10 + t)) * 4 - 2
        y = torch.randint(0, 5, (8,), generator=make_generator(20 + t))
        steps[0].step(x, y, gens[0], sums[0], top_only=top_only)
        opts[0].step()
        steps[1].step(x, y, gens[1], sums[1], top_only=top_only, sgd=opts[1])
    assert torch.equal(gens[0].get_state(), gens[1].get_state())
    torch.testing.assert_close(sums[1], sums[0], rtol=tol, atol=0)
    for (name, want), got in zip(nets[0].named_parameters(), nets[1].parameters()):
        want, got = want.detach(), got.detach()
        assert float((got - want).abs().max()) <= tol * float(want.abs().max()), name
    for p0, p1 in zip(opts[0].param_groups[0]["params"], opts[1].param_groups[0]["params"]):
        b0, b1 = opts[0].state[p0]["momentum_buffer"], opts[1].state[p1]["momentum_buffer"]
        assert float((b1 - b0).abs().max()) <= tol * float(b0.abs().max())
    if top_only:  # the frozen layers did not move
        fresh = _net("sigmoid", 0.3, dtype)
        for lin, lin0 in zip(nets[1].hidden, fresh.hidden):
            assert torch.equal(lin.weight, lin0.weight) and torch.equal(lin.bias, lin0.bias)


def test_fused_sgd_only_for_plain_momentum_sgd():
    p = [torch.nn.Parameter(torch.zeros(3))]
    assert FastBackprop.fuses(torch.optim.SGD(p, lr=0.1, momentum=0.9))
    assert not FastBackprop.fuses(torch.optim.SGD(p, lr=0.1))  # no momentum buffer to fuse into
    assert not FastBackprop.fuses(torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True))
    assert not FastBackprop.fuses(torch.optim.Adam(p))
    assert not FastBackprop.fuses(None)


def test_fast_must_be_a_bool():
    with pytest.raises(ConfigError, match="fast must be true or false"):
        FinetuneConfig(fast="yes").validate()
    assert FinetuneConfig.from_dict({"fast": False}).fast is False


def test_subclass_with_its_own_forward_uses_autograd():
    class Scaled(DeepClassifier):
        def forward(self, x, gen=None):
            return 2 * super().forward(x, gen)

    net = Scaled([4, 3], ["sigmoid"], 2)
    assert not FastBackprop.supports(net)
    assert FastBackprop.supports(DeepClassifier([4, 3], ["sigmoid"], 2))


def test_checkpoint_resumes_across_paths(tmp_path, interrupt):
    x, y = _data()
    cfg = FinetuneConfig(epochs=4, batch_size=20, lr=0.1, top_only_epochs=1, dropout=0.2)
    straight = random_classifier([20, 16, 12], 4, generator=make_generator(0))
    finetune(straight, x, y, cfg, generator=make_generator(7))

    ckpt = tmp_path / "ft.ckpt"
    net = random_classifier([20, 16, 12], 4, generator=make_generator(0))
    with pytest.raises(interrupt.Stop):
        finetune(net, x, y, cfg, generator=make_generator(7), checkpoint=ckpt, callback=interrupt(1))
    resumed = random_classifier([20, 16, 12], 4, generator=make_generator(0))
    slow = FinetuneConfig(**{**cfg.__dict__, "fast": False})
    finetune(resumed, x, y, slow, generator=make_generator(99), checkpoint=ckpt, resume=True)
    for k, v in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=1e-5, atol=1e-6)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
@pytest.mark.parametrize("act", ACTS)
def test_gradients_equal_autograd_on_cuda(act):
    net = _net(act, 0.3, torch.float32).cuda()
    x = torch.rand(64, 12, device="cuda", generator=make_generator(1, "cuda"))
    y = torch.randint(0, 5, (64,), device="cuda", generator=make_generator(2, "cuda"))
    want = torch.autograd.grad(F.cross_entropy(net(x, make_generator(3, "cuda")), y), list(net.parameters()))
    FastBackprop(net).step(x, y, make_generator(3, "cuda"), torch.zeros((), device="cuda"))
    for p, g in zip(net.parameters(), want):
        assert float((p.grad - g).abs().max()) <= 1e-5 * float(g.abs().max())


@cuda
def test_fused_sgd_on_cuda_resumes_bit_for_bit_and_matches_autograd(tmp_path, interrupt):
    x, y = (t.cuda() for t in _data())
    cfg = FinetuneConfig(epochs=4, batch_size=20, lr=0.1, top_only_epochs=1, dropout=0.2)

    def fresh():
        return random_classifier([20, 16, 12], 4, generator=make_generator(0, "cuda"), device="cuda")

    straight = fresh()
    assert _sgd(straight.parameters(), 0.1, cfg).defaults.get("fused")  # one kernel per step on CUDA
    finetune(straight, x, y, cfg, generator=make_generator(7, "cuda"))
    slow = fresh()
    finetune(slow, x, y, FinetuneConfig(**{**cfg.__dict__, "fast": False}), generator=make_generator(7, "cuda"))
    ckpt = tmp_path / "ft.ckpt"

    with pytest.raises(interrupt.Stop):
        finetune(fresh(), x, y, cfg, generator=make_generator(7, "cuda"), checkpoint=ckpt, callback=interrupt(1))
    resumed = fresh()
    finetune(resumed, x, y, cfg, generator=make_generator(99, "cuda"), checkpoint=ckpt, resume=True)
    for k, v in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[k], v), k
        torch.testing.assert_close(slow.state_dict()[k], v, rtol=1e-4, atol=1e-5)


def test_recipe_checkpoint_dir_from_before_the_option_still_resumes(tmp_path):
    import json

    from deepbelief.recipes import get_recipe
    from deepbelief.run_folder import prepare as _prepare_checkpoint_dir

    _prepare_checkpoint_dir(tmp_path, get_recipe("default"), 0, resume=False)
    run = json.loads((tmp_path / "run.json").read_text())
    del run["recipe"]["finetune"]["fast"]  # as written before FinetuneConfig.fast existed
    (tmp_path / "run.json").write_text(json.dumps(run))
    _prepare_checkpoint_dir(tmp_path, get_recipe("default"), 0, resume=True)
    r = get_recipe("default")
    r.finetune.fast = False
    _prepare_checkpoint_dir(tmp_path, r, 0, resume=True)


@pytest.mark.parametrize("scale", [1.0, 10.0, 30.0])
def test_cross_entropy_and_delta_are_accurate_relative_to_their_size(scale):
    # oracle in float64 without cancellation: -log p_y = softplus(logsumexp_{j != y}(z_j - z_y)),
    # p_j = exp(z_j - z_y) / (1 + S), p_y - 1 = -S / (1 + S), S = sum_{j != y} exp(z_j - z_y)
    from deepbelief.backprop import cross_entropy_and_delta

    z = (torch.randn(400, 10, generator=make_generator(0)) * scale).double()
    y = torch.randint(0, 10, (400,), generator=make_generator(1))
    onehot = F.one_hot(y, 10).bool()
    diff = (z - z.gather(1, y[:, None])).masked_fill(onehot, -float("inf"))
    want_loss = F.softplus(torch.logsumexp(diff, 1))
    S = diff.exp().sum(1, keepdim=True)
    want_delta = torch.where(onehot, -S / (1 + S), diff.exp() / (1 + S))

    loss, delta = cross_entropy_and_delta(z.float(), onehot)
    # exp(x) of a float32 x carries a relative error of about |x| eps: the bound grows with the logits
    tol = 4 * torch.finfo(torch.float32).eps * (1 + float(z.abs().max()))
    ok = want_loss > 1e-30  # representable in float32 with room
    rel = ((loss.double() - want_loss).abs() / want_loss)[ok]
    assert rel.max() < tol, (float(rel.max()), tol)
    okd = want_delta.abs() > 1e-30
    rel_d = ((delta.double() - want_delta).abs() / want_delta.abs())[okd]
    assert rel_d.max() < tol, (float(rel_d.max()), tol)
    if scale >= 30:  # what log_softmax gives in float32 for sure cases: no relative accuracy at all
        naive = -torch.log_softmax(z.float(), 1).gather(1, y[:, None]).squeeze(1).double()
        assert ((naive - want_loss).abs() / want_loss)[ok].max() > 0.1
    # float64 in, float64 out, and the same as the textbook formulae where those are accurate
    loss64, delta64 = cross_entropy_and_delta(z, onehot)
    torch.testing.assert_close(loss64, F.cross_entropy(z, y, reduction="none"), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(delta64, torch.softmax(z, 1) - onehot.double(), rtol=1e-9, atol=1e-12)
