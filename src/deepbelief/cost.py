"""What a run costs: matrix-multiply FLOPs of each training phase, and the machine's rate.

Every phase of this library is dominated by dense products of a mini-batch with a weight
matrix; a (b, n) x (n, m) product costs 2 b n m floating-point operations. Counting them
gives (1) an estimate of a run's time before it starts (FLOPs / measured GEMM rate /
the share of that rate the phase reaches) and (2) the benchmarks' "share of the GEMM
rate" figures, which compare a phase's wall time with the same products alone.
"""

from __future__ import annotations

import time

import torch


def cd_batch_flops(b: int, n_visible: int, n_hidden: int, k: int = 1) -> float:
    """One CD-k step: v W, then k times (h W^T, v' W), then the two statistics v^T h, v'^T h'."""
    return 2.0 * b * n_visible * n_hidden * (3 + 2 * k)


def updown_batch_flops(b: int, sizes: list[int], n_labels: int, k: int) -> float:
    """One contrastive wake-sleep step (wake_sleep.up_down_grads) of a labelled DBN.

    ``sizes`` runs from the data to the top hidden layer, e.g. [784, 500, 500, 2000]. Each
    lower layer (n_i, n_{i+1}) has six products: the wake up-pass, the sleep down-pass, the
    generative prediction and its gradient, the recognition prediction and its gradient.
    The top RBM (n_features + n_labels, n_top) has 3 + 2k: the positive hidden input, k
    Gibbs iterations of two products, and the two free-energy gradients.
    """
    lower = sum(6 * a * c for a, c in zip(sizes[:-2], sizes[1:-1]))
    top = (3 + 2 * k) * (sizes[-2] + n_labels) * sizes[-1]
    return 2.0 * b * (lower + top)


def gemm_rate(b: int = 100, n: int = 784, m: int = 500, seconds: float = 0.3,
              device: torch.device | str = "cpu") -> float:
    """Measured fp32 FLOP/s of (b, n) x (n, m) products on ``device`` (about ``seconds`` long)."""
    dev = torch.device(device)
    g = torch.Generator(device=dev).manual_seed(0)
    a = torch.rand(b, n, generator=g, device=dev)
    w = torch.rand(n, m, generator=g, device=dev)
    out = torch.empty(b, m, device=dev)
    torch.mm(a, w, out=out)  # warm-up
    reps, t = 1, 0.0
    while True:
        _sync(dev)
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, w, out=out)
        _sync(dev)
        t = time.perf_counter() - t0
        if t >= seconds / 4 or reps > 1 << 20:
            break
        reps *= 4
    return 2.0 * b * n * m * reps / t


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
