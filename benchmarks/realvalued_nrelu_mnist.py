"""MNIST 784-500-500-2000: NReLU vs Bernoulli hidden units in the first layer, same budget.

Nair & Hinton (2010) replace the binary hidden units of an RBM by noisy rectified linear
units. Two stacks, same seed, same epochs, pre-trained greedily with CD-1
(stacking.pretrain_stack), unrolled (finetune.unroll: the NReLU layer becomes ReLU) and
fine-tuned with backprop, early-stopped on the last 10,000 training images:

  - bernoulli: 784-500-500-2000, all binary, lr 0.1 (the hinton2006 recipe's settings);
  - nrelu:     the first hidden layer NReLU (lr 0.01 for the two RBMs that touch it:
               rectified units are unbounded, so the guide's 0.1 is too large), the
               rest as above.

    python benchmarks/realvalued_nrelu_mnist.py --quick
    python benchmarks/realvalued_nrelu_mnist.py --device cuda --epochs 20 --finetune-epochs 20 --out r.json
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


from deepbelief.data import load_dataset  # noqa: E402
from deepbelief.errors import resolve_device  # noqa: E402
from deepbelief.finetune import FinetuneConfig, error_rate, finetune, unroll  # noqa: E402
from deepbelief.stacking import pretrain_stack  # noqa: E402
from deepbelief.training import RBMTrainConfig, make_generator  # noqa: E402


from _common import default_data_dir, machine_info, write_json  # noqa: E402


def machine(dev) -> dict:
    return machine_info(str(dev))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=default_data_dir())
    p.add_argument("--quick", action="store_true", help="5,000 images, 1 epoch each (checks the script)")
    p.add_argument("--out", default=None)
    p.add_argument("--epochs", type=int, default=None, help="CD epochs per RBM (default 20, quick 1)")
    p.add_argument("--finetune-epochs", type=int, default=None, help="backprop epochs (default 20, quick 2)")
    p.add_argument("--nrelu-lr", type=float, default=0.01, help="CD learning rate of the RBMs next to the NReLU layer")
    p.add_argument("--stacks", default="bernoulli,nrelu", help="which stacks to run")
    a = p.parse_args(argv)
    dev = resolve_device(a.device)
    epochs = a.epochs if a.epochs is not None else (1 if a.quick else 20)
    ft_epochs = a.finetune_epochs if a.finetune_epochs is not None else (2 if a.quick else 20)

    t_all = time.perf_counter()
    ds = load_dataset("mnist", data_dir=a.data_dir, download=False)
    x, y = ds.x_train.to(dev), ds.y_train.to(dev)
    x_te, y_te = ds.x_test.to(dev), ds.y_test.to(dev)
    n_valid = 10_000
    if a.quick:
        x, y, x_te, y_te, n_valid = x[-6000:], y[-6000:], x_te[:1000], y_te[:1000], 1000
    x_tr, y_tr, x_va, y_va = x[:-n_valid], y[:-n_valid], x[-n_valid:], y[-n_valid:]
    base = RBMTrainConfig(epochs=epochs, batch_size=100, lr=0.1, momentum=0.5, final_momentum=0.9,
                          momentum_switch=min(5, max(0, epochs - 1)), weight_decay=2e-4)
    ft = FinetuneConfig(epochs=ft_epochs, batch_size=100, lr=0.1, lr_decay=0.97, momentum=0.9,
                        top_only_epochs=min(5, ft_epochs // 4))
    out = {"machine": machine(dev), "config": {"epochs": epochs, "finetune_epochs": ft_epochs, "quick": a.quick,
                                               "n_train": int(x_tr.shape[0]), "n_valid": n_valid,
                                               "nrelu_lr": a.nrelu_lr}, "stacks": {}}
    for stack in a.stacks.split(","):
        first = {"type": "nrelu" if stack == "nrelu" else "bernoulli", "n": 500}
        slow = dataclasses.replace(base, lr=a.nrelu_lr) if stack == "nrelu" else base
        configs = [slow, slow, base]
        gen = make_generator(a.seed, dev)
        t0 = time.perf_counter()
        dbn = pretrain_stack(x_tr, [784, first, 500, 2000], configs, generator=gen)
        pre_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        net = unroll(dbn, 10, generator=gen)
        hist = finetune(net, x_tr, y_tr, ft, generator=gen, valid=(x_va, y_va))
        ft_s = time.perf_counter() - t0
        res = {"test_error": float(error_rate(net, x_te, y_te)), "valid_error": float(error_rate(net, x_va, y_va)),
               "best_epoch": hist[-1].get("best_epoch"), "pretrain_seconds": round(pre_s, 2),
               "finetune_seconds": round(ft_s, 2)}
        out["stacks"][stack] = res
        print(f"{stack}: test error {100 * res['test_error']:.2f}% (valid {100 * res['valid_error']:.2f}%, "
              f"best epoch {res['best_epoch']}) pre-training {pre_s:.1f}s fine-tuning {ft_s:.1f}s", flush=True)
    out["total_seconds"] = round(time.perf_counter() - t_all, 2)
    print(f"total {out['total_seconds']}s")
    write_json(a.out, out)  # atomic
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
