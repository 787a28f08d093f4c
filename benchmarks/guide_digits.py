"""The Python walk-through of docs/1-quick-start.md, on the embedded 8x8 digits (or MNIST).

    python benchmarks/guide_digits.py [--quick] [--device auto|cpu|cuda] [--seed 0]
        [--data-dir DIR] [--dataset digits|mnist] [--out guide.json]

Trains one RBM (CD-1), reports its reconstruction error and free-energy gap (train vs validation),
stacks a second RBM greedily, unrolls the stack into a classifier, fine-tunes it with
backprop and reports the test error, timing every step. --quick: fewer epochs.
"""

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    here = ROOT.parent / "shared" / "data" / "mnist"
    p.add_argument("--data-dir", default=str(here if here.is_dir() else "/work/shared/data/mnist"))
    p.add_argument("--dataset", default="digits")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=None)
    args = p.parse_args()


    from deepbelief import RBM, FinetuneConfig, RBMTrainConfig, finetune, make_generator, pretrain_stack, train_rbm, unroll
    from deepbelief.data import load_dataset
    from deepbelief.errors import resolve_device
    from deepbelief.experiments import machine_info
    from deepbelief.finetune import error_rate

    dev = resolve_device(args.device)
    ds = load_dataset(args.dataset, data_dir=args.data_dir if args.dataset != "digits" else None)
    (x_tr, y_tr), (x_va, y_va) = ds.split_validation()
    x_tr, y_tr, x_va, y_va = (t.to(dev) for t in (x_tr, y_tr, x_va, y_va))
    x_te, y_te = ds.x_test.to(dev), ds.y_test.to(dev)
    epochs = 5 if args.quick else 30
    gen = make_generator(args.seed, dev)
    out = {"dataset": args.dataset, "epochs": epochs}

    # 1. one RBM
    t0 = time.perf_counter()
    rbm = RBM(x_tr.shape[1], 100, generator=gen)
    hist = train_rbm(rbm, x_tr, RBMTrainConfig(epochs=epochs, batch_size=20, lr=0.05), generator=gen, valid=x_va)
    out["rbm"] = {"seconds": time.perf_counter() - t0, **{k: hist.last(k) for k in ("recon_error", "free_energy_gap")}}
    print(f"RBM {x_tr.shape[1]}-100, {epochs} epochs of CD-1: recon error {hist.last('recon_error'):.3f}, "
          f"free-energy gap {hist.last('free_energy_gap'):+.3f} ({out['rbm']['seconds']:.1f}s)")

    # 2. a greedy stack and 3. fine-tuning
    t0 = time.perf_counter()
    dbn = pretrain_stack(x_tr, [x_tr.shape[1], 100, 100], RBMTrainConfig(epochs=epochs, batch_size=20, lr=0.05),
                         generator=gen)
    out["pretrain_seconds"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    net = unroll(dbn, ds.n_classes, generator=gen)
    finetune(net, x_tr, y_tr, FinetuneConfig(epochs=2 * epochs, batch_size=20, lr=0.1, top_only_epochs=1),
             generator=gen, valid=(x_va, y_va))
    out["finetune_seconds"] = time.perf_counter() - t0
    out["test_error"] = 100 * float(error_rate(net, x_te, y_te))
    print(f"DBN {dbn.sizes} pre-trained in {out['pretrain_seconds']:.1f}s, fine-tuned in "
          f"{out['finetune_seconds']:.1f}s: test error {out['test_error']:.2f}% on {x_te.shape[0]} images")
    out["machine"] = machine_info(dev)
    if args.out:
        from deepbelief.io import atomic_write_bytes

        atomic_write_bytes(args.out, json.dumps(out, indent=2).encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
