"""``deepbelief reproduce``: run one experiment from parsed arguments and write its report."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
from deepbelief.errors import ConfigError
from deepbelief.experiments.common import _from_dict, merge_settings
from deepbelief.experiments.erhan import (
    ErhanConfig,
    erhan,
    erhan_figures,
    erhan_markdown,
)
from deepbelief.experiments.lecture14 import (
    Lecture14Config,
    lecture14,
    lecture14_figure,
    lecture14_markdown,
)
from deepbelief.experiments.posterior import (
    PosteriorConfig,
    posterior_example,
    posterior_markdown,
)


# -- command line -------------------------------------------------------------------------
def main_from_args(args) -> int:
    size = "quick" if args.quick else "reduced" if args.reduced else "full"
    overrides = {}
    if args.config:
        from deepbelief.config import load_toml

        overrides = load_toml(args.config)
    overrides.update(parse_sets(getattr(args, "set", None) or []))
    results = _output_folder(args)
    data_dir = args.data_dir  # None: the library's own search ($DEEPBELIEF_DATA, the cache, a download)
    if args.experiment == "lecture14":
        if args.reduced:
            raise ConfigError("--reduced applies to 'erhan'; lecture14 has --quick and the full size")
        cfg = _from_dict(Lecture14Config, merge_settings(dataclasses.asdict(Lecture14Config.preset(size)), overrides))
        res = lecture14(cfg, device=args.device, seed=args.seed, data_dir=data_dir, results_dir=args.results)
        md, fig = results / f"lecture14-{size}.md", results / f"lecture14-{size}.png"
        lecture14_figure(res, fig)
        text = lecture14_markdown(res, size) + f"\n![lecture 14 table]({fig.name})\n"
    elif args.experiment == "erhan":
        cfg = _from_dict(ErhanConfig, merge_settings(dataclasses.asdict(ErhanConfig.preset(size)), overrides))
        res = erhan(cfg, device=args.device, seed=args.seed, data_dir=data_dir)
        md = results / f"erhan-{size}.md"
        figs = {"hist": f"erhan-{size}-hist.png", "tsne": f"erhan-{size}-tsne.png"}
        erhan_figures(res, results / figs["hist"], results / figs["tsne"], seed=args.seed)
        text = erhan_markdown(res, size, figs)
        for r in res["runs"]:  # the trajectories are in the figure; keep the JSON small
            r.pop("trajectory")
    else:
        cfg = _from_dict(PosteriorConfig, merge_settings(dataclasses.asdict(PosteriorConfig()), overrides))
        res = posterior_example(cfg, seed=args.seed)
        md = results / "posterior.md"
        text = posterior_markdown(res)
    from deepbelief.io import atomic_write_bytes

    atomic_write_bytes(md, text.encode())
    print(text)
    print(f"wrote {md}")
    if args.out:
        atomic_write_bytes(args.out, json.dumps(res, indent=2, default=_json_default).encode())
        print(f"wrote {args.out}")
    return 0


def _output_folder(args) -> Path:
    """Where the report goes: ``--output-dir``, else ``<--docs-dir>/results`` (how
    benchmarks/ update the repository's docs), else ``./deepbelief-results/<experiment>``
    under the working directory: never the package's own docs by default. Created and
    checked for writing before the experiment runs."""
    import os

    if args.output_dir:
        flag, folder = "--output-dir", Path(args.output_dir)
    elif args.docs_dir:
        flag, folder = "--docs-dir", Path(args.docs_dir) / "results"
    else:
        flag, folder = "--output-dir", Path("deepbelief-results") / args.experiment
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        file = next((f for f in (folder, *folder.parents) if f.is_file()), None)
        why = f"cannot be created: {str(file)!r} is a file, not a folder" if file else f"cannot be created: {exc.strerror}"
        raise ConfigError(f"{flag}: folder {str(folder)!r} {why}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag}: folder {str(folder)!r} is not writable")
    return folder


def parse_sets(items: list[str]) -> dict:
    """``["a=1", "b=[1,2]", "c=name", "d.e=2"]`` -> ``{"a": 1, "b": [1, 2], "c": "name",
    "d": {"e": 2}}`` (TOML values, bare words as strings; a dotted key sets a field of a nested
    config, e.g. ``pretrain.epochs=3``)."""
    from deepbelief.config import _toml

    if _toml is None:  # pragma: no cover - Python 3.10 without tomli
        raise ConfigError("--set needs 'tomli' on Python < 3.11 (pip install tomli)")
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            parsed = _toml.loads(f"v = {value}")["v"]
        except _toml.TOMLDecodeError:
            parsed = value
        *path, last = [part.strip() for part in key.split(".")]
        table = out
        for part in path:
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise ConfigError(f"--set {key.strip()}: {part!r} is given a value and nested fields at once")
        table[last] = parsed
    return out


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    return str(o)
