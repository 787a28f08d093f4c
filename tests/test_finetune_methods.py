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
