"""Data-parallel training (2 gloo processes on CPU) equals single-process training.

Oracle: the single-process run with the same global batch and seed. The N-process run
draws the same permutation and the same random numbers (each rank keeps its rows of the
global block), and sums the statistics with one all-reduce, so the two differ only in
the order of float additions: we compare in float64 at 1e-10.
"""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from deepbelief import distributed
from deepbelief.io import load_tensors, save_tensors
from deepbelief.rbm import RBM
from deepbelief.training import RBMTrainConfig, RBMTrainer

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")

CONFIGS = {
    "cd-sparsity": dict(epochs=2, batch_size=12, lr=0.1, sparsity_target=0.1, sparsity_cost=0.3),
    "pcd": dict(epochs=2, batch_size=12, lr=0.05, method="pcd", n_chains=8),
    # chains shard by rows, the fast weights learn from the all-reduced gradient on every rank
    "fpcd": dict(epochs=2, batch_size=12, lr=0.05, method="fpcd", n_chains=8, fast_lr=0.1),
    # replica sets shard by rows, all temperatures of a set on one rank (sampling.PT)
    "pt": dict(epochs=2, batch_size=12, lr=0.05, method="pt", n_chains=8, pt_temperatures=3),
    # the offsets slide with the global batch's means (carried in the one all-reduce)
    "cd-centering": dict(epochs=2, batch_size=12, lr=0.1, centering=True, centering_rate=0.1),
}


def _data():
    g = torch.Generator().manual_seed(11)
    return (torch.rand(60, 9, generator=g, dtype=torch.float64) < 0.3).double()


def _train(name, ckpt=None):
    rbm = RBM(9, 5, weight_std=0.1, generator=torch.Generator().manual_seed(0)).double()
    trainer = RBMTrainer(rbm, RBMTrainConfig(**CONFIGS[name]), torch.Generator().manual_seed(1))
    trainer.fit(_data(), checkpoint=ckpt)
    return rbm, trainer


def _worker(rank, world, port, out_dir):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    distributed.init_from_env("cpu")
    try:
        for name in CONFIGS:
            ckpt = os.path.join(out_dir, f"{name}.ckpt.safetensors")
            rbm, trainer = _train(name, ckpt)
            save_tensors(os.path.join(out_dir, f"{name}.rank{rank}.safetensors"), dict(rbm.state_dict()), {})
            if rank == 1:  # only rank 0 may have written the checkpoint
                assert not os.path.exists(ckpt + ".rank1")
    finally:
        distributed.shutdown()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_equal_one_process(tmp_path):
    # fork, not spawn: the children need not re-import torch (seconds on a shared machine)
    mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True, start_method="fork")
    for name in CONFIGS:
        ref, ref_trainer = _train(name, tmp_path / f"{name}.single.safetensors")
        ref_state = ref.state_dict()
        for rank in (0, 1):
            got, _ = load_tensors(tmp_path / f"{name}.rank{rank}.safetensors")
            for k, v in ref_state.items():
                assert torch.allclose(got[k], v, atol=1e-10, rtol=0), (name, rank, k)
        # the checkpoint rank 0 wrote holds the whole state, PCD chains gathered from both
        # ranks, exactly as the single-process checkpoint does
        multi, multi_meta = load_tensors(tmp_path / f"{name}.ckpt.safetensors")
        single, single_meta = load_tensors(tmp_path / f"{name}.single.safetensors")
        # swap rates count every replica set on every rank
        assert ([e.get("pt_swap_rates") for e in multi_meta["history"]]
                == [e.get("pt_swap_rates") for e in single_meta["history"]])
        assert set(multi) == set(single)
        for k in single:
            if k != "generator.state":
                assert torch.allclose(multi[k].double(), single[k].double(), atol=1e-10, rtol=0), (name, k)
        assert torch.equal(multi["generator.state"], single["generator.state"])


def test_batch_size_must_divide_among_processes(monkeypatch):
    from deepbelief.errors import ConfigError

    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    monkeypatch.setattr(distributed, "rank", lambda: 0)
    rbm = RBM(9, 5, generator=torch.Generator().manual_seed(0)).double()
    trainer = RBMTrainer(rbm, RBMTrainConfig(epochs=1, batch_size=10), torch.Generator().manual_seed(1))
    with pytest.raises(ConfigError, match=r"batch_size must be a multiple of the number of processes \(3\).*got 10"):
        trainer.fit(_data())
