"""PyTorch interop: RBM layers inside user models, the fine-tuned net as plain torch."""

import torch
from torch import nn

from deepbelief import exact
from deepbelief.dbn import DBN
from deepbelief.finetune import unroll
from deepbelief.interop import rbm_layer, to_sequential
from deepbelief.rbm import RBM
from deepbelief.units import Gaussian


def test_rbm_layer_is_the_exact_posterior_mean():
    # oracle: p(h_j = 1 | v) by enumeration of the joint of a 5x3 RBM
    r = RBM(5, 3, weight_std=1.0, generator=torch.Generator().manual_seed(0)).double()
    vs, hs, p = exact.joint_distribution(r)
    enum = (p @ hs) / p.sum(1, keepdim=True)
    assert torch.allclose(rbm_layer(r)(vs), enum, atol=1e-12)


def test_rbm_layer_with_gaussian_visibles_folds_the_variance():
    g = torch.Generator().manual_seed(1)
    r = RBM(Gaussian(4), 3, weight_std=0.5, generator=g).double()
    with torch.no_grad():
        for name, prm in r.named_parameters():
            if "log" in name or "var" in name:
                prm.copy_(torch.randn(prm.shape, generator=g, dtype=torch.float64) * 0.3)
    v = torch.randn(7, 4, generator=g, dtype=torch.float64)
    assert torch.allclose(rbm_layer(r)(v), r.mean_hidden(v), atol=1e-12)


def test_rbm_inside_a_user_model_gets_autograd_gradients():
    # d/dW of sum_j E[h_j | v] = v^T (p (1 - p)) for sigmoid units (closed form)
    r = RBM(6, 4, weight_std=0.5, generator=torch.Generator().manual_seed(2)).double()
    model = nn.Sequential(rbm_layer(r), nn.Linear(4, 2).double())
    v = torch.rand(5, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    loss = model(v).sum()
    loss.backward()
    assert model[0][0].weight.grad is not None
    # directly on the RBM's own parameter, through mean_hidden
    r.W.grad = None
    r.mean_hidden(v).sum().backward()
    p = r.mean_hidden(v).detach()
    assert torch.allclose(r.W.grad, v.T @ (p * (1 - p)), atol=1e-12)


def test_to_sequential_gives_the_same_logits_and_respects_dropout_modes():
    g = torch.Generator().manual_seed(4)
    dbn = DBN([RBM(8, 6, weight_std=0.3, generator=g), RBM(6, 5, weight_std=0.3, generator=g)])
    net = unroll(dbn, 3, generator=g, dropout=0.5, input_dropout=0.2).eval()
    seq = to_sequential(net).eval()
    x = torch.rand(9, 8, generator=g)
    assert torch.allclose(seq(x), net(x), atol=1e-6)
    assert sum(isinstance(m, nn.Dropout) for m in seq) == 3
    seq.train()
    assert not torch.allclose(seq(x), net(x))  # dropout active in training mode
