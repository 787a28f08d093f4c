"""rng.StepUniforms: U(0, 1) numbers, fixed by the run's generator alone, handed out in order."""

import math

import pytest
import torch

from deepbelief.rng import StepUniforms
from deepbelief.units.base import uniform


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_numbers_are_uniform_on_0_1(dtype):
    n = 200_000
    u = StepUniforms(torch.Generator().manual_seed(0), n, torch.zeros(1, dtype=dtype)).take((n,))
    assert u.dtype == dtype and u.min() >= 0 and u.max() < 1
    # mean 1/2 and variance 1/12 within 5 standard errors; the decile counts by chi-square
    assert abs(u.double().mean().item() - 0.5) < 5 * math.sqrt(1 / 12 / n)
    assert abs(u.double().var().item() - 1 / 12) < 5 * math.sqrt(1 / 180 / n)
    counts = torch.bincount((u * 10).long(), minlength=10).double()
    chi2 = (((counts - n / 10) ** 2) / (n / 10)).sum().item()
    assert chi2 < 33.7  # chi-square, 9 degrees of freedom: P(> 33.7) = 1e-4


def test_the_run_generator_alone_fixes_the_numbers_and_advances_once():
    like = torch.zeros(1)
    a = StepUniforms(torch.Generator().manual_seed(3), 50, like).take((5, 10))
    g = torch.Generator().manual_seed(3)
    b = StepUniforms(g, 50, like).take((5, 10))
    assert torch.equal(a, b)
    ref = torch.Generator().manual_seed(3)
    torch.randint(0, 2**63 - 1, (), generator=ref)  # exactly one draw from the generator per block
    assert torch.equal(g.get_state(), ref.get_state())
    c = StepUniforms(g, 50, like).take((50,))
    assert not torch.equal(a.reshape(-1), c)  # the next block differs


def test_numbers_are_handed_out_in_order_and_never_twice():
    s = StepUniforms(torch.Generator().manual_seed(1), 12, torch.zeros(1))
    block = s.block.clone()
    x = uniform((2, 3), torch.zeros(1), s)  # units' uniform() draws from the block
    y = s.take((6,))
    assert torch.equal(torch.cat([x.reshape(-1), y]), block)
    with pytest.raises(RuntimeError, match="asked for 1 numbers with 0 of 12 left"):
        s.take((1,))
