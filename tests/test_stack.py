"""Greedy stacking, unrolling, fine-tuning and saving, end to end."""

import torch

from deepbelief.dbn import DBN
from deepbelief.finetune import FinetuneConfig, error_rate, finetune, random_classifier, unroll
from deepbelief.io import load_model, save_model
from deepbelief.rbm import RBM
from deepbelief.stacking import pretrain_stack
from deepbelief.training import RBMTrainConfig, make_generator


def test_stack_passes_hidden_means_up():
    """Layer 2 is trained on exactly layer 1's hidden means: retraining layer 2 alone on
    those means with the same generator state gives the same weights."""
    g = make_generator(0)
    x = (torch.rand(200, 12, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    cfg = RBMTrainConfig(epochs=2, batch_size=20)
    dbn = pretrain_stack(x, [12, 8, 6], cfg, generator=g)
    assert dbn.sizes == [12, 8, 6]
    # replay: the same seed, train layer 1, then layer 2 on its means
    from deepbelief.training import train_rbm

    g2 = make_generator(0)
    r1 = RBM(12, 8, generator=g2)
    train_rbm(r1, x, cfg, generator=g2)
    assert torch.equal(r1.W, dbn.rbms[0].W)
    r2 = RBM(8, 6, generator=g2)
    train_rbm(r2, r1.mean_hidden(x).detach(), cfg, generator=g2)
    assert torch.equal(r2.W, dbn.rbms[1].W)
    assert torch.allclose(dbn.transform(x), r2.mean_hidden(r1.mean_hidden(x)))


def test_unrolled_net_computes_the_up_pass():
    g = make_generator(3)
    dbn = DBN([RBM(10, 7, weight_std=0.5, generator=g), RBM(7, 5, weight_std=0.5, generator=g)])
    net = unroll(dbn, 3, generator=g)
    x = torch.rand(4, 10, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(net.features(x), dbn.transform(x), atol=1e-6)


def test_pretraining_beats_random_init_on_mnist_slice(mnist):
    """Same architecture, same fine-tuning budget, same seed: pre-trained wins on a small
    slice (2,000 images). Both runs are deterministic, so this is not a flaky comparison."""
    x, y = mnist.x_train[:2000], mnist.y_train[:2000]
    xv, yv = mnist.x_train[50000:52000], mnist.y_train[50000:52000]
    ft = FinetuneConfig(epochs=6, batch_size=50, lr=0.1, top_only_epochs=1)
    g = make_generator(0)
    dbn = pretrain_stack(x, [784, 200, 200], RBMTrainConfig(epochs=4, batch_size=50, lr=0.1), generator=g)
    net = unroll(dbn, 10, generator=g)
    finetune(net, x, y, ft, generator=g)
    err_pre = float(error_rate(net, xv, yv))
    g = make_generator(0)
    base = random_classifier([784, 200, 200], 10, generator=g)
    finetune(base, x, y, ft, generator=g)
    err_rand = float(error_rate(base, xv, yv))
    assert err_pre < err_rand, (err_pre, err_rand)
    assert err_pre < 0.15


def test_finetune_early_stopping_restores_best(mnist):
    x, y = mnist.x_train[:500], mnist.y_train[:500]
    xv, yv = mnist.x_train[50000:50500], mnist.y_train[50000:50500]
    g = make_generator(1)
    net = random_classifier([784, 50], 10, generator=g)
    hist = finetune(net, x, y, FinetuneConfig(epochs=5, batch_size=50, top_only_epochs=0), generator=g,
                    valid=(xv, yv))
    best = hist[-1]["best_epoch"]
    assert hist[best]["valid_error"] == min(h["valid_error"] for h in hist)
    assert float(error_rate(net, xv, yv)) == hist[best]["valid_error"]


def test_save_load_identical_outputs(tmp_path):
    g = make_generator(0)
    dbn = DBN([RBM(6, 5, weight_std=0.3, generator=g), RBM(5, 4, weight_std=0.3, generator=g)])
    net = unroll(dbn, 3, generator=g)
    x = torch.rand(9, 6, generator=torch.Generator().manual_seed(0))
    for model, fn in ((dbn, lambda m: m.transform(x)), (net, lambda m: m(x)), (dbn.rbms[0], lambda m: m.free_energy(x))):
        p = tmp_path / f"{model.kind}.safetensors"
        save_model(p, model)
        again = load_model(p)
        assert type(again) is type(model)
        assert torch.equal(fn(again), fn(model))
        assert not list(tmp_path.glob("*.tmp"))


def test_gpu_generator_placement_is_respected():
    """Parameters live on the generator's device (cpu here); cuda is exercised on a GPU machine."""
    g = make_generator(0, "cpu")
    r = RBM(4, 3, generator=g)
    assert r.W.device.type == "cpu" and r.visible.bias.device.type == "cpu"
