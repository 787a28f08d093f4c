"""Class-balanced mini-batches: exact class counts in every batch, and the trainer uses them."""

import pytest
import torch

from deepbelief.batching import BalancedOrder
from deepbelief.errors import ConfigError
from deepbelief.rbm import RBM
from deepbelief.stacking import pretrain_stack
from deepbelief.training import RBMTrainConfig, RBMTrainer, make_generator


def _labels():
    # unequal classes: 0 has 37 rows, 1 has 25, 2 has 61 (rarest: 25 -> 5 batches of 5 per class)
    y = torch.cat([torch.zeros(37), torch.ones(25), torch.full((61,), 2.0)]).long()
    return y[torch.randperm(y.numel(), generator=torch.Generator().manual_seed(3))]


def test_every_batch_holds_each_class_equally():
    y = _labels()
    order = BalancedOrder(y, batch_size=15)
    assert order.n_batches == 5
    gen = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(20):
        idx = order.order(gen)
        assert idx.numel() == 5 * 15 and idx.unique().numel() == idx.numel()  # no row twice in an epoch
        for block in idx.view(5, 15):
            assert torch.bincount(y[block], minlength=3).tolist() == [5, 5, 5]
        seen.update(idx.tolist())
    assert seen == set(range(y.numel()))  # over epochs, every row of the larger classes is drawn


def test_balanced_order_refuses_what_it_cannot_do():
    y = _labels()
    with pytest.raises(ConfigError, match="multiple of the number of classes"):
        BalancedOrder(y, batch_size=16)
    with pytest.raises(ConfigError, match="rarest class has 25"):
        BalancedOrder(y, batch_size=3 * 26)
    x = torch.rand(y.numel(), 6, generator=torch.Generator().manual_seed(1))
    gen = make_generator(0)
    with pytest.raises(ConfigError, match="needs the training labels"):
        RBMTrainer(RBM(6, 4, generator=gen), RBMTrainConfig(epochs=1, batch_size=15, balanced_batches=True),
                   gen).fit(x)


def test_balanced_batches_are_the_order_the_generator_gives():
    """The trainer's epoch order is exactly BalancedOrder.order with the run's generator."""
    y = _labels()
    x = torch.arange(y.numel(), dtype=torch.float32).unsqueeze(1).repeat(1, 3) / y.numel()
    gen = make_generator(5)
    rbm = RBM(3, 2, generator=gen)
    trainer = RBMTrainer(rbm, RBMTrainConfig(epochs=1, batch_size=15, balanced_batches=True, monitor_size=4), gen)
    visited = []
    trainer.step = lambda v, lr, mom: visited.append((v[:, 0] * y.numel()).round().long())
    state = gen.get_state()
    trainer.fit(x, labels=y)
    gen.set_state(state)
    expected = BalancedOrder(y, 15).order(gen)
    assert torch.equal(torch.cat(visited), expected)
    for block in torch.cat(visited).view(-1, 15):
        assert torch.bincount(y[block], minlength=3).tolist() == [5, 5, 5]


def test_weight_std_of_each_config_sets_the_initial_weights():
    x = torch.rand(50, 200, generator=torch.Generator().manual_seed(0))
    cfgs = [RBMTrainConfig(epochs=0, batch_size=10, weight_std=0.1),
            RBMTrainConfig(epochs=0, batch_size=10, weight_std=0.01)]
    stack = pretrain_stack(x, [200, 300, 300], cfgs, generator=make_generator(0))
    for rbm, s in zip(stack.rbms, (0.1, 0.01)):
        n = rbm.W.numel()
        # the sample std of n normal draws has standard error s / sqrt(2n)
        assert abs(float(rbm.W.detach().std()) - s) < 5 * s / (2 * n) ** 0.5
