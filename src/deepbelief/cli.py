"""Command line: a thin adapter over the public functions (STYLE.md: pytorch-fid).

    deepbelief train [--recipe default|hinton2006|hot2006] [--dataset ...] [-o model.safetensors]
    deepbelief evaluate MODEL [--dataset ...]
    deepbelief show-filters MODEL -o filters.png
    deepbelief sample MODEL [--label 3] [--grid N] [--steps 1000] -o samples.png
    deepbelief finetune MODEL --method up-down --epochs N [--resume]

Every subcommand is a pair ``add_<name>(subparsers)`` / ``cmd_<name>(args)``; modules that
add capabilities register theirs in ``COMMANDS``. Library errors are printed as one line
(``error: ...``) with exit status 2; no traceback for a user's mistake.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from deepbelief import cli_ecosystem, cli_generative
from deepbelief.cli_args import check_writable, int_list, refuse_same_paths
from deepbelief.errors import ConfigError, DeepBeliefError
from deepbelief.filters import first_layer_filters, input_space_filters


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto|cpu|cuda|cuda:N (default: auto)")
    p.add_argument("--seed", type=int, default=0, help="seed of the run's one generator (default: 0)")


def _data_args(p: argparse.ArgumentParser, default: str | None = None) -> None:
    p.add_argument("--dataset", default=default,
                   help="digits (embedded, default), mnist, mnist-binarized, fashion-mnist, patches")
    p.add_argument("--data-dir", default=None,
                   help="folder holding the dataset's IDX files (else $DEEPBELIEF_DATA, the cache, a download)")


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
                                      keeps the best epoch)
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
                        "hinton2006 (MNIST 784-500-500-2000-10, conjugate-gradient fine-tuning: about 30 min on "
                        "that CPU), hinton2006_dropout (the same stack, dropout fine-tuning), random_init (the same "
                        "net, no pre-training) "
                        "or hot2006 (generative DBN with labels: 30 RBM epochs per layer then 300 up-down "
                        "epochs, over an hour on a CPU)")
    p.add_argument("--config", default=None, help="TOML file with recipe fields (overridden by flags)")
    _data_args(p)
    p.add_argument("--layers", type=int_list("--layers"), default=None, help="hidden layer sizes, e.g. 500,500,2000")
    p.add_argument("--visible", default=None, help="data units: bernoulli or gaussian")
    p.add_argument("--hidden", default=None, help="hidden units: bernoulli, nrelu or stepped_sigmoid")
    p.add_argument("--transform", default=None, dest="input_transform",
                   help="data transform for --visible gaussian: standardize (default), zca, pca or none")
    p.add_argument("--whiten-eps", type=float, default=None,
                   help="zca/pca: eps added to the eigenvalues, relative to their mean (default 0.1; "
                        "1.0 for image patches)")
    p.add_argument("--row-center", action=argparse.BooleanOptionalAction, default=None,
                   help="subtract each row's (patch's) own mean before the transform (default: no)")
    p.add_argument("--min-contrast", type=float, default=None,
                   help="--dataset patches: keep only patches whose std (grey levels in [0, 1]) exceeds this "
                        "(default 0: all; 0.03 drops the ~60%% flat ones)")
    p.add_argument("--epochs", type=int, default=None, help="RBM epochs per layer")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None, help="RBM learning rate")
    p.add_argument("--weight-decay", type=float, default=None, help="RBM L2 weight decay")
    p.add_argument("--sparsity-target", type=float, default=None, help="RBM hidden-unit sparsity target")
    p.add_argument("--sparsity-cost", type=float, default=None, help="weight of the sparsity penalty")
    p.add_argument("--method", default=None,
                   help="negative phase: cd, pcd (persistent chains) or pt (parallel tempering, PT-PCD)")
    p.add_argument("--k", type=int, default=None, help="Gibbs steps per update (CD-k / PCD-k / PT-k)")
    p.add_argument("--n-chains", type=int, default=None,
                   help="persistent chains (pcd) or replica sets of all temperatures (pt); default: the batch size")
    p.add_argument("--pt-temperatures", type=int, default=None,
                   help="--method pt: number of inverse temperatures K, 1 down to --pt-min-beta (default 10)")
    p.add_argument("--pt-spacing", default=None, help="--method pt: linear (default) or geometric")
    p.add_argument("--pt-min-beta", type=float, default=None,
                   help="--method pt: the lowest inverse temperature (default 0: uniform; geometric needs > 0)")
    p.add_argument("--centering", action=argparse.BooleanOptionalAction, default=None,
                   help="centred RBM update (Bernoulli layers; Melchior et al. 2016); offsets stored in the model")
    p.add_argument("--centering-rate", type=float, default=None,
                   help="sliding-average rate of the centring offsets per update (default 0.01)")
    p.add_argument("--finetune-epochs", type=int, default=None, help="backprop epochs (0: pre-training only)")
    p.add_argument("--finetune-lr", type=float, default=None)
    p.add_argument("--updown-epochs", type=int, default=None,
                   help="generative recipes (hot2006): up-down epochs on the training split (the paper: 300)")
    p.add_argument("--updown-final-epochs", type=int, default=None,
                   help="generative recipes: up-down epochs on all training images afterwards (the paper: 59)")
    p.add_argument("--dropout", type=float, default=None, help="hidden-unit dropout during fine-tuning")
    p.add_argument("--input-dropout", type=float, default=None, help="input dropout during fine-tuning (0.2 keeps 0.8)")
    p.add_argument("--max-norm", type=float, default=None,
                   help="fine-tuning: cap on each hidden unit's incoming weight norm after every update (0: off)")
    p.add_argument("--finetune-method", default=None, choices=["sgd", "cg"],
                   help="fine-tuning optimiser: sgd (momentum) or cg (conjugate gradients, 3 line searches per "
                        "1,000-image batch: hinton2006's)")
    p.add_argument("--init", default=None, choices=["pretrained", "glorot", "normal"],
                   help="pretrained (default) or a random classifier with no pre-training (random_init: glorot)")
    p.add_argument("--retrain-all", action=argparse.BooleanOptionalAction, default=None,
                   help="after early stopping, retrain on train+valid for the chosen epochs")
    p.add_argument("--checkpoint-dir", default=None, help="write per-layer checkpoints here")
    p.add_argument("--resume", action="store_true", help="continue a killed run from --checkpoint-dir")
    p.add_argument("--checkpoint-every", type=int, default=1,
                   help="epochs between checkpoints of every phase (default: 1)")
    p.add_argument("-o", "--output", default="model.safetensors", help="where to write the model")
    p.add_argument("--metrics-json", default=None, help="also write the results as JSON here")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    p.add_argument("--precision", default=None,
                   help="RBM matmul precision: fp32 (default), tf32 (CUDA only) or bf16 (GPUs; slow on CPUs)")
    p.add_argument("--metrics-csv", default=None, help="write per-epoch metrics of every phase to this CSV")
    p.add_argument("--tensorboard", default=None, help="also log them to this TensorBoard folder (if installed)")
    p.add_argument("--save-config", default=None,
                   help="write the run's full recipe as TOML (re-run it with --config) and exit")
    _common(p)


def _recipe_from_args(args):
    from deepbelief.recipes import Recipe, get_recipe

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
    for flag, field in (("layers", "layers"), ("visible", "visible"), ("hidden", "hidden"),
                        ("retrain_all", "retrain_all"), ("input_transform", "input_transform"),
                        ("whiten_eps", "whiten_eps"), ("row_center", "row_center"), ("min_contrast", "min_contrast"),
                        ("init", "init")):
        if getattr(args, flag) is not None:
            setattr(recipe, field, getattr(args, flag))
    for flag, field in (("epochs", "epochs"), ("batch_size", "batch_size"), ("lr", "lr"), ("method", "method"),
                        ("k", "k"), ("precision", "precision"), ("weight_decay", "weight_decay"),
                        ("sparsity_target", "sparsity_target"), ("sparsity_cost", "sparsity_cost"),
                        ("n_chains", "n_chains"), ("pt_temperatures", "pt_temperatures"),
                        ("pt_spacing", "pt_spacing"), ("pt_min_beta", "pt_min_beta"), ("centering", "centering"),
                        ("centering_rate", "centering_rate")):
        if getattr(args, flag) is not None:
            setattr(recipe.rbm, field, getattr(args, flag))
    if recipe.generative:  # --finetune-epochs sets the up-down epochs (0: greedy only)
        if args.finetune_epochs is not None:  # 0: greedy only, no final epochs either
            extra = {"final_epochs": 0} if args.finetune_epochs == 0 else {}
            recipe.updown = {**(recipe.updown or {}), "epochs": args.finetune_epochs, **extra}
        if args.finetune_lr is not None:
            recipe.updown = {**(recipe.updown or {}), "lr": args.finetune_lr}
        for flag, key in (("updown_epochs", "epochs"), ("updown_final_epochs", "final_epochs")):
            if getattr(args, flag) is not None:
                recipe.updown = {**(recipe.updown or {}), key: getattr(args, flag)}
    if args.finetune_epochs == 0:
        recipe.finetune = None
    elif recipe.finetune is not None:
        for flag, field in (("finetune_epochs", "epochs"), ("finetune_lr", "lr"), ("dropout", "dropout"),
                            ("input_dropout", "input_dropout"), ("max_norm", "max_norm"),
                            ("finetune_method", "method")):
            if getattr(args, flag) is not None:
                setattr(recipe.finetune, field, getattr(args, flag))
        if args.batch_size is not None:
            recipe.finetune.batch_size = args.batch_size
    return recipe.validate()


def cmd_train(args) -> int:
    from deepbelief.io import save_model
    from deepbelief.recipes import run_recipe

    from deepbelief import distributed

    recipe = _recipe_from_args(args)
    if args.save_config:
        from deepbelief.config import dump_toml
        from deepbelief.io import atomic_write_bytes

        atomic_write_bytes(args.save_config, dump_toml(recipe.to_dict()).encode())
        print(f"wrote {args.save_config}")
        return 0
    logger = None
    if args.metrics_csv or args.tensorboard:
        from deepbelief.metrics_log import MetricsLogger

        logger = MetricsLogger(args.metrics_csv, tensorboard_dir=args.tensorboard)
    out = Path(args.output)
    # refuse unwritable or clashing outputs before hours of training, not after
    for flag, target in (("--output", args.output), ("--metrics-json", args.metrics_json)):
        if target is not None:
            check_writable(flag, target)
    dbn_out = str(out.with_name(out.stem + ".dbn" + out.suffix)) if recipe.finetune and not recipe.generative else None
    refuse_same_paths([("--output", args.output), ("--output's stack file", dbn_out),
                       ("--metrics-json", args.metrics_json), ("--metrics-csv", args.metrics_csv),
                       ("--tensorboard", args.tensorboard), ("--checkpoint-dir", args.checkpoint_dir),
                       ("--config", args.config)])
    if args.resume and not args.checkpoint_dir:
        raise ConfigError("--resume needs --checkpoint-dir (the folder of the run to continue), got none")
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
    from deepbelief import __version__

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
            dbn_path = out.with_name(out.stem + ".dbn" + out.suffix)
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
        from deepbelief.io import atomic_write_bytes

        keep = {k: v for k, v in res.items() if isinstance(v, (int, float, str, dict, list, type(None)))
                and k not in ("input_transform",)}
        atomic_write_bytes(args.metrics_json, json.dumps(keep, indent=2, default=str).encode())
    return 0


# -- evaluate ----------------------------------------------------------------------------
def add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="test error of a saved classifier (and more for other models)")
    p.add_argument("model", help="a .safetensors file written by deepbelief")
    _data_args(p)
    p.add_argument("--loglik", action="store_true",
                   help="RBM: test log-likelihood by AIS; DBN: its variational lower bound (nats)")
    p.add_argument("--ais-runs", type=int, default=100, help="parallel AIS runs (default 100)")
    p.add_argument("--ais-betas", type=int, default=None,
                   help="intermediate distributions (default: the paper's 14,500)")
    p.add_argument("--bound-samples", type=int, default=10, help="hidden samples per test image for a DBN bound")
    p.add_argument("--raise-rows", type=int, default=100,
                   help="--loglik: test images for the conservative reverse-AIS (RAISE) estimate, one chain "
                        "each with the same temperatures (default 100; 0: off; binary visibles only)")
    p.add_argument("--metrics-json", default=None, help="--loglik: also write the estimates as JSON here")
    _common(p)


def _apply_input_transform(meta: dict, x):
    from deepbelief.transforms import transform_from_dict

    t = transform_from_dict(meta.get("input_transform"))
    return x if t is None else t(x)


def _dataset_for(meta: dict, args):
    from deepbelief.data import load_dataset

    recipe = meta.get("recipe") or {}
    name = args.dataset or recipe.get("dataset") or "digits"
    # the model's own data set is loaded as it was trained on (the same contrast selection)
    min_contrast = recipe.get("min_contrast", 0.0) if name == recipe.get("dataset") else 0.0
    return load_dataset(name, data_dir=args.data_dir, min_contrast=min_contrast)


def cmd_evaluate(args) -> int:
    from deepbelief.errors import resolve_device
    from deepbelief.finetune import error_rate
    from deepbelief.io import load_model, read_metadata

    dev = resolve_device(args.device)
    meta = read_metadata(args.model)
    model = load_model(args.model, device=dev)
    ds = _dataset_for(meta, args)
    _check_inputs(args.model, model, meta, ds)
    t0 = time.perf_counter()
    if getattr(args, "loglik", False):
        return _cmd_loglik(args, model, meta, ds, dev)
    if meta["kind"] == "classifier":
        x = _apply_input_transform(meta, ds.x_test.to(dev))
        err = float(error_rate(model, x, ds.y_test.to(dev)))
        print(f"test error: {100 * err:.2f}% ({int(round(err * len(ds.y_test)))} of {len(ds.y_test)} images) "
              f"in {time.perf_counter() - t0:.2f}s")
        return 0
    if meta["kind"] == "generative_dbn":
        err = float(model.error_rate(ds.x_test.to(dev), ds.y_test.to(dev)))
        print(f"test error (free-energy classification): {100 * err:.2f}% "
              f"({int(round(err * len(ds.y_test)))} of {len(ds.y_test)} images) in {time.perf_counter() - t0:.2f}s")
        return 0
    raise ConfigError(f"evaluate: a {meta['kind']!r} model has no test error; add --loglik for its "
                      "log-likelihood (RBM) or variational bound (DBN)")


def _check_inputs(path, model, meta: dict, ds) -> None:
    """Refuse a data set whose images do not have the size the model was trained on."""
    from deepbelief.transforms import transform_from_dict

    t = transform_from_dict(meta.get("input_transform"))
    want = t.linear_part().shape[0] if t is not None else first_layer_filters(model).shape[1]
    got = ds.x_test.shape[1]
    if got != want:
        trained = (meta.get("recipe") or {}).get("dataset")
        on = f" (it was trained on {trained!r})" if trained else ""
        raise ConfigError(f"--dataset {ds.name!r} has {got} values per image, but model {str(path)!r} takes "
                          f"{want}{on}; pick a data set with images of that size")


def _cmd_loglik(args, model, meta, ds, dev) -> int:
    from deepbelief.loglik import evaluate_log_likelihood, model_rbms
    from deepbelief.training import make_generator

    rbms = model_rbms(model)
    bernoulli = rbms[0].visible.is_binary
    if bernoulli and not bool(((ds.x_test == 0) | (ds.x_test == 1)).all()):
        # a Bernoulli RBM is a distribution over binary vectors: binarise as mnist-binarized does
        print(f"note: {ds.name} is not binary; binarising it stochastically (seed 0) as in Salakhutdinov & Murray 2008")
        ds = ds.binarized(0)
    x_tr = _apply_input_transform(meta, ds.x_train.to(dev))
    x_te = _apply_input_transform(meta, ds.x_test.to(dev))
    jacobian, note = _log_jacobian(meta.get("input_transform"))
    if note:
        print(f"note: {note}")
    last = [time.perf_counter(), 0]

    def progress(k, n):
        tenth = 10 * k // n
        if tenth > last[1]:
            last[1] = tenth
            print(f"  AIS {10 * tenth:3d}% ({k}/{n} temperatures, {time.perf_counter() - last[0]:.1f}s)",
                  file=sys.stderr, flush=True)

    n_cons = args.raise_rows if bernoulli else 0
    if args.raise_rows and not bernoulli:
        print("note: no reverse-AIS estimate: RAISE anneals the visible layer, which needs binary visible units")
    r = evaluate_log_likelihood(model, x_tr, x_te, n_runs=args.ais_runs, betas=args.ais_betas,
                                n_samples=args.bound_samples, generator=make_generator(args.seed, dev),
                                progress=progress, n_conservative=n_cons)
    ais = r["ais"]
    print(f"log Z = {ais.log_z:.3f} (AIS interval {ais.log_z_low:.3f} .. {ais.log_z_high:.3f}; "
          f"{ais.n_runs} runs, {ais.n_betas} temperatures, ESS {ais.ess:.1f}, {ais.seconds:.1f}s)")
    what = "log-likelihood" if r["measure"] == "log_likelihood" else f"variational lower bound ({r['n_layers']} layers)"
    mc = f", Monte Carlo s.e. {r['stderr']:.3f}" if r["stderr"] else ""
    print(f"test {what}: {r['value'] + jacobian:.2f} nats (interval {r['low'] + jacobian:.2f} .. "
          f"{r['high'] + jacobian:.2f}{mc}) on {r['n_test']} {ds.name} images in {r['seconds']:.1f}s")
    if "conservative" in r:
        print(f"conservative {what} (reverse AIS, first {r['n_conservative']} test images, one chain each): "
              f"{r['conservative'] + jacobian:.2f} nats (s.e. {r['conservative_stderr']:.2f}); the truth lies between "
              f"this and the forward figure, within their errors")
    for w in r["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    if args.metrics_json:
        import json

        from deepbelief.io import atomic_write_bytes

        keep = {k: v for k, v in r.items() if k != "ais"}
        keep["ais"] = {k: getattr(ais, k) for k in ("log_z", "log_z_low", "log_z_high", "ess", "n_runs", "n_betas",
                                                    "seconds")}
        keep["jacobian"] = jacobian
        atomic_write_bytes(args.metrics_json, json.dumps(keep, indent=2, default=str).encode())
    return 0


def _log_jacobian(d: dict | None) -> tuple[float, str | None]:
    """log |det| of the input transform's linear part, so that log p(x) = log p(x') + it
    (change of variables); and a note when the transform is not invertible (row-centring
    drops the constant direction, PCA keeps fewer components), in which case the density
    is reported in the transformed space (jacobian 0)."""
    import math

    from deepbelief.transforms import transform_from_dict

    t = transform_from_dict(d)
    if t is None:
        return 0.0, None
    a = t.linear_part()
    if t.row_center or a.shape[0] != a.shape[1]:
        why = "row-centred" if t.row_center else f"{a.shape[1]} of {a.shape[0]} PCA components"
        return 0.0, (f"the input transform is not invertible ({why}): the log-likelihood is the density "
                     "of the transformed data, not comparable with raw-pixel densities")
    if t.kind == "standardize":  # log p(x) = log p(z) - sum log sd
        return -float(sum(math.log(s) for s in t.std.tolist())), None
    import torch

    return float(torch.linalg.slogdet(a.double())[1]), None  # x' = (x - m) A


# -- show-filters ------------------------------------------------------------------------
def add_show_filters(sub) -> None:
    p = sub.add_parser("show-filters", help="first-layer weights as image tiles (PNG)")
    p.add_argument("model")
    p.add_argument("-o", "--output", default="filters.png")
    p.add_argument("--n", type=int, default=100, help="number of filters to show (default 100)")
    p.add_argument("--shape", type=int_list("--shape", example="28,28"), default=None, help="image shape, e.g. 28,28 (default: square)")
    p.add_argument("--raw", action="store_true",
                   help="show the stored weights; by default Gaussian-visible filters are divided by the "
                        "visible variances and mapped back through the stored input transform")


def cmd_show_filters(args) -> int:
    from deepbelief.errors import check_int
    from deepbelief.io import load_model
    from deepbelief.plotting import image_shape_for, save_tiles

    model = load_model(args.model)
    w = first_layer_filters(model).detach()
    if not args.raw:
        from deepbelief.io import read_metadata

        w = input_space_filters(model, w, read_metadata(args.model))
    n = check_int("--n", args.n, minimum=1)
    shape = tuple(args.shape) if args.shape else image_shape_for(w.shape[1])
    save_tiles(args.output, w[:n], shape)
    print(f"wrote {args.output} ({min(n, w.shape[0])} filters of {shape[0]}x{shape[1]})")
    return 0


COMMANDS = [
    (add_train, cmd_train, "train"),
    (add_evaluate, cmd_evaluate, "evaluate"),
    (add_show_filters, cmd_show_filters, "show-filters"),
    *cli_generative.COMMANDS,  # sample, finetune
    *cli_ecosystem.COMMANDS,  # plot, reproduce
]


def build_parser() -> argparse.ArgumentParser:
    from deepbelief import __version__

    parser = argparse.ArgumentParser(prog="deepbelief", description="RBMs and Deep Belief Networks",
                                     epilog="Errors are one line 'error: ...' with exit status 2; --debug (anywhere "
                                            "on the line) shows the traceback instead.")
    parser.add_argument("--version", action="version", version=f"deepbelief {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    for add, _cmd, _name in COMMANDS:
        add(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so that it unwinds like Ctrl-C: an atomic write
    in progress removes its temporary file and the last checkpoint stays intact."""


def _on_sigterm(signum, frame):
    raise Terminated()


#: what a user-facing command may raise besides the library's own errors: files the OS
#: refuses, values torch or numpy refuse, memory. Each becomes one line, exit status 2.
_USER_ERRORS = (DeepBeliefError, OSError, ValueError, TypeError, RuntimeError, MemoryError, OverflowError)


def main(argv: list[str] | None = None) -> int:
    import os
    import signal
    import threading

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("DEEPBELIEF_DEBUG") == "1"
    argv = [a for a in argv if a != "--debug"]
    args = build_parser().parse_args(argv)
    handlers = {name: cmd for _add, cmd, name in COMMANDS}
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt as exc:
        if debug:
            raise
        what, code = ("terminated (SIGTERM)", 143) if isinstance(exc, Terminated) else ("interrupted", 130)
        print(f"{what}: stopped; files and checkpoints already written are intact (a run with "
              "--checkpoint-dir continues with --resume)", file=sys.stderr)
        return code
    except _USER_ERRORS as exc:
        if debug:
            raise
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _one_line(exc: BaseException) -> str:
    """The error's message; errors not raised by deepbelief on purpose say what they are,
    on one line."""
    if isinstance(exc, DeepBeliefError):
        return str(exc)
    if isinstance(exc, OSError) and exc.filename is not None:
        text = f"{exc.strerror or exc}: {str(exc.filename)!r}"
    else:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text} (--debug shows where)"


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
