"""Command-line subcommands for plots and experiments (registered in ``cli.COMMANDS``).

    deepbelief plot filters MODEL -o filters.png       first-layer weights as tiles
    deepbelief plot samples MODEL -o samples.png       Gibbs samples of an RBM or DBN; a generative
                                                       DBN's class-conditional samples
    deepbelief plot curves metrics.csv -o curves.png   training curves from --metrics-csv
    deepbelief reproduce lecture14 [--quick]           the lecture's MNIST table
    deepbelief reproduce erhan [--quick|--reduced]     does pre-training help? (Erhan et al.)
    deepbelief reproduce posterior                     aggregated posterior, bound per layer
    (reports go to ./deepbelief-results/<experiment>/ unless --output-dir or --docs-dir says otherwise)

Heavy imports happen inside the ``cmd_`` functions, so ``deepbelief --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

from deepbelief.cli.args import common_args, int_list, name_list
from deepbelief.errors import ConfigError


# -- plot ---------------------------------------------------------------------------------
def add_plot(sub) -> None:
    p = sub.add_parser("plot", help="figures: filters, samples (PNG tiles) or training curves")
    p.add_argument("what", choices=["filters", "samples", "curves"])
    p.add_argument("source", help="a model file (filters, samples) or a metrics CSV (curves)")
    p.add_argument("-o", "--output", default=None, help="PNG to write (default: <what>.png)")
    p.add_argument("--n", type=int, default=100, help="filters or samples to show (default 100)")
    p.add_argument("--shape", type=int_list("--shape", example="28,28"), default=None, help="image shape, e.g. 28,28 (default: square)")
    p.add_argument("--steps", type=int, default=1000, help="Gibbs steps per sample (default 1000)")
    p.add_argument("--metrics", type=name_list("--metrics", "recon_error,loss"), default=None,
                   help="comma-separated metric names for curves (default: every metric in the file)")
    common_args(p)


def gibbs_samples(model, n: int, steps: int, generator):
    """Fantasies of an RBM or a DBN, shape (n, n_visible): ``steps`` sweeps of alternating
    Gibbs sampling in the (top) RBM from uniform noise, then, for a DBN, one top-down pass
    of means through the directed layers (Hinton, Osindero & Teh 2006, section 2)."""
    from deepbelief.dbn import DBN
    from deepbelief.errors import check_int

    n = check_int("--n", n, minimum=1)
    steps = check_int("--steps", steps, minimum=1)
    rbms = list(model.rbms) if hasattr(model, "rbms") else [model] if getattr(model, "kind", "") == "rbm" else None
    if rbms is None:
        raise ConfigError(f"samples need an RBM or a DBN model file, got a {getattr(model, 'kind', '?')!r} model")
    return DBN(rbms).sample(n, steps, generator)


def cmd_plot(args) -> int:
    from deepbelief.errors import resolve_device
    from deepbelief.plotting import image_shape_for, plot_metrics, save_tiles

    out = Path(args.output or f"{args.what}.png")
    if args.what == "curves":
        from deepbelief.metrics_log import read_metrics_csv

        rows = read_metrics_csv(args.source)
        names = args.metrics
        plot_metrics(out, rows, names, title=Path(args.source).name)
        print(f"wrote {out}")
        return 0
    from deepbelief.filters import first_layer_filters
    from deepbelief.io import load_model
    from deepbelief.training import make_generator

    dev = resolve_device(args.device)
    model = load_model(args.source, device=dev)
    ncols, what = None, args.what
    if args.what == "filters":
        images, norm = first_layer_filters(model).detach(), "each"
        images = images[: args.n]
    elif getattr(model, "kind", "") == "generative_dbn":
        images, ncols = class_conditional_samples(model, args.n, args.steps, make_generator(args.seed, dev))
        norm, what = "none", f"class-conditional samples (one row per class, {ncols} each)"
    else:
        images, norm = gibbs_samples(model, args.n, args.steps, make_generator(args.seed, dev)), "none"
    shape = tuple(args.shape) if args.shape else image_shape_for(images.shape[1])
    save_tiles(out, images, shape, normalize=norm, **({"ncols": ncols} if ncols else {}))
    print(f"wrote {out} ({images.shape[0]} {what} of {shape[0]}x{shape[1]})")
    return 0


def class_conditional_samples(model, n: int, steps: int, generator):
    """A generative DBN's samples with the label clamped: ``n // n_labels`` (at least one)
    per class, class k in row k, as ``deepbelief sample --grid`` draws them. Returns
    (images (n_labels * per, n_pixels), per)."""
    import torch

    from deepbelief.errors import check_int

    n = check_int("--n", n, minimum=1)
    steps = check_int("--steps", steps, minimum=1)
    per = max(1, n // model.n_labels)
    labels = torch.arange(model.n_labels).repeat_interleave(per).tolist()
    with torch.no_grad():
        return model.sample(len(labels), label=labels, steps=steps, generator=generator), per


# -- reproduce ----------------------------------------------------------------------------
def add_reproduce(sub) -> None:
    p = sub.add_parser("reproduce", help="run a published experiment and compare with the paper's numbers")
    p.add_argument("experiment", choices=["lecture14", "erhan", "posterior"])
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a minutes-long version on a subset (CPU)")
    size.add_argument("--reduced", action="store_true", help="erhan: the < 30 min CPU configuration")
    p.add_argument("--config", default=None, help="TOML file overriding the experiment's settings")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting, e.g. --set finetune_epochs=10 --set depths=[1,2] (TOML values)")
    p.add_argument("--data-dir", default=None, help="folder with the MNIST IDX files (else $DEEPBELIEF_DATA, the cache, a download)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--output-dir", default=None,
                       help="where the markdown report and figures go (default: ./deepbelief-results/EXPERIMENT)")
    where.add_argument("--docs-dir", default=None,
                       help="write them into DOCS_DIR/results instead (how benchmarks/ update the repository's docs)")
    p.add_argument("--results", default=None,
                   help="lecture14: a folder of recorded benchmark JSONs; a recorded generative-DBN run is then "
                        "cited beside its row, which this command does not run (default: none)")
    p.add_argument("--out", default=None, help="also write every measured figure as JSON here")
    common_args(p)


def cmd_reproduce(args) -> int:
    from deepbelief import experiments

    return experiments.main_from_args(args)


COMMANDS = [
    (add_plot, cmd_plot, "plot"),
    (add_reproduce, cmd_reproduce, "reproduce"),
]
