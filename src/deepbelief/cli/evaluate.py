"""``deepbelief evaluate`` (test error, or with --loglik the AIS / RAISE log-likelihood or
DBN bound) and ``deepbelief show-filters``."""

from __future__ import annotations

import sys
import time

from deepbelief.cli.args import common_args, data_args, int_list
from deepbelief.errors import ConfigError
from deepbelief.filters import first_layer_filters, input_space_filters


# -- evaluate ----------------------------------------------------------------------------
def add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="test error of a saved classifier (and more for other models)")
    p.add_argument("model", help="a .safetensors file written by deepbelief")
    data_args(p)
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
    common_args(p)


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
    from deepbelief.transforms import log_jacobian

    jacobian, note = log_jacobian(meta.get("input_transform"))
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
