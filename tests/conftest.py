"""Shared fixtures: where the project's copy of MNIST lives (tests never download)."""

from pathlib import Path

import pytest
import torch

# The tests use tiny tensors, where a second OpenMP thread only adds synchronisation (on a
# loaded 2-core machine, several times slower); benchmarks choose their own thread count.
torch.set_num_threads(1)

_CANDIDATES = [
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist",
    Path("/work/shared/data/mnist"),
]


def mnist_dir() -> Path | None:
    for c in _CANDIDATES:
        if (c / "train-images-idx3-ubyte.gz").exists():
            return c
    return None


@pytest.fixture(scope="session")
def mnist():
    """The MNIST Dataset from ../shared/data/mnist (skips if the copy is absent)."""
    d = mnist_dir()
    if d is None:
        pytest.skip("MNIST copy not found at ../shared/data/mnist")
    from deepbelief.data import load_dataset

    return load_dataset("mnist", data_dir=d, download=False)


class _Interrupt:
    """``interrupt(e)``: an epoch callback that stops a run after its epoch ``e`` (0-based) by
    raising ``interrupt.Stop``, leaving the checkpoint as a killed run would."""

    class Stop(Exception):
        pass

    def __call__(self, last_epoch: int):
        def callback(epoch, metrics):
            if epoch >= last_epoch:
                raise self.Stop
        return callback


@pytest.fixture
def interrupt():
    return _Interrupt()
