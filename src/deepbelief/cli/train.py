"""``deepbelief train``: run a recipe (recipes.py), with any of its fields overridden by a
flag or a TOML file, and write the model files.

The flags are derived from the configs: ``TRAIN_FLAGS`` names, for each flag, the config
fields it sets (``recipe.<field>``, ``rbm.<field>``, ``finetune.<field>``,
``updown.<field>``); its type comes from the field's type in the dataclass, so a
hyper-parameter lives in its config (default, validation) and in one row here (flag, help).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from deepbelief.cli.args import check_writable, common_args, data_args, int_list, refuse_same_paths
from deepbelief.errors import ConfigError


# -- train -------------------------------------------------------------------------------
TRAIN_EPILOG = """\
what it writes:
  -o FILE (default model.safetensors)  the fine-tuned classifier (or the stack / generative DBN
                                       when there is no fine-tuning)
  FILE with .dbn before the suffix     the pre-trained stack, when there is fine-tuning
                                       (model.dbn.safetensors by default)
  --checkpoint-dir D                   run.json, layer<i>.ckpt.safetensors, layer<i>.safetensors,
                                       finetune/retrain.ckpt.safetensors, a lock file .deepbelief.lock

progress lines (every phase shows epoch i/N, the epoch's time, time elapsed and an estimate
of the time left; early stopping may end fine-tuning before N):
  rbm L epoch i/N: recon R fe_gap G   RBM L (0 = bottom). recon: squared reconstruction error
                                      |v - E[v | E[h | v]]|^2 summed over the units, averaged over
                                      monitored training rows; it should fall. fe_gap: mean free
                                      energy of validation rows minus that of training rows (Hinton's
                                      practical guide, section 6): a gap that keeps growing means the
                                      RBM is overfitting. Only with validation data.
                                      --method pt adds "swaps min A mean B": the epoch's swap
                                      acceptance rate of the worst neighbour pair and the mean.
  finetune epoch i/N: loss L          backprop: mean cross-entropy of the epoch; valid error: the
                                      fraction of validation images misclassified (early stopping
                                      keeps the best epoch); --finetune-method cg adds the line
                                      searches' function evaluations per batch
  retrain epoch i/N                   --retrain-all: fine-tuning again on train + valid for the
                                      chosen number of epochs
  up-down epoch i/N (K=k): recon R    generative recipes: contrastive wake-sleep with k Gibbs steps
                                      in the top RBM; recon as above for the data layer

--resume continues from the checkpoints in --checkpoint-dir; when there are none (a new or
empty folder) it says so and starts a new run there. A folder in use by another run is refused.
"""


def add_train(sub) -> None:
    p = sub.add_parser("train", help="pre-train a stack of RBMs and fine-tune it (the main job)",
                       epilog=TRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="default",
                   help="default (embedded 8x8 digits, 64-200-200-10: about 7 s wall on a 2-core CPU), "
                        "hinton2006 (MNIST 784-500-500-2000-10, conjugate-gradient fine-tuning: about 20 min on "
                        "that CPU), hinton2006_dropout (the same net, RBMs from the guide's start, dropout "
                        "fine-tuning: about 2-3 h, by machine), random_init (the same "
                        "net, no pre-training) "
                        "or hot2006 (generative DBN with labels: 30 CD-1 epochs per lower RBM, 60 PCD epochs for "
                        "the top one, then 150 up-down epochs (the paper: 300; --updown-epochs 300) from persistent "
                        "top-level chains and at most the paper's 59 more on all the data, ended sooner by the "
                        "paper's rule: 81 min on that CPU, test error 1.21%%; it prints its estimate before it starts)")
    p.add_argument("--config", default=None, help="TOML file with recipe fields (overridden by flags)")
    data_args(p)
    for flag, (targets, help_text) in TRAIN_FLAGS.items():
        p.add_argument(flag, default=None, help=help_text, **_flag_kwargs(flag, targets[0]))
    p.add_argument("--checkpoint-dir", default=None, help="write per-layer checkpoints here")
    p.add_argument("--resume", action="store_true", help="continue a killed run from --checkpoint-dir")
    p.add_argument("--checkpoint-every", type=int, default=1,
                   help="epochs between checkpoints of every phase (default: 1)")
    p.add_argument("-o", "--output", default="model.safetensors", help="where to write the model")
    p.add_argument("--metrics-json", default=None, help="also write the results as JSON here")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    p.add_argument("--metrics-csv", default=None, help="write per-epoch metrics of every phase to this CSV")
    p.add_argument("--tensorboard", default=None, help="also log them to this TensorBoard folder (if installed)")
    p.add_argument("--save-config", default=None,
                   help="write the run's full recipe as TOML (re-run it with --config) and exit")
    common_args(p)


def _recipe_from_args(args):
    from deepbelief.recipes import Recipe, get_recipe
    from deepbelief.wake_sleep import UpDownConfig

    recipe = get_recipe(args.recipe)
    if args.config:
        from deepbelief.config import load_toml

        recipe = Recipe.from_dict({**recipe.to_dict(), **load_toml(args.config)})
    if args.dataset:
        recipe.dataset = args.dataset
        if args.dataset != "digits" and args.recipe == "default":
            recipe.n_valid = 10_000 if "mnist" in args.dataset else recipe.n_valid
    if args.layers is not None:
        recipe.layer_overrides = recipe.layer_overrides[: len(args.layers)]
    if recipe.generative and args.finetune_epochs == 0:  # greedy only: no final up-down epochs either
        recipe.updown = dataclasses.replace(recipe.updown or UpDownConfig(), final_epochs=0)
    for flag, (targets, _help) in TRAIN_FLAGS.items():
        value = getattr(args, _dest(flag))
        if value is not None:
            for target in targets:
                _set(recipe, target, value)
    if args.finetune_epochs == 0:
        recipe.finetune = None
    return recipe.validate()


#: every flag that sets recipe fields: flag -> (the fields it sets, help). A field is
#: ``recipe.<f>``, ``rbm.<f>`` (every RBM: the recipe's per-layer values of f give way),
#: ``finetune.<f>`` (backprop, when the recipe has it) or ``updown.<f>`` (generative recipes
#: only); the flag's type is the first field's.
TRAIN_FLAGS: dict[str, tuple[tuple[str, ...], str]] = {
    "--layers": (("recipe.layers",), "hidden layer sizes, e.g. 500,500,2000"),
    "--visible": (("recipe.visible",), "data units: bernoulli or gaussian"),
    "--hidden": (("recipe.hidden",), "hidden units: bernoulli, nrelu or stepped_sigmoid"),
    "--transform": (("recipe.input_transform",),
                    "data transform for --visible gaussian: standardize (default), zca, pca or none"),
    "--whiten-eps": (("recipe.whiten_eps",),
                     "zca/pca: eps added to the eigenvalues, relative to their mean (default 0.1; 1.0 for image "
                     "patches)"),
    "--row-center": (("recipe.row_center",),
                     "subtract each row's (patch's) own mean before the transform (default: no)"),
    "--min-contrast": (("recipe.min_contrast",),
                       "--dataset patches: keep only patches whose std (grey levels in [0, 1]) exceeds this "
                       "(default 0: all; 0.03 drops the ~60%% flat ones)"),
    "--epochs": (("rbm.epochs",), "RBM epochs per layer"),
    "--batch-size": (("rbm.batch_size", "finetune.batch_size"), "mini-batch size of RBM training and fine-tuning"),
    "--lr": (("rbm.lr",), "RBM learning rate"),
    "--weight-decay": (("rbm.weight_decay",), "RBM L2 weight decay"),
    "--sparsity-target": (("rbm.sparsity_target",), "RBM hidden-unit sparsity target"),
    "--sparsity-cost": (("rbm.sparsity_cost",), "weight of the sparsity penalty"),
    "--method": (("rbm.method",), "negative phase: cd, pcd (persistent chains), fpcd (PCD with fast weights) or pt "
                 "(parallel tempering, PT-PCD)"),
    "--k": (("rbm.k",), "Gibbs steps per update (CD-k / PCD-k / PT-k)"),
    "--k-final": (("rbm.k_final",), "cd/pcd: Gibbs steps reached linearly at the last epoch, from --k "
                  "(Salakhutdinov & Murray 2008 raised k to 25 this way); default: --k all along"),
    "--k-ramp-epochs": (("rbm.k_ramp_epochs",), "with --k-final: the epochs over which k moves to --k-final, which "
                        "it keeps from then on (default: all the epochs)"),
    "--n-chains": (("rbm.n_chains",),
                   "persistent chains (pcd) or replica sets of all temperatures (pt); default: the batch size"),
    "--pt-temperatures": (("rbm.pt_temperatures",),
                          "--method pt: number of inverse temperatures K, 1 down to --pt-min-beta (default 10)"),
    "--pt-spacing": (("rbm.pt_spacing",), "--method pt: linear (default) or geometric"),
    "--fast-lr": (("rbm.fast_lr",), "--method fpcd: the fast weights' learning rate (default: --lr)"),
    "--fast-decay": (("rbm.fast_decay",), "--method fpcd: the fast weights' decay per update (default 0.95)"),
    "--pt-min-beta": (("rbm.pt_min_beta",),
                      "--method pt: the lowest inverse temperature (default 0: uniform; geometric needs > 0)"),
    "--sample-data": (("rbm.sample_data",),
                      "train every RBM on a fresh binary draw of its data in every mini-batch (grey-level images, "
                      "or the probabilities Q(h given v) of the layer below); on MNIST the best 500-hidden RBM "
                      "(docs/5-evaluation.md); Bernoulli visible units only"),
    "--average-decay": (("rbm.average_decay",),
                        "keep a moving average of the RBM parameters over updates with this decay per "
                        "update and return it as the model (e.g. 0.999; default 0: the last iterate)"),
    "--centering": (("rbm.centering",),
                    "centred RBM update (Bernoulli layers; Melchior et al. 2016); offsets stored in the model"),
    "--centering-rate": (("rbm.centering_rate",),
                         "sliding-average rate of the centring offsets per update (default 0.01)"),
    "--precision": (("rbm.precision",),
                    "RBM matmul precision: fp32 (default), tf32 (CUDA only) or bf16 (GPUs; no faster on CPUs, AMX ones included)"),
    "--finetune-epochs": (("finetune.epochs", "updown.epochs"),
                          "backprop epochs (0: pre-training only); generative recipes: up-down epochs"),
    "--finetune-lr": (("finetune.lr", "updown.lr"), "fine-tuning learning rate (generative recipes: up-down's)"),
    "--updown-epochs": (("updown.epochs",),
                        "generative recipes (hot2006): up-down epochs on the training split (the paper: 300)"),
    "--updown-final-epochs": (("updown.final_epochs",),
                              "generative recipes: up-down epochs on all training images afterwards (the paper: 59)"),
    "--updown-final-until-train-error": (("updown.final_until_train_error",),
                                         "generative recipes: end those final epochs once the error on all "
                                         "training images is as low as the training split's was after the first "
                                         "phase (the paper's rule; it took 59); --updown-final-epochs is the most"),
    "--updown-lr-final": (("updown.lr_final",),
                          "generative recipes: up-down's learning rate at its last epoch, reached linearly "
                          "(the final epochs on all the data continue at it); default: constant"),
    "--updown-average-decay": (("updown.average_decay",),
                               "generative recipes: validate and keep the moving average of the up-down "
                               "parameters over updates with this decay per update (default 0: off)"),
    "--updown-persistent": (("updown.persistent",),
                            "generative recipes: up-down's top level by PCD-K from persistent fantasy chains "
                            "(negative and sleep phases) instead of CD-K from each batch's wake state"),
    "--updown-clamped-chains": (("updown.clamped_chains",),
                                "generative recipes, with --updown-persistent: the share of the persistent chains "
                                "that keep their label clamped, as many per class (default 0: all free)"),
    "--dropout": (("finetune.dropout",), "hidden-unit dropout during fine-tuning"),
    "--input-dropout": (("finetune.input_dropout",), "input dropout during fine-tuning (0.2 keeps 0.8)"),
    "--max-norm": (("finetune.max_norm",),
                   "fine-tuning: cap on each hidden unit's incoming weight norm after every update (0: off)"),
    "--paper-dropout-steps": (("finetune.paper_dropout_steps",),
                              "dropout fine-tuning: take the SGD steps of the papers' parametrisation (unscaled "
                              "masks, weights scaled at test time): each weight gradient times q^2, q its inputs' "
                              "keep probability, so a published rate can be used as it is"),
    "--finetune-average-decay": (("finetune.average_decay",),
                                 "sgd fine-tuning: validate and return the moving average of the weights over "
                                 "updates with this decay per update (e.g. 0.9998; default 0: off)"),
    "--finetune-method": (("finetune.method",),
                          "fine-tuning optimiser: sgd (momentum) or cg (conjugate gradients, 3 line searches per "
                          "1,000-image batch: hinton2006's)"),
    "--init": (("recipe.init",),
               "pretrained (default) or a random classifier with no pre-training (random_init: glorot)"),
    "--retrain-all": (("recipe.retrain_all",), "after early stopping, retrain on train+valid for the chosen epochs"),
}


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _config_class(section: str):
    from deepbelief.finetune import FinetuneConfig
    from deepbelief.recipes import Recipe
    from deepbelief.training import RBMTrainConfig
    from deepbelief.wake_sleep import UpDownConfig

    return {"recipe": Recipe, "rbm": RBMTrainConfig, "finetune": FinetuneConfig, "updown": UpDownConfig}[section]


def _flag_kwargs(flag: str, target: str) -> dict:
    """argparse options of ``flag`` from the type of the config field ``target``."""
    section, name = target.split(".")
    kind = {f.name: str(f.type) for f in dataclasses.fields(_config_class(section))}[name]
    if kind == "bool":
        return {"action": argparse.BooleanOptionalAction}
    if kind == "list":  # layer sizes
        return {"type": int_list(flag)}
    if kind.startswith("int"):
        return {"type": int}
    if kind.startswith("float"):
        return {"type": float}
    choices = {"recipe.init": ["pretrained", "glorot", "normal"], "finetune.method": ["sgd", "cg"]}.get(target)
    return {"choices": choices} if choices else {}


def _set(recipe, target: str, value) -> None:
    from deepbelief.wake_sleep import UpDownConfig

    section, name = target.split(".")
    if section == "recipe":
        setattr(recipe, name, value)
    elif section == "rbm":  # a flag sets every RBM: it replaces the recipe's per-layer value too
        recipe.set_rbm(name, value)
    elif section == "finetune" and recipe.finetune is not None:
        setattr(recipe.finetune, name, value)
    elif section == "updown" and recipe.generative:
        recipe.updown = dataclasses.replace(recipe.updown or UpDownConfig(), **{name: value})


def cmd_train(args) -> int:
    from deepbelief import distributed
    from deepbelief.runner import run_recipe

    recipe = _recipe_from_args(args)
    if args.save_config:
        from deepbelief.config import dump_toml
        from deepbelief.io import atomic_write_bytes

        atomic_write_bytes(args.save_config, dump_toml(recipe.to_dict()).encode())
        print(f"wrote {args.save_config}")
        return 0
    _check_outputs(args, recipe)
    logger = None
    if args.metrics_csv or args.tensorboard:
        from deepbelief.metrics_log import MetricsLogger

        logger = MetricsLogger(args.metrics_csv, tensorboard_dir=args.tensorboard)
    # under torchrun (WORLD_SIZE > 1): join the process group; rank 0 alone logs and writes
    device = distributed.init_from_env(args.device) if distributed.env_world_size() > 1 else args.device
    run_kw = dict(data_dir=args.data_dir, device=device, seed=args.seed, checkpoint_dir=args.checkpoint_dir,
                  resume=args.resume, checkpoint_every=args.checkpoint_every,
                  logger=logger)
    if not distributed.is_main():
        try:
            run_recipe(recipe, log=None, **run_kw)
        finally:
            distributed.shutdown()
        return 0
    try:
        res = run_recipe(recipe, log=None if args.quiet else print, **run_kw)
    finally:
        distributed.shutdown()
        if logger is not None:
            logger.close()
    _write_results(args, recipe, res)
    return 0


def _stack_path(output: str) -> Path:
    out = Path(output)
    return out.with_name(out.stem + ".dbn" + out.suffix)


def _check_outputs(args, recipe) -> None:
    """Refuse unwritable or clashing outputs before hours of training, not after."""
    for flag, target in (("--output", args.output), ("--metrics-json", args.metrics_json)):
        if target is not None:
            check_writable(flag, target)
    dbn_out = str(_stack_path(args.output)) if recipe.finetune and not recipe.generative else None
    refuse_same_paths([("--output", args.output), ("--output's stack file", dbn_out),
                       ("--metrics-json", args.metrics_json), ("--metrics-csv", args.metrics_csv),
                       ("--tensorboard", args.tensorboard), ("--checkpoint-dir", args.checkpoint_dir),
                       ("--config", args.config)])
    if args.resume and not args.checkpoint_dir:
        raise ConfigError("--resume needs --checkpoint-dir (the folder of the run to continue), got none")


def _write_results(args, recipe, res: dict) -> None:
    """The model file(s), the printed summary and ``--metrics-json``."""
    from deepbelief import __version__
    from deepbelief.io import atomic_write_bytes, save_model

    out = Path(args.output)
    meta = {"recipe": recipe.to_dict(), "seed": args.seed, "device": res["device"], "deepbelief_version": __version__}
    if res.get("input_transform") is not None:
        meta["input_transform"] = res["input_transform"].to_dict()
    if "net" in res:
        meta["metrics"] = {"test_error": res["test_error"], "valid_error": res["valid_error"]}
        save_model(out, res["net"], **meta)
        print(f"test error: {100 * res['test_error']:.2f}%")
        if res["dbn"] is None:  # init != pretrained: there is no stack
            print(f"wrote {out} (fine-tuned classifier, no pre-training)")
        else:
            dbn_path = _stack_path(args.output)
            save_model(dbn_path, res["dbn"], **meta)
            print(f"wrote {out} (fine-tuned classifier) and {dbn_path} (pre-trained stack)")
    elif res["dbn"].kind == "generative_dbn":
        meta["metrics"] = {"test_error": res["test_error"], "greedy_test_error": res["greedy_test_error"]}
        save_model(out, res["dbn"], **meta)
        print(f"test error (free-energy classification): {100 * res['test_error']:.2f}%")
        print(f"wrote {out} (generative DBN)")
    else:
        save_model(out, res["dbn"], **meta)
        print(f"wrote {out} (pre-trained stack)")
    print(f"total time: {res['total_seconds']:.1f}s")
    if args.metrics_json:
        keep = {k: v for k, v in res.items() if isinstance(v, (int, float, str, dict, list, type(None)))
                and k not in ("input_transform",)}
        atomic_write_bytes(args.metrics_json, json.dumps(keep, indent=2, default=str).encode())
