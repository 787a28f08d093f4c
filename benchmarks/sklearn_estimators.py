"""Benchmark: the scikit-learn estimators beside scikit-learn's own BernoulliRBM.

The set-up of scikit-learn's example "Restricted Boltzmann Machine features for digit
classification": RBM features -> LogisticRegression, here with our RBMTransformer and with
sklearn.neural_network.BernoulliRBM at the same hyper-parameters, plus DBNClassifier
(pre-training + backprop). Reports test accuracy and fit wall time of each.

    python benchmarks/sklearn_estimators.py --quick            # embedded 8x8 digits, ~1 min on a CPU
    python benchmarks/sklearn_estimators.py --device cuda --out benchmarks/results/sklearn.json
        # MNIST, --n-train images (default 20000), --epochs (default 10)
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    here = ROOT.parent / "shared" / "data" / "mnist"
    p.add_argument("--data-dir", default=str(here if here.is_dir() else "/work/shared/data/mnist"))
    p.add_argument("--quick", action="store_true", help="embedded 8x8 digits instead of MNIST")
    p.add_argument("--n-train", type=int, default=20_000)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--components", type=int, default=256)
    p.add_argument("--out", default=None)
    args = p.parse_args()

    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import BernoulliRBM
    from sklearn.pipeline import Pipeline

    from deepbelief.data import load_dataset
    from deepbelief.errors import resolve_device
    from deepbelief.estimators import DBNClassifier, RBMTransformer
    from deepbelief.experiments import machine_info

    dev = str(resolve_device(args.device))
    if args.quick:
        ds = load_dataset("digits")
        n_train = ds.x_train.shape[0]
    else:
        ds = load_dataset("mnist", data_dir=args.data_dir)
        n_train = args.n_train
    x_tr, y_tr = ds.x_train[:n_train].numpy(), ds.y_train[:n_train].numpy()
    x_te, y_te = ds.x_test.numpy(), ds.y_test.numpy()
    common = dict(n_components=args.components, learning_rate=0.06, batch_size=10, n_iter=args.epochs)
    logistic = LogisticRegression(C=100.0, max_iter=1000)
    models = {
        "deepbelief RBMTransformer + logistic": Pipeline([
            ("rbm", RBMTransformer(**common, random_state=args.seed, device=dev, weight_decay=0.0)),
            ("logistic", clone(logistic))]),
        "sklearn BernoulliRBM + logistic": Pipeline([
            ("rbm", BernoulliRBM(**common, random_state=args.seed)), ("logistic", clone(logistic))]),
        "deepbelief DBNClassifier": DBNClassifier(hidden_layer_sizes=(args.components,), n_iter=args.epochs,
                                                  finetune_epochs=2 * args.epochs, batch_size=10,
                                                  random_state=args.seed, device=dev),
    }
    rows = []
    for name, model in models.items():
        t0 = time.perf_counter()
        model.fit(x_tr, y_tr)
        fit_s = time.perf_counter() - t0
        acc = float(np.mean(model.predict(x_te) == y_te))
        rows.append({"model": name, "test_accuracy": acc, "fit_seconds": fit_s})
        print(f"{name:40s} accuracy {100 * acc:.2f}%  fit {fit_s:.1f}s", flush=True)
    res = {"benchmark": "sklearn_estimators", "dataset": "digits" if args.quick else "mnist", "n_train": n_train,
           "n_test": int(len(y_te)), "epochs": args.epochs, "components": args.components, "rows": rows,
           "machine": machine_info(dev)}
    if args.out:
        from deepbelief.io import atomic_write_bytes

        atomic_write_bytes(args.out, json.dumps(res, indent=2).encode())
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
