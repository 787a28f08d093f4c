"""Lecture 14b's MNIST classifier rows, one recipe per run: 784-500-500-2000-10 on MNIST.

``--recipe hinton2006`` (default): greedy CD-1 pre-training, then conjugate-gradient
fine-tuning as in Hinton & Salakhutdinov (2006)'s code (published 1.2%; the lecture quotes
1.15% -> 1.0%). ``--recipe hinton2006_dropout``: the same net, its RBMs started as the
practical guide says, fine-tuned with dropout (Srivastava et al. 2014: 0.92%). ``--recipe random_init``: the same net from a random
draw, no pre-training (the lecture's 1.6%). The recipes hold the settings (src/deepbelief/
recipes.py); this script runs one, the same way ``deepbelief train --recipe`` and
``deepbelief reproduce lecture14`` do, and reports the 10,000 test images once.

Everything checkpoints in ``--work``; run the same command again to resume a killed run
(the wall time is then not recorded as the recipe's).

    python benchmarks/mnist_hinton2006.py --recipe hinton2006 --work runs/h06 --threads 1 \\
        --out benchmarks/results/hinton2006_cpu.json --headline
    python benchmarks/mnist_hinton2006.py --quick          # 6,000 images, 2 epochs: checks the script
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch
from _common import field_values, machine_info, machine_name, parser, record_headline, write_json

from deepbelief.data import load_dataset
from deepbelief.finetune import FinetuneConfig
from deepbelief.training import RBMTrainConfig
from deepbelief.recipes import get_recipe
from deepbelief.runner import run_recipe

#: recipe -> (headline key of its test error, target %, the published figures)
ROWS = {
    "hinton2006": ("hinton2006_test_error_pct", 1.15,
                   {"Hinton & Salakhutdinov 2006": 1.2, "lecture 14b (pre-training + fine-tuning)": 1.15}),
    "hinton2006_dropout": ("lecture14_dropout_test_error_pct", 0.95, {"Srivastava et al. 2014": 0.92}),
    "random_init": ("lecture14_random_init_test_error_pct", 1.60, {"lecture 14b (backprop, random init)": 1.6}),
}


def override_rbm(recipe, items: list[str]) -> None:
    """``--rbm FIELD=VALUE``: set each RBMTrainConfig field for every layer; the recipe's
    per-layer values of those fields give way (``layer_overrides``)."""
    values = field_values("--rbm", RBMTrainConfig, items)
    recipe.rbm = dataclasses.replace(recipe.rbm, **values).validate()
    recipe.layer_overrides = [{k: v for k, v in o.items() if k not in values} for o in recipe.layer_overrides]


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--recipe", default="hinton2006", choices=sorted(ROWS))
    p.add_argument("--work", default=None, help="checkpoints (a rerun of the same command resumes); "
                                                "default: hinton2006-work/<recipe>")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--pretrain-epochs", type=int, default=None, help="RBM epochs per layer (default: the recipe's)")
    p.add_argument("--finetune-epochs", type=int, default=None, help="fine-tuning epochs (default: the recipe's)")
    p.add_argument("--finetune", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a fine-tuning field (FinetuneConfig) of the recipe, e.g. --finetune batch_size=20 "
                        "--finetune lr=0.02 (an ablation: not with --headline)")
    p.add_argument("--rbm", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a pre-training field (RBMTrainConfig) for every layer, the recipe's per-layer "
                        "values of that field giving way, e.g. --rbm weight_std=0.1 (an ablation: not with "
                        "--headline)")
    p.add_argument("--headline", action="store_true",
                   help="record the figures in benchmarks/results/headline.json (full runs only)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    recipe = get_recipe(args.recipe)
    ds = load_dataset("mnist", data_dir=args.data_dir)
    if args.quick:
        from deepbelief.data import Dataset

        ds = Dataset(x_train=ds.x_train[:6000], y_train=ds.y_train[:6000], x_test=ds.x_test[:2000],
                     y_test=ds.y_test[:2000], name="mnist-quick", image_shape=ds.image_shape, n_valid=0)
        recipe.rbm.epochs, recipe.finetune.epochs = 2, 3
        recipe.finetune.top_only_epochs = min(recipe.finetune.top_only_epochs, 1)
    if args.pretrain_epochs is not None:
        recipe.rbm.epochs = args.pretrain_epochs
    if args.finetune_epochs is not None:
        recipe.finetune.epochs = args.finetune_epochs
    if args.finetune:
        if args.headline:
            p.error("--finetune changes the recipe: its figures are not the recipe's, so not with --headline")
        recipe.finetune = dataclasses.replace(recipe.finetune, **field_values("--finetune", FinetuneConfig,
                                                                              args.finetune)).validate()
    if args.rbm:
        if args.headline:
            p.error("--rbm changes the recipe: its figures are not the recipe's, so not with --headline")
        override_rbm(recipe, args.rbm)
    work = Path(args.work or f"hinton2006-work/{args.recipe}{'-quick' if args.quick else ''}")
    resume = (work / "run.json").exists()
    t0 = time.perf_counter()
    res = run_recipe(recipe, device=args.device, seed=args.seed, dataset=ds, checkpoint_dir=work, resume=resume)
    wall = time.perf_counter() - t0
    key, target, published = ROWS[args.recipe]
    out = {
        "benchmark": "mnist_hinton2006",
        "recipe_name": args.recipe,
        "machine": machine_info(res["device"]),
        "recipe": res["recipe"],
        "seed": args.seed,
        "test_error_percent": 100 * res["test_error"],
        "valid_error_percent": None if res["valid_error"] is None else 100 * res["valid_error"],
        "best_epoch": res["best_epoch"],
        "pretrain_seconds": res["pretrain_seconds"],
        "finetune_seconds": res["finetune_seconds"],
        "wall_seconds": wall,
        "resumed": resume,
        "target_percent": target,
        "published": published,
    }
    print(f"[{args.recipe}] test error {out['test_error_percent']:.2f}% (target <= {target:.2f}%), wall "
          f"{wall / 60:.1f} min (pre-training {res['pretrain_seconds']:.0f} s, fine-tuning "
          f"{res['finetune_seconds']:.0f} s){' (resumed)' if resume else ''}")
    write_json(args.out, out)
    if args.headline and not args.quick:
        figs = {key: round(out["test_error_percent"], 3)}
        if args.recipe == "hinton2006" and not resume:  # a resumed run's wall time is not the recipe's
            figs["hinton2006_cpu_minutes"] = round(wall / 60, 2)
        record_headline(figs, machine=machine_name())


if __name__ == "__main__":
    main()
