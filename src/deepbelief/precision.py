"""Matrix-multiply precision of a training run: ``fp32`` (default), ``tf32`` or ``bf16``.

- ``fp32``: IEEE single precision everywhere (also turns TF32 off on CUDA for the block,
  so "fp32" means what it says whatever the process-wide setting is).
- ``tf32``: on NVIDIA GPUs (Ampere and later) matrix multiplies round their inputs to
  TF32 (10-bit mantissa) and accumulate in fp32. It exists only on CUDA; on a CPU
  it would silently be fp32, so it is refused there.
- ``bf16``: matrix multiplies run under ``torch.autocast`` with bfloat16 inputs (8-bit
  mantissa) and fp32 accumulation; parameters, velocities and all element-wise maths
  stay fp32. Fast on GPUs; on the project's CPUs bf16 matmuls are 40-60 times slower
  than fp32 (docs/7-performance.md), so there it is only useful for testing.

Error model (used by the tests): rounding both inputs of a product to a format with
unit roundoff ``u`` (2^-9 for bf16, 2^-11 for tf32, round-to-nearest) changes each term
by at most ``(2u + u^2) |a| |b|``, so ``|A @ B - fl(A) @ fl(B)| <= (2u + u^2) |A| @ |B|``
plus the fp32 accumulation error, which both precisions share.
"""

from __future__ import annotations

import contextlib

import torch

from deepbelief.errors import ConfigError, check_choice

PRECISIONS = ("fp32", "tf32", "bf16")

#: unit roundoff of the matmul inputs of each precision (round to nearest)
UNIT_ROUNDOFF = {"fp32": 2.0**-24, "tf32": 2.0**-11, "bf16": 2.0**-9}


def check_precision(precision: str, device: torch.device | str) -> str:
    """Validate ``precision`` for ``device``; raise ConfigError naming the problem."""
    check_choice("precision", precision, set(PRECISIONS))
    dev = torch.device(device)
    if precision == "tf32" and dev.type != "cuda":
        raise ConfigError(
            f"precision 'tf32' needs a CUDA device (TF32 is a tensor-core format; on a CPU it would "
            f"silently be fp32), got device {str(dev)!r}; use --precision fp32 or bf16"
        )
    return precision


@contextlib.contextmanager
def matmul_precision(precision: str, device: torch.device | str):
    """Run the block's matrix multiplies in ``precision`` on ``device``; restores the
    previous settings on exit."""
    dev = torch.device(device)
    if precision == "bf16":
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            yield
        return
    if dev.type != "cuda":
        yield  # fp32 on CPU: nothing to set
        return
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
