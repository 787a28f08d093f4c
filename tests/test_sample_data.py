"""``RBMTrainConfig.sample_data``: every mini-batch is a fresh Bernoulli draw of its rows of
probabilities. Oracles: the draws of each row average to its probabilities (binomial
tolerance), and the positive-phase statistic that training sees averages to its exact
expectation under the data's mixture of factorial distributions (enumerated), which differs
from the statistic at the probabilities themselves."""

import itertools
import math

import pytest
import torch

from deepbelief.errors import ConfigError, DataError
from deepbelief.rbm import RBM
from deepbelief.trainer import RBMTrainer
from deepbelief.training import RBMTrainConfig, train_rbm
from deepbelief.units import Bernoulli, Gaussian

N_ROWS, N_VIS, N_HID = 4, 6, 3


def _data():
    """Rows whose first two columns are exact 0/1 (the row's index in binary, so a draw tells
    its row) and whose other columns are probabilities strictly inside (0, 1)."""
    g = torch.Generator().manual_seed(3)
    p = 0.1 + 0.8 * torch.rand(N_ROWS, N_VIS, generator=g, dtype=torch.float64)
    for r in range(N_ROWS):
        p[r, 0], p[r, 1] = r // 2, r % 2
    return p


def _recorded_batches(cfg, data, epochs):
    """The batches ``fit`` hands to ``step`` over ``epochs`` epochs (the model is not updated)."""
    rbm = RBM(N_VIS, N_HID, generator=torch.Generator().manual_seed(0)).double()
    trainer = RBMTrainer(rbm, cfg, torch.Generator().manual_seed(1))
    seen = []
    trainer.step = lambda v0, lr, mom: seen.append(v0.clone())
    cfg.epochs = epochs
    trainer.fit(data)
    return torch.cat(seen)


def test_sample_data_draws_each_row_from_its_probabilities():
    data = _data()
    cfg = RBMTrainConfig(batch_size=2, sample_data=True, init_visible_bias=False).validate()
    draws = _recorded_batches(cfg, data, epochs=1500)
    assert set(draws.unique().tolist()) <= {0.0, 1.0}
    row = (2 * draws[:, 0] + draws[:, 1]).long()
    for r in range(N_ROWS):
        mine = draws[row == r]
        count = mine.shape[0]
        assert count > 1000  # 6,000 draws in all, about 1,500 per row
        p = data[r]
        sd = torch.sqrt(p * (1 - p) / count).clamp_min(1e-12)
        z = (mine.mean(0) - p) / sd
        # 4.5 standard deviations on 4 x 4 free entries: a false alarm has probability < 1e-4
        assert z[2:].abs().max() < 4.5, z
        assert torch.equal(mine[:, :2].mean(0), p[:2])  # exact 0/1 entries stay exact


def test_without_sample_data_batches_are_the_rows_themselves():
    data = _data()
    cfg = RBMTrainConfig(batch_size=2, init_visible_bias=False).validate()
    seen = _recorded_batches(cfg, data, epochs=3)
    rows = {tuple(r.tolist()) for r in data}
    assert all(tuple(b.tolist()) in rows for b in seen)


def test_positive_statistic_is_its_expectation_under_the_mixture():
    """E[v h(v)^T] with h(v) = sigmoid(v W + c): by enumeration over the mixture
    q(v) = mean_n prod_i p_ni^v_i (1 - p_ni)^(1 - v_i), against the average over many drawn
    batches; the statistic at the probabilities is a different number (the draws are not a
    no-op on what training sees)."""
    data = _data()[:, 2:]  # four free columns: 16 states
    n_vis = data.shape[1]
    rbm = RBM(n_vis, N_HID, generator=torch.Generator().manual_seed(5)).double()
    with torch.no_grad():
        rbm.W.mul_(200.0)  # weights of order 2: the statistic is far from linear in v
    states = torch.tensor(list(itertools.product([0.0, 1.0], repeat=n_vis)), dtype=torch.float64)
    q = ((data[:, None, :] ** states) * ((1 - data[:, None, :]) ** (1 - states))).prod(-1).mean(0)  # (16,)
    assert math.isclose(q.sum().item(), 1.0, rel_tol=1e-12)
    with torch.no_grad():
        stat = states[:, :, None] * rbm.mean_hidden(states)[:, None, :]  # (16, n_vis, n_hid)
        exact = (q[:, None, None] * stat).sum(0)
        sd = ((q[:, None, None] * stat ** 2).sum(0) - exact ** 2).clamp_min(0).sqrt()
        at_probs = (data[:, :, None] * rbm.mean_hidden(data)[:, None, :]).mean(0)

    cfg = RBMTrainConfig(batch_size=4, sample_data=True, init_visible_bias=False, epochs=1).validate()
    trainer = RBMTrainer(RBM(n_vis, N_HID, generator=torch.Generator().manual_seed(0)).double(), cfg,
                         torch.Generator().manual_seed(2))
    seen = []
    trainer.step = lambda v0, lr, mom: seen.append(v0.clone())
    cfg.epochs = 4000
    trainer.fit(data)
    v = torch.cat(seen)
    with torch.no_grad():
        mc = (v[:, :, None] * rbm.mean_hidden(v)[:, None, :]).mean(0)
    n = v.shape[0]
    assert ((mc - exact).abs() <= 4.5 * sd / math.sqrt(n) + 1e-12).all()
    # the statistic at the probabilities is outside that tolerance somewhere
    assert ((at_probs - exact).abs() > 10 * sd / math.sqrt(n)).any()


def test_sample_data_trains_and_resumes_like_any_run(tmp_path):
    """A run with sample_data draws from the run's generator: two runs from the same seed
    agree bit for bit, and a run resumed from its checkpoint equals an unbroken one."""
    data = _data()[:, 2:].float()

    def run(epochs, ckpt=None, resume=False):
        rbm = RBM(data.shape[1], N_HID, generator=torch.Generator().manual_seed(0))
        gen = torch.Generator().manual_seed(9)
        cfg = RBMTrainConfig(epochs=epochs, batch_size=2, method="pcd", n_chains=2, sample_data=True)
        if ckpt and resume:
            # the first leg: 3 epochs into the checkpoint, then the rest resumed from it
            train_rbm(rbm, data, RBMTrainConfig(**{**cfg.__dict__, "epochs": 3}), generator=gen, checkpoint=ckpt)
            rbm = RBM(data.shape[1], N_HID, generator=torch.Generator().manual_seed(0))
            gen = torch.Generator().manual_seed(123)  # replaced by the checkpoint's state
        train_rbm(rbm, data, cfg, generator=gen, checkpoint=ckpt, resume=resume)
        return rbm

    a, b = run(6), run(6)
    assert torch.equal(a.W, b.W)
    c = run(6, ckpt=tmp_path / "r.ckpt.safetensors", resume=True)
    assert torch.equal(a.W, c.W)


def test_sample_data_refuses_what_it_cannot_draw():
    g = torch.Generator().manual_seed(0)
    cfg = RBMTrainConfig(epochs=1, batch_size=2, sample_data=True)
    with pytest.raises(ConfigError, match="sample_data.*Bernoulli visible units.*Gaussian"):
        train_rbm(RBM(Gaussian(3), Bernoulli(2), generator=g), torch.rand(4, 3), cfg, generator=g)
    with pytest.raises(DataError, match=r"data must lie in \[0, 1\].*got values in \[-0.5, 1\]"):
        train_rbm(RBM(3, 2, generator=g), torch.tensor([[-0.5, 1.0, 0.2]] * 4), cfg, generator=g)
    with pytest.raises(ConfigError, match="sample_data must be true or false, got 'yes'"):
        RBMTrainConfig(sample_data="yes").validate()


def test_a_stack_layer_with_sample_data_trains_on_draws_of_the_layer_below(monkeypatch):
    """pretrain_stack hands the next RBM the hidden means of the one below; with
    sample_data on that RBM's config, each of its batches is a binary draw of them."""
    from deepbelief import stacking

    data = (torch.rand(40, 6, generator=torch.Generator().manual_seed(4)) < 0.5).float()
    seen = []
    real_step = RBMTrainer.step

    def spy(self, v0, lr, mom):
        if self.rbm.n_visible == 4:  # the second RBM
            seen.append(v0.clone())
        return real_step(self, v0, lr, mom)

    cfgs = [RBMTrainConfig(epochs=2, batch_size=10), RBMTrainConfig(epochs=2, batch_size=10, sample_data=True)]
    monkeypatch.setattr(RBMTrainer, "step", spy)
    dbn = stacking.pretrain_stack(data, [6, 4, 3], cfgs, generator=torch.Generator().manual_seed(0))
    assert len(seen) == 8 and all(set(b.unique().tolist()) <= {0.0, 1.0} for b in seen)
    assert len(dbn.rbms) == 2
