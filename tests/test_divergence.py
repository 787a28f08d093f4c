"""The divergence guard: non-finite weights or an exploding reconstruction error stop the
run with a message naming the epoch, the parameter group, the likely cause and the fix,
and the last good checkpoint survives (it loads, and resuming from it is possible)."""

import pytest
import torch

from deepbelief import (DBN, RBM, DivergenceError, FinetuneConfig, RBMTrainConfig, finetune, make_generator,
                        train_rbm, unroll)
from deepbelief.io import load_tensors
from deepbelief.units import Gaussian


def data(n=200, d=8, seed=0):
    return (torch.rand(n, d, generator=torch.Generator().manual_seed(seed)) < 0.4).float()


def test_nan_weights_stop_training_and_keep_the_last_good_checkpoint(tmp_path):
    ckpt = tmp_path / "c.safetensors"
    g = make_generator(0)
    r = RBM(8, 5, generator=g)
    good = {}

    def poison(epoch, metrics):
        if epoch == 1:
            good.update({k: v.clone() for k, v in r.state_dict().items()})
            with torch.no_grad():
                r.W[2, 3] = float("nan")  # as an overflow in an update would

    with pytest.raises(DivergenceError) as info:
        train_rbm(r, data(), RBMTrainConfig(epochs=5, batch_size=20), generator=g, checkpoint=ckpt, callback=poison)
    msg = str(info.value)
    for needle in ("epoch 2", "'W'", "NaN/inf", "lr=0.1", "lower lr", "epoch 2) is kept", "c.safetensors"):
        assert needle in msg, (needle, msg)
    tensors, meta = load_tensors(ckpt)
    assert meta["epoch"] == 2
    for k, v in good.items():
        assert torch.equal(tensors[f"model.{k}"], v)  # exactly the weights before the failure
    # and training can go on from it (with the same settings; the poison was external)
    r2 = RBM(8, 5, generator=g)
    hist = train_rbm(r2, data(), RBMTrainConfig(epochs=5, batch_size=20), generator=make_generator(0),
                     checkpoint=ckpt, resume=True)
    assert len(hist.epochs) == 5 and all(torch.isfinite(p).all() for p in r2.parameters())


def test_exploding_reconstruction_error_is_caught():
    g = make_generator(1)
    x = torch.randn(200, 8, generator=torch.Generator().manual_seed(1))
    r = RBM(Gaussian(8), 6, generator=g)

    def blow_up(epoch, metrics):
        if epoch == 0:
            with torch.no_grad():
                r.W.mul_(1e4)  # as a far too large step would

    with pytest.raises(DivergenceError) as info:
        train_rbm(r, x, RBMTrainConfig(epochs=4, batch_size=20, lr=0.01), generator=g, callback=blow_up)
    msg = str(info.value)
    assert "epoch 1" in msg and "reconstruction error exploded" in msg and "real-valued units" in msg
    assert "kept" not in msg  # no checkpoint was asked for, so none is promised


def test_divergence_at_the_first_epoch_promises_no_checkpoint(tmp_path):
    g = make_generator(2)
    r = RBM(8, 5, generator=g)
    with torch.no_grad():
        r.hidden.bias[0] = float("inf")
    ckpt = tmp_path / "c.safetensors"
    with pytest.raises(DivergenceError, match="epoch 0") as info:
        train_rbm(r, data(), RBMTrainConfig(epochs=3, batch_size=20), generator=g, checkpoint=ckpt)
    assert "kept" not in str(info.value) and not ckpt.exists()


def test_finetuning_divergence_names_epoch_group_and_keeps_checkpoint(tmp_path):
    g = make_generator(3)
    net = unroll(DBN([RBM(8, 5, generator=g)]), 3, generator=g)
    y = torch.arange(200) % 3
    ckpt = tmp_path / "ft.safetensors"

    def poison(epoch, row):
        if epoch == 1:
            with torch.no_grad():
                net.hidden[0].weight[0, 0] = float("inf")

    with pytest.raises(DivergenceError) as info:
        finetune(net, data(), y, FinetuneConfig(epochs=5, batch_size=20, top_only_epochs=0), generator=g,
                 checkpoint=ckpt, callback=poison)
    msg = str(info.value)
    for needle in ("epoch 2", "all layers", "lr=", "lower lr", "epoch 2) is kept", "ft.safetensors"):
        assert needle in msg, (needle, msg)
    tensors, meta = load_tensors(ckpt)
    assert meta["epoch"] == 2 and all(torch.isfinite(v).all() for k, v in tensors.items() if k.startswith("net."))
