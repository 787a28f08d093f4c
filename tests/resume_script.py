"""A small training run for tests/test_resume.py (run as a subprocess, then SIGKILLed).

    python tests/resume_script.py OUT.safetensors [--checkpoint CKPT] [--resume]

Trains a 64-32 RBM with PCD-1, momentum and a sparsity target (so velocities, chains and
the running activity all have to survive a resume) on seeded synthetic binary data, and
saves the final model. Prints "epoch N" after each epoch (flushed) for the parent.
"""

import sys
import time

import torch

from deepbelief import RBM, RBMTrainConfig, make_generator, save_model, train_rbm

EPOCHS = 25


def main(argv):
    out = argv[0]
    ckpt = argv[argv.index("--checkpoint") + 1] if "--checkpoint" in argv else None
    resume = "--resume" in argv
    torch.set_num_threads(1)  # the same thread count in every process: the same reductions
    data_gen = torch.Generator().manual_seed(123)
    protos = (torch.rand(8, 64, generator=data_gen) < 0.3).float()
    pick = torch.randint(0, 8, (2000,), generator=data_gen)
    flips = (torch.rand(2000, 64, generator=data_gen) < 0.05).float()
    data = (protos[pick] + flips) % 2  # (2000, 64) noisy copies of 8 prototypes
    gen = make_generator(7)
    rbm = RBM(64, 32, generator=gen)
    cfg = RBMTrainConfig(epochs=EPOCHS, batch_size=20, lr=0.05, method="pcd", n_chains=50, momentum_switch=3,
                         sparsity_target=0.1, sparsity_cost=0.01, monitor_size=200)
    t0 = time.perf_counter()
    train_rbm(rbm, data, cfg, generator=gen, checkpoint=ckpt, resume=resume,
              callback=lambda e, m: print(f"epoch {e}", flush=True))
    print(f"seconds {time.perf_counter() - t0:.3f}", flush=True)
    save_model(out, rbm)


if __name__ == "__main__":
    main(sys.argv[1:])
