"""Shared flags (``common_args``: --device, --seed, --threads; ``data_args``: --dataset, --data-dir) and
parsers of command-line values that argparse's ``type=int`` does not cover: lists of
integers (``--layers 500,500,2000``, ``--shape 28,28``, ``--gibbs-steps 3,6,10``) and lists
of names (``--metrics recon_error,loss``).

Each refuses what it cannot read exactly, naming the flag, what was expected and the value
received: ``-5`` is not a list of layer sizes, ``5,,6`` has an empty entry, ``1e3`` is not
an integer. (An earlier parser turned ``-`` into ``,`` and trained ``--layers -5`` as
``[5]``.)
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from deepbelief.errors import ConfigError

_INT = re.compile(r"^\s*[0-9]+\s*$")


def int_list(flag: str, *, minimum: int = 1, example: str = "500,500,2000"):
    """An argparse ``type`` reading comma-separated integers >= ``minimum``."""

    def parse(text: str) -> list[int]:
        expected = f"{flag} expects comma-separated integers >= {minimum}, like {example}"
        parts = text.split(",")
        for part in parts:
            if not part.strip():
                raise argparse.ArgumentTypeError(f"{expected}; got {text!r}, which has an empty entry")
            if not _INT.match(part):
                raise argparse.ArgumentTypeError(f"{expected}; got {text!r} ({part.strip()!r} is not one)")
        values = [int(p) for p in parts]
        small = [v for v in values if v < minimum]
        if small:
            raise argparse.ArgumentTypeError(f"{expected}; got {text!r} ({small[0]} is below {minimum})")
        return values

    return parse


def name_list(flag: str, example: str):
    """An argparse ``type`` reading comma-separated non-empty names."""

    def parse(text: str) -> list[str]:
        names = [p.strip() for p in text.split(",")]
        if any(not n for n in names):
            raise argparse.ArgumentTypeError(
                f"{flag} expects comma-separated names like {example}; got {text!r}, which has an empty entry")
        return names

    return parse


def refuse_same_paths(paths: list[tuple[str, str | None]]) -> None:
    """Raise ConfigError if two of the command's files or folders (``(flag, path)``, None
    for unused ones) are the same path: one would silently overwrite the other."""
    import os

    seen: dict[str, str] = {}
    for flag, path in paths:
        if path is None:
            continue
        key = os.path.realpath(path)
        if key in seen:
            raise ConfigError(f"{flag} {path!r} is the same path as {seen[key]}; give each output its own path")
        seen[key] = f"{flag} {path!r}"


def check_writable(flag: str, target: str) -> None:
    """Raise ConfigError unless a file can be created at ``target`` (its folder exists,
    is a folder and is writable, and ``target`` is not itself a folder)."""
    import os

    path = Path(target)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ConfigError(f"{flag} must be a file path, got {target!r}, which is a folder")
    if not folder.is_dir():
        why = "is a file, not a folder" if folder.exists() else "does not exist"
        raise ConfigError(f"{flag} {target!r} cannot be written: folder {str(folder)!r} {why}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {target!r} cannot be written: folder {str(folder)!r} is not writable")


def positive_int(flag: str, what: str):
    """An argparse ``type`` reading one integer >= 1; ``what`` says what it counts."""

    def parse(text: str) -> int:
        if not _INT.match(text) or int(text) < 1:
            raise argparse.ArgumentTypeError(f"{flag} expects an integer >= 1 ({what}); got {text!r}")
        return int(text)

    return parse


def common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto|cpu|cuda|cuda:N (default: auto)")
    p.add_argument("--seed", type=int, default=0, help="seed of the run's one generator (default: 0)")
    p.add_argument("--threads", type=positive_int("--threads", "CPU threads for torch's operations"), default=None,
                   help="CPU threads torch uses for the command (default: torch's own choice, usually one per "
                        "core; the same as setting OMP_NUM_THREADS)")


def data_args(p: argparse.ArgumentParser, default: str | None = None) -> None:
    p.add_argument("--dataset", default=default,
                   help="digits (embedded, default), mnist, mnist-binarized, fashion-mnist, patches")
    p.add_argument("--data-dir", default=None,
                   help="folder holding the dataset's IDX files (else $DEEPBELIEF_DATA, the cache, a download)")
