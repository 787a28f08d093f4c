"""Command-line subcommands of the labelled generative DBN (registered in ``cli.COMMANDS``).

    deepbelief sample MODEL [--label 3 | --grid N] [--steps 1000] [--chain-every K] -o samples.png
    deepbelief finetune MODEL --method up-down --epochs N [--resume] [-o OUT]

Thin adapters over ``GenerativeDBN.sample`` and ``wake_sleep.up_down``.
"""

from __future__ import annotations

import argparse

import time
from pathlib import Path

from deepbelief.cli.args import common_args, int_list
from deepbelief.errors import ConfigError


def _load_generative(path, dev):
    from deepbelief.io import load_model, read_metadata

    meta = read_metadata(path)
    if meta.get("kind") != "generative_dbn":
        raise ConfigError(f"MODEL must be a generative DBN (deepbelief train --recipe hot2006), "
                          f"got a {meta.get('kind')!r} file: {str(path)!r}")
    return load_model(path, device=dev), meta


# -- sample ------------------------------------------------------------------------------
def add_sample(sub) -> None:
    p = sub.add_parser("sample", help="generate images from a generative DBN (Gibbs at the top, then down)")
    p.add_argument("model", help="a generative DBN written by deepbelief train --recipe hot2006")
    p.add_argument("--label", type=int, default=None, help="clamp this class (default: labels are sampled too)")
    p.add_argument("--grid", type=int, default=None, metavar="N",
                   help="a n_labels x N grid: row k holds N samples of class k (overrides --label/--n)")
    p.add_argument("--n", type=int, default=10, help="number of samples without --grid (default 10)")
    p.add_argument("--steps", type=int, default=1000, help="Gibbs sweeps in the top RBM (default 1000)")
    p.add_argument("--init", default="top-noise", choices=["top-noise", "biases"],
                   help="where the chains start: random binary top-level states (Hinton's digit movies; default: "
                        "they mix sooner) or the features sampled from their biases")
    p.add_argument("--chain-every", type=int, default=0, metavar="K",
                   help="show every K-th state of each chain: one row per chain (an unrolled animation)")
    p.add_argument("--shape", type=int_list("--shape", example="28,28"), default=None, help="image shape, e.g. 28,28 (default: square)")
    p.add_argument("-o", "--output", default="samples.png")
    common_args(p)


def cmd_sample(args) -> int:
    import torch

    from deepbelief.errors import check_int, resolve_device
    from deepbelief.plotting import image_shape_for, save_tiles
    from deepbelief.training import make_generator

    dev = resolve_device(args.device)
    model, _meta = _load_generative(args.model, dev)
    gen = make_generator(args.seed, dev)
    steps = check_int("--steps", args.steps, minimum=0)
    every = check_int("--chain-every", args.chain_every, minimum=0)
    if args.grid is not None:
        per = check_int("--grid", args.grid, minimum=1)
        labels = torch.arange(model.n_labels).repeat_interleave(per).tolist()
        n, ncols = len(labels), per
    else:
        n = check_int("--n", args.n, minimum=1)
        labels = None if args.label is None else [check_int("--label", args.label, minimum=0)] * n
        ncols = min(n, 10)
        if labels is not None and labels[0] >= model.n_labels:
            raise ConfigError(f"--label must be in [0, {model.n_labels - 1}], got {labels[0]}")
    shape = tuple(args.shape) if args.shape else image_shape_for(model.sizes[0])
    t0 = time.perf_counter()
    if every:
        x, lab, frames = model.sample(n, label=labels, steps=steps, generator=gen, frames_every=every,
                                      return_frames=True, init=args.init)
        if not frames:
            raise ConfigError(f"--chain-every must be <= --steps ({steps}), got {every}")
        # (n, n_frames, n_pixels): one row per chain, time running left to right
        images = torch.stack(frames, 1).reshape(-1, model.sizes[0])
        save_tiles(args.output, images, shape, ncols=len(frames), normalize="none")
        what = f"{n} chains x {len(frames)} frames (every {every} steps)"
    else:
        x = model.sample(n, label=labels, steps=steps, generator=gen, init=args.init)
        save_tiles(args.output, x, shape, ncols=ncols, normalize="none")
        what = f"{n} samples" + (f" of class {args.label}" if args.label is not None and args.grid is None else "")
    print(f"wrote {args.output} ({what}, {steps} Gibbs steps) in {time.perf_counter() - t0:.2f}s")
    return 0


# -- finetune ----------------------------------------------------------------------------
def add_finetune(sub) -> None:
    p = sub.add_parser("finetune", help="fine-tune a saved model (up-down: contrastive wake-sleep)")
    p.add_argument("model", help="a generative DBN written by deepbelief train --recipe hot2006")
    p.add_argument("--method", default="up-down", help="up-down (contrastive wake-sleep, HOT 2006)")
    p.add_argument("--epochs", type=int, default=None, help="total up-down epochs (default: the recipe's)")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--lr-final", type=float, default=None,
                   help="learning rate at the last epoch, reached linearly (default: constant --lr)")
    p.add_argument("--momentum", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--gibbs-steps", type=int_list("--gibbs-steps", example="3,6,10"), default=None,
                   help="top-level Gibbs iterations per part of the run (default 3,6,10)")
    p.add_argument("--persistent", action=argparse.BooleanOptionalAction, default=None,
                   help="top level by PCD-K from persistent fantasy chains (default: the recipe's; CD-K)")
    p.add_argument("--dataset", default=None, help="default: the dataset the model was trained on")
    p.add_argument("--data-dir", default=None)
    p.add_argument("-o", "--output", default=None, help="default: MODEL with .updown before the suffix")
    p.add_argument("--checkpoint", default=None, help="checkpoint file (default: OUTPUT.ckpt.safetensors)")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    p.add_argument("--quiet", action="store_true")
    common_args(p)


def cmd_finetune(args) -> int:
    from deepbelief.checkpoint import hold_folder
    from deepbelief.errors import check_choice, resolve_device
    from deepbelief.wake_sleep import UpDownConfig

    check_choice("--method", args.method, {"up-down"})
    dev = resolve_device(args.device)
    model, meta = _load_generative(args.model, dev)
    recipe = meta.get("recipe") or {}
    cfg = dict(recipe.get("updown") or {})
    for name in ("epochs", "lr", "lr_final", "momentum", "batch_size", "gibbs_steps", "persistent"):
        if getattr(args, name) is not None:  # flags named as the UpDownConfig fields
            cfg[name] = getattr(args, name)
    cfg = UpDownConfig.from_dict(cfg)
    src = Path(args.model)
    out = Path(args.output) if args.output else src.with_name(src.name.removesuffix(".safetensors") +
                                                              ".updown.safetensors")
    ckpt = Path(args.checkpoint) if args.checkpoint else out.with_name(out.name + ".ckpt.safetensors")
    from deepbelief.cli.args import check_writable, refuse_same_paths

    refuse_same_paths([("MODEL", args.model), ("--output", str(out)), ("--checkpoint", str(ckpt))])
    check_writable("--output", str(out))
    check_writable("--checkpoint", str(ckpt))
    with hold_folder(ckpt.parent, what="--checkpoint's folder", lock_name=f".{ckpt.name}.lock",
                     temporaries=(ckpt.name, out.name), log=print):
        if args.resume and not ckpt.exists():
            print(f"resume: no checkpoint {str(ckpt)!r} yet, so there is nothing to continue: starting from "
                  f"{str(args.model)!r}")
        return _finetune_run(args, model, meta, cfg, recipe, dev, out, ckpt)


def _finetune_run(args, model, meta, cfg, recipe, dev, out, ckpt) -> int:
    from deepbelief.data import load_dataset
    from deepbelief.io import save_model
    from deepbelief.progress import Progress, epoch_of
    from deepbelief.training import make_generator
    from deepbelief.wake_sleep import up_down

    ds = load_dataset(args.dataset or recipe.get("dataset") or "digits", data_dir=args.data_dir)
    n_valid = min(int(recipe.get("n_valid", 0) or 0), ds.x_train.shape[0] // 2)
    cut = ds.x_train.shape[0] - n_valid
    x, y = ds.x_train[:cut].to(dev), ds.y_train[:cut].to(dev)
    valid = (ds.x_train[cut:].to(dev), ds.y_train[cut:].to(dev)) if n_valid else None
    gen = make_generator(args.seed, dev)

    prog = Progress()

    def on_epoch(epoch, m):
        if not args.quiet:
            va = f" valid error {100 * m['valid_error']:.2f}%" if "valid_error" in m else ""
            print(f"  up-down epoch {epoch_of(epoch, cfg.epochs)} (K={m['gibbs_steps']}): "
                  f"recon {m['recon_error']:.4f}{va} ({prog.times(epoch, cfg.epochs, m['seconds'])})")

    t0 = time.perf_counter()
    up_down(model, x, y, cfg, generator=gen, valid=valid, callback=on_epoch, checkpoint=ckpt, resume=args.resume)
    seconds = time.perf_counter() - t0
    err = float(model.error_rate(ds.x_test.to(dev), ds.y_test.to(dev)))
    meta_out = {k: v for k, v in meta.items() if k not in ("kind", "config", "format", "format_version")}
    meta_out["updown"] = {**cfg.__dict__, "seed": args.seed, "seconds": seconds}
    meta_out["metrics"] = {**(meta.get("metrics") or {}), "test_error": err}
    save_model(out, model, **meta_out)
    print(f"test error (free-energy classification): {100 * err:.2f}%")
    kept = f" (checkpoint {ckpt})" if ckpt.exists() else " (no epoch ran: no checkpoint written)"
    print(f"wrote {out}{kept} in {seconds:.1f}s")
    return 0


COMMANDS = [
    (add_sample, cmd_sample, "sample"),
    (add_finetune, cmd_finetune, "finetune"),
]
