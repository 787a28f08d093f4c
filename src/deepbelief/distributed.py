"""Data-parallel training with torch.distributed: the existing engine, used thinly.

``torchrun --nproc_per_node=N -m deepbelief train ...`` starts N copies of the same
command; each sees ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` in its environment.
``init_from_env`` turns that into a process group (gloo on CPU, NCCL on CUDA, one GPU
per process: ``cuda:LOCAL_RANK``). The training loop (``trainer.RBMTrainer``) then

- holds the whole data set on every rank and draws the *same* permutation from the
  run's generator on every rank (all ranks start from the same seed);
- gives rank ``r`` rows ``[r * b, (r + 1) * b)`` of each global batch of ``N * b`` rows;
- all-reduces one flat buffer of CD statistics per update (a single collective), so
  every rank applies the same update and the parameters never drift apart;
- draws the random numbers of the whole global batch and keeps its own rows
  (``shard_rows``), so the N-process run consumes the generator exactly like the
  single-process run and gives the same weights up to the order of float additions.

Random numbers are a small part of a CD step (about 1% of the FLOPs of the matrix
multiplies at 784x500), so drawing the global block on each rank costs little and buys
exact equivalence with the single-process run, which the tests check.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from deepbelief.errors import ConfigError
from deepbelief.sharding import shard_rows, sharded  # noqa: F401  (re-exported: the step opens sharded())

def env_world_size() -> int:
    """WORLD_SIZE from torchrun's environment (1 when not launched by torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ConfigError(f"WORLD_SIZE must be an integer, got {os.environ.get('WORLD_SIZE')!r}") from None


def active() -> bool:
    """True when a process group with more than one process is initialised."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if active() else 0


def world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Only rank 0 writes files and prints (checkpoints, models, logs)."""
    return rank() == 0


def init_from_env(device: str | torch.device = "auto") -> torch.device:
    """Initialise the process group from torchrun's environment and return this rank's device.

    ``device`` is ``auto|cpu|cuda``; with CUDA each process takes ``cuda:LOCAL_RANK`` and
    the NCCL backend, otherwise gloo. Without WORLD_SIZE > 1 nothing is initialised and
    the device is resolved as usual.
    """
    import torch.distributed as dist

    from deepbelief.errors import resolve_device

    dev = resolve_device(device)
    if env_world_size() <= 1 or active():
        return dev
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but this torch build has no torch.distributed support")
    if dev.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK must be < the number of GPUs ({torch.cuda.device_count()}), got {local}")
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
        try:
            dist.init_process_group("nccl", device_id=dev)
        except TypeError:  # torch < 2.3 has no device_id
            dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    return dev


def shutdown() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum_(flat: Tensor) -> Tensor:
    """Sum ``flat`` over all ranks in place (one collective); a no-op in one process."""
    if active():
        import torch.distributed as dist

        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    return flat


def all_gather_rows(t: Tensor) -> Tensor:
    """Concatenate every rank's rows of ``t`` (same shape on all ranks), rank order."""
    if not active():
        return t
    import torch.distributed as dist

    parts = [torch.empty_like(t) for _ in range(world_size())]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)
