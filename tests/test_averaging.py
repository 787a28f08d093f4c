"""Averaging of the parameter iterates (``average_decay``, averaging.py): the average follows
its closed form over the recorded iterates, averaging never changes the iterates themselves,
callbacks and the returned model see the average, and a resumed run equals an unbroken one
(the warm-up's clock included)."""

import pytest
import torch

from deepbelief.averaging import IterateAverage
from deepbelief.errors import ConfigError, ModelFileError
from deepbelief.rbm import RBM
from deepbelief.trainer import RBMTrainer
from deepbelief.training import RBMTrainConfig, train_rbm

DATA = (torch.rand(60, 7, generator=torch.Generator().manual_seed(0)) < 0.4).double()


def _config(decay, epochs=3, method="pcd", **kw):
    return RBMTrainConfig(epochs=epochs, batch_size=10, method=method, n_chains=10, lr=0.1, momentum=0.5,
                          final_momentum=0.5, average_decay=decay, **kw)


def _closed_form(start, iterates, d):
    """a_n = sum_t c_t theta_t over the recorded iterates theta_1..n, with w_t = max(1 - d, 1 / t)
    and c_t = w_t prod_{s > t} (1 - w_s): the plain mean for the first 1 / (1 - d) updates, then
    weights falling as d^(n - t). The start theta_0 has weight prod_s (1 - w_s) = 0 (w_1 = 1);
    with no update the average is the start."""
    n = len(iterates)
    if n == 0:
        return [s.clone() for s in start]
    w = [max(1 - d, 1 / t) for t in range(1, n + 1)]
    out = [torch.zeros_like(s) for s in start]
    for t, th in enumerate(iterates, start=1):
        c = w[t - 1]
        for s_ in range(t + 1, n + 1):
            c *= 1 - w[s_ - 1]
        out = [o + c * x for o, x in zip(out, th)]
    return out


def test_the_average_warms_up_as_the_plain_mean_then_forgets_geometrically():
    """The weights: the first 1 / (1 - d) updates are averaged uniformly (the start drops out
    at the first update), after that each earlier iterate's weight shrinks by d per update."""
    d = 0.75  # 1 / (1 - d) = 4
    p = torch.zeros(3, dtype=torch.float64)
    avg = IterateAverage([p], d)
    seen = []
    for t in range(1, 9):
        p.copy_(torch.full((3,), float(t * t)))
        seen.append(p.clone())
        avg.update_()
        if t <= 4:
            assert torch.allclose(avg.values[0], torch.stack(seen).mean(0), rtol=0, atol=1e-12)
    want = _closed_form([torch.full((3,), 123.0, dtype=torch.float64)], [[x] for x in seen], d)[0]
    assert torch.allclose(avg.values[0], want, rtol=0, atol=1e-12)
    # after the warm-up: exactly the moving average with weight 1 - d
    mean4 = torch.stack(seen[:4]).mean(0)
    ema = mean4
    for x in seen[4:]:
        ema = d * ema + (1 - d) * x
    assert torch.allclose(avg.values[0], ema, rtol=0, atol=1e-12)


def _trainer(decay, seed=3, **kw):
    gen = torch.Generator().manual_seed(seed)
    rbm = RBM(7, 4, generator=gen).double()
    return RBMTrainer(rbm, _config(decay, **kw), gen)


@pytest.mark.parametrize("method", ["pcd", "cd", "fpcd"])
def test_average_is_the_closed_form_over_the_iterates(method):
    d = 0.9
    t = _trainer(d, method=method)
    iterates = []
    update = t.average.update_

    def record():
        iterates.append([p.detach().clone() for p in t.params])
        update()

    t.average.update_ = record
    t.fit(DATA)
    held = t.average._held  # the iterate, kept while the average is in the model
    assert len(iterates) == 3 * 6
    # theta_0: the parameters at the start of fit (visible biases already set from the data)
    theta0 = _trainer(d, method=method)
    theta0.rbm.init_visible_bias_(DATA)
    want = _closed_form([p.detach() for p in theta0.params], iterates, d)
    for i, p in enumerate(t.params):
        torch.testing.assert_close(p.detach(), want[i], rtol=1e-12, atol=1e-12)  # the model holds the average
        assert torch.equal(held[i], iterates[-1][i])  # and the trainer keeps the last iterate


def test_averaging_leaves_the_iterates_alone_and_callbacks_see_the_average():
    plain, averaged = _trainer(0.0), _trainer(0.95)
    seen = []

    def look(epoch, m):  # noqa: ARG001
        seen.append((averaged.rbm.W.detach().clone(), averaged.average.values[averaged.w_index].clone()))

    plain.fit(DATA)
    averaged.fit(DATA, callback=look)
    assert len(seen) == 3 and all(torch.equal(w, a) for w, a in seen)
    # bit for bit the same iterates (the same random numbers, the same updates)
    with averaged.average.iterate():
        for p, q in zip(averaged.params, plain.params):
            assert torch.equal(p, q)
    assert not torch.allclose(averaged.rbm.W, plain.rbm.W, atol=1e-3)  # the model returned differs
    # a second fit() goes on from the iterate, not from the average
    more = _config(0.95, epochs=4)
    averaged.cfg, plain.cfg = more, _config(0.0, epochs=4)
    plain.fit(DATA)
    averaged.fit(DATA)
    with averaged.average.iterate():
        assert torch.equal(averaged.rbm.W, plain.rbm.W)


def test_a_resumed_run_equals_an_unbroken_one(tmp_path):
    def run(epochs, ck=None, resume=False, seed=6):
        gen = torch.Generator().manual_seed(seed)
        rbm = RBM(7, 4, generator=gen)
        train_rbm(rbm, DATA.float(), _config(0.9, epochs=epochs), generator=gen, checkpoint=ck, resume=resume)
        return rbm

    straight = run(3)
    ck = tmp_path / "ck.safetensors"
    run(1, ck=ck)
    resumed = run(3, ck=ck, resume=True, seed=99)
    for a, b in zip(resumed.parameters(), straight.parameters()):
        assert torch.equal(a, b)


def test_a_checkpoint_without_the_average_is_refused(tmp_path):
    t = _trainer(0.9)
    t.fit(DATA)
    tensors = t.state_tensors()
    del tensors["average.W"]
    with pytest.raises(ModelFileError, match="average of 'W'"):
        t.average.load_(tmp_path / "x", tensors, t.names)


def test_the_count_is_checkpointed_and_an_older_checkpoint_continues_the_plain_moving_average(tmp_path):
    """A checkpoint holds the warm-up's clock (a resumed run in its warm-up resumes it, see the
    test above); one written before the warm-up existed has no clock and goes on with the
    weight 1 - d, as the run that wrote it did."""
    from deepbelief.averaging import COUNT_KEY

    t = _trainer(0.9)
    t.fit(DATA)
    tensors = t.state_tensors()
    assert int(tensors[COUNT_KEY][0]) == 3 * 6 == t.average.count
    del tensors[COUNT_KEY]
    fresh = IterateAverage([p.detach().clone() for p in t.params], 0.9)
    fresh.load_(tmp_path / "x", tensors, t.names)
    assert fresh.weight(fresh.count + 1) == 1 - 0.9 and fresh.weight(fresh.count + 1000) == 1 - 0.9


def test_install_swap_and_iterate_restore_exactly():
    p = [torch.tensor([1.0, 2.0]), torch.tensor([3.0])]
    a = IterateAverage(p, 0.5)
    a.update_()  # update 1: a = theta_1 = [1, 2]
    p[0].add_(2.0)
    a.update_()  # update 2: w = max(0.5, 1/2): a = 0.5 * [1, 2] + 0.5 * [3, 4]
    assert torch.equal(a.values[0], torch.tensor([2.0, 3.0]))
    with a.swapped():
        assert torch.equal(p[0], torch.tensor([2.0, 3.0]))
        with a.iterate():
            assert torch.equal(p[0], torch.tensor([3.0, 4.0]))
        assert torch.equal(p[0], torch.tensor([2.0, 3.0]))
    assert torch.equal(p[0], torch.tensor([3.0, 4.0])) and not a.installed


@pytest.mark.parametrize("kw,said", [({"average_decay": 1.0}, r"average_decay must be in \[0, 1\)"),
                                     ({"average_decay": -0.1}, "average_decay"),
                                     ({"average_decay": 0.9, "centering": True}, "does not combine with centering")])
def test_bad_settings_are_named(kw, said):
    with pytest.raises(ConfigError, match=said):
        RBMTrainConfig(**kw).validate()


# -- fine-tuning (FinetuneConfig.average_decay) ------------------------------------------------
import sys  # noqa: E402

from deepbelief import averaging  # noqa: E402
from deepbelief.finetune import FinetuneConfig, error_rate, finetune, random_classifier  # noqa: E402

finetune_module = sys.modules["deepbelief.finetune"]  # the package exports the function under that name
from deepbelief.training import make_generator  # noqa: E402


def _xy(n=200, d=12, seed=5):
    g = make_generator(seed)
    x = torch.rand(n, d, generator=g)
    return x, (x[:, 0] > 0.5).long() + 2 * (x[:, 1] > 0.5).long()


def _ft_config(decay, epochs=4, **kw):
    return FinetuneConfig(epochs=epochs, batch_size=20, lr=0.3, momentum=0.5, top_only_epochs=1, dropout=0.2,
                          average_decay=decay, **kw)


def test_finetuning_returns_the_average_of_the_best_epoch_and_validates_it(monkeypatch):
    log, ends = [], []

    class Recording(averaging.IterateAverage):
        def update_(self):
            log.append([p.detach().double().clone() for p in self.params])
            super().update_()

    monkeypatch.setattr(finetune_module, "IterateAverage", Recording)
    x, y = _xy()
    xv, yv = _xy(100, seed=6)
    d = 0.8
    net = random_classifier([12, 10, 8], 4, generator=make_generator(0))
    start = [p.detach().double().clone() for p in net.parameters()]
    hist = finetune(net, x, y, _ft_config(d), generator=make_generator(7), valid=(xv, yv),
                    callback=lambda e, m: ends.append(len(log)))
    assert ends == [10, 20, 30, 40]  # 200 rows / 20 per batch, every epoch (the top-only one too)
    probe = random_classifier([12, 10, 8], 4, generator=make_generator(0))
    for epoch, n in enumerate(ends):  # each epoch's validation error is the average's
        with torch.no_grad():
            for p, a in zip(probe.parameters(), _closed_form(start, log[:n], d)):
                p.copy_(a)
        assert hist[epoch]["valid_error"] == pytest.approx(float(error_rate(probe, xv, yv)), abs=1e-12)
    best = hist[-1]["best_epoch"]
    for p, a in zip(net.parameters(), _closed_form(start, log[: ends[best]], d)):
        torch.testing.assert_close(p.detach().double(), a, rtol=1e-5, atol=1e-6)


def test_finetuning_iterates_are_unchanged_and_resume_bit_for_bit(tmp_path, interrupt):
    x, y = _xy()
    plain = random_classifier([12, 10, 8], 4, generator=make_generator(0))
    finetune(plain, x, y, _ft_config(0.0), generator=make_generator(7))
    straight = random_classifier([12, 10, 8], 4, generator=make_generator(0))
    ck = tmp_path / "ft.ckpt"
    finetune(straight, x, y, _ft_config(0.9), generator=make_generator(7), checkpoint=ck)
    tensors, _ = finetune_module.ck.load_run(ck, kind="finetune_checkpoint", model=straight.config(),
                                             train=_ft_config(0.9), device="cpu", generator=make_generator(1))
    for k, v in plain.state_dict().items():  # the checkpoint's weights are the iterate: the plain run's
        assert torch.equal(tensors[f"net.{k}"], v)
    assert not torch.allclose(straight.out.weight, plain.out.weight, atol=1e-4)  # the returned average differs
    ck2 = tmp_path / "ft2.ckpt"
    net = random_classifier([12, 10, 8], 4, generator=make_generator(0))
    with pytest.raises(interrupt.Stop):
        finetune(net, x, y, _ft_config(0.9), generator=make_generator(7), checkpoint=ck2, callback=interrupt(1))
    resumed = random_classifier([12, 10, 8], 4, generator=make_generator(0))
    finetune(resumed, x, y, _ft_config(0.9), generator=make_generator(99), checkpoint=ck2, resume=True)
    for a, b in zip(resumed.parameters(), straight.parameters()):
        assert torch.equal(a, b)


def test_finetuning_average_decay_is_checked():
    with pytest.raises(ConfigError, match=r"average_decay must be in \[0, 1\)"):
        FinetuneConfig(average_decay=1.5).validate()
    with pytest.raises(ConfigError, match="average_decay is for method 'sgd'"):
        FinetuneConfig(method="cg", average_decay=0.9).validate()


# -- up-down (UpDownConfig.average_decay) -------------------------------------------------------
from deepbelief.dbn import GenerativeDBN  # noqa: E402
from deepbelief.wake_sleep import UpDownConfig, UpDownTrainer, up_down  # noqa: E402


def test_updown_average_closed_form_validation_and_unchanged_iterates(monkeypatch):
    log, ends = [], []
    wake_sleep = sys.modules["deepbelief.wake_sleep"]

    class Recording(averaging.IterateAverage):
        def update_(self):
            log.append([p.detach().clone() for p in self.params])
            super().update_()

    g = torch.Generator().manual_seed(0)
    base = GenerativeDBN.build([6, 4, 5], 3, generator=g, weight_std=0.3).double()
    x = (torch.rand(40, 6, generator=g) < 0.5).double()
    y = torch.randint(0, 3, (40,), generator=g)
    cfg = dict(epochs=3, batch_size=10, lr=0.1, momentum=0.5, gibbs_steps=[1, 2], persistent=True)
    plain = GenerativeDBN.from_config(base.config()).double()
    plain.load_state_dict(base.state_dict())
    up_down(plain, x, y, UpDownConfig(**cfg), generator=torch.Generator().manual_seed(3))
    monkeypatch.setattr(wake_sleep, "IterateAverage", Recording)
    m = GenerativeDBN.from_config(base.config()).double()
    m.load_state_dict(base.state_dict())
    t = UpDownTrainer(m, UpDownConfig(**cfg, average_decay=0.8), torch.Generator().manual_seed(3))
    start = [p.detach().clone() for p in t.params]
    hist = t.fit(x, y, valid=(x, y), callback=lambda e, mt: ends.append(len(log)))
    assert ends == [4, 8, 12]
    with t.average.iterate():  # the iterates are the plain run's, bit for bit
        for (n, a), b in zip(m.state_dict().items(), plain.state_dict().values()):
            assert torch.equal(a, b), n
    probe = GenerativeDBN.from_config(base.config()).double()
    probe.load_state_dict(base.state_dict())
    probe.untie_()  # as the trainer's model: recognition weights of its own
    assert [n for n, p in probe.named_parameters() if p.requires_grad] == t.names
    for epoch, n in enumerate(ends):  # each epoch's validation error is the average's
        with torch.no_grad():
            for p, a in zip([p for p in probe.parameters() if p.requires_grad], _closed_form(start, log[:n], 0.8)):
                p.copy_(a)
        assert hist[epoch]["valid_error"] == pytest.approx(float(probe.error_rate(x, y)), abs=1e-12)
    for p, a in zip(t.params, _closed_form(start, log, 0.8)):  # and fit() leaves the average in the model
        torch.testing.assert_close(p.detach(), a, rtol=1e-12, atol=1e-12)
    with pytest.raises(ConfigError, match="average_decay"):
        UpDownConfig(average_decay=1.0).validate()
