"""An independent judge of generated digits: a small convolutional net trained on MNIST pixels.

It shares nothing with the generative models it judges (trained on the training images
and labels only, from its own generator) and is cached as a safetensors file, so every
benchmark run judges with the same net. Conv(1->32, 5x5) - pool - Conv(32->64, 5x5) - pool
- 1024-128-10, ReLU, Adam; about 1% test error after 3 epochs.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def make_net() -> nn.Module:
    return nn.Sequential(
        nn.Unflatten(1, (1, 28, 28)),
        nn.Conv2d(1, 32, 5), nn.ReLU(), nn.MaxPool2d(2),       # (32, 12, 12)
        nn.Conv2d(32, 64, 5), nn.ReLU(), nn.MaxPool2d(2),      # (64, 4, 4)
        nn.Flatten(), nn.Linear(1024, 128), nn.ReLU(), nn.Linear(128, 10),
    )


def _init(net: nn.Module, gen: torch.Generator) -> None:
    """Uniform(+-1/sqrt(fan_in)) from the run's generator (torch's default rule, no global seed)."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                bound = 1.0 / m.weight[0].numel() ** 0.5
                for p in (m.weight, m.bias):
                    p.copy_((torch.rand(p.shape, generator=gen, device=p.device) * 2 - 1) * bound)


def predict(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The net's class for every row of ``x`` (in blocks of 1,000 rows)."""
    with torch.no_grad():
        return torch.cat([net(x[i:i + 1000]).argmax(1) for i in range(0, x.shape[0], 1000)])


def error_rate(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((predict(net, x) != y).float().mean())


def agreement(pred: torch.Tensor, labels: torch.Tensor, n_classes: int) -> dict:
    """How often the judge's ``pred`` equals the requested ``labels``: overall, per class (the
    classes that occur), and binomial standard errors in percentage points (the overall one is
    the stratified error of the overall figure, sum over classes of (n_c / n)^2 se_c^2), and the
    confusion counts (row: the requested class, column: the judge's)."""
    agree = (pred == labels).float()
    n = labels.shape[0]
    rows = [(100 * float(agree[labels == c].mean()), int((labels == c).sum())) for c in range(n_classes)
            if bool((labels == c).any())]
    per_class = [a for a, _ in rows]
    se = [(a * (100 - a) / m) ** 0.5 for a, m in rows]
    confusion = torch.zeros(n_classes, n_classes, dtype=torch.long, device=labels.device)
    confusion.index_put_((labels.long(), pred.long()), torch.ones_like(labels, dtype=torch.long), accumulate=True)
    return {"agreement_pct": 100 * float(agree.mean()), "min_class_agreement_pct": min(per_class),
            "per_class_agreement_pct": per_class, "per_class_stderr_pct": se,
            "agreement_stderr_pct": sum((m / n * e) ** 2 for (_, m), e in zip(rows, se)) ** 0.5,
            "confusion": confusion.tolist()}


def train_judge(x, y, xt, yt, *, epochs: int = 3, seed: int = 12345, cache: str | Path | None = None,
                log=print) -> tuple[nn.Module, float]:
    """The judge and its MNIST test error; loaded from ``cache`` when that file exists."""
    from safetensors.torch import load_file

    net = make_net().to(x.device)
    if cache is not None and Path(cache).exists():
        net.load_state_dict(load_file(str(cache), device=str(x.device)))
        net.eval()
        return net, error_rate(net, xt, yt)
    gen = torch.Generator(device=x.device).manual_seed(seed)
    _init(net, gen)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    n = x.shape[0]
    for e in range(epochs):
        perm = torch.randperm(n, generator=gen, device=x.device)
        for i in range(n // 100):
            idx = perm[i * 100:(i + 1) * 100]
            loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        log(f"judge epoch {e + 1}/{epochs}: test error {100 * error_rate(net.eval(), xt, yt):.2f}%")
        net.train()
    net.eval()
    if cache is not None:
        from safetensors.torch import save

        from deepbelief.io import atomic_write_bytes

        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(cache, save({k: v.contiguous() for k, v in net.state_dict().items()}))
    return net, error_rate(net, xt, yt)
