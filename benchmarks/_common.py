"""Shared plumbing of the benchmark scripts: arguments, machine description, JSON output."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # run from a checkout without installing


def default_data_dir() -> str | None:
    for c in (ROOT.parent / "shared" / "data" / "mnist", Path("/work/shared/data/mnist")):
        if c.exists():
            return str(c)
    return None


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default="auto", help="auto|cpu|cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=default_data_dir())
    p.add_argument("--quick", action="store_true", help="a small version that runs in about a minute")
    p.add_argument("--out", default=None, help="write the measured figures as JSON here")
    return p


def machine_info(device: str | None = None) -> dict:
    import torch

    info = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "commit": START_COMMIT,
    }
    if device is not None and str(device).startswith("cuda") and torch.cuda.is_available():
        info["device_name"] = torch.cuda.get_device_name()
    else:
        info["device_name"] = f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    return info


def write_json(path: str | None, payload: dict) -> None:
    if not path:
        return
    from deepbelief.io import atomic_write_bytes

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(payload, indent=2, default=str).encode())
    print(f"wrote {path}")


def run_reproduce(experiment: str) -> int:
    """Run ``deepbelief reproduce EXPERIMENT`` with the repo's data, docs and results folders
    as defaults (the benchmarks/reproduce_*.py scripts are this one call)."""
    from deepbelief.cli import main

    argv = sys.argv[1:]
    defaults = {"--data-dir": default_data_dir(), "--docs-dir": str(ROOT / "docs"),
                "--results": str(ROOT / "benchmarks" / "results")}
    for flag, value in defaults.items():
        if value is not None and not any(a == flag or a.startswith(flag + "=") for a in argv):
            argv += [flag, value]
    return main(["reproduce", experiment] + argv)


def git_commit() -> str:
    """The commit this benchmark's checkout is at (with '+dirty' if it has local changes;
    records, benchmarks/results/ and Markdown, do not count: a run writes its own JSON there
    before its headline entry)."""
    import subprocess

    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)benchmarks/results", ":(exclude)*.md"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


# The commit the run started from (read once, when the script imports this module), so that a
# JSON written hours later names the code that ran even if the checkout has moved on since.
START_COMMIT = git_commit()


def record_headline(figures: dict, *, machine: str, path: str | Path | None = None) -> None:
    """Add or update entries of benchmarks/results/headline.json, one per key in ``figures``
    ({key: value}), each with the command that produced it, the machine, the commit the script
    started from and the date. Only a real run calls this, so an entry is always a measured figure."""
    from deepbelief.io import atomic_write_bytes

    path = Path(path) if path is not None else ROOT / "benchmarks" / "results" / "headline.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    command = " ".join(["python", "benchmarks/" + Path(sys.argv[0]).name] + sys.argv[1:])
    stamp = {"command": command, "machine": machine, "commit": START_COMMIT,
             "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")}
    for key, value in figures.items():
        data[key] = {"value": value, **stamp}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
    print(f"headline: {', '.join(f'{k} = {v}' for k, v in figures.items())} -> {path}")


def machine_name() -> str:
    import torch

    return f"{platform.machine()} CPU, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def field_values(flag: str, config_class, pairs: list[str]) -> dict:
    """``FIELD=VALUE`` pairs of ``flag`` as a dict; FIELD is a field of ``config_class`` and
    VALUE is read by that field's type."""
    import dataclasses

    kinds = {f.name: str(f.type) for f in dataclasses.fields(config_class)}
    out = {}
    for pair in pairs:
        field, sep, text = (part.strip() for part in pair.partition("="))
        if not sep or field not in kinds:
            raise SystemExit(f"{flag} must be FIELD=VALUE with FIELD one of {', '.join(sorted(kinds))}; got {pair!r}")
        kind = kinds[field]
        try:
            if kind == "bool":
                value = {"true": True, "false": False}[text.lower()]
            elif kind.startswith("list[int]"):
                value = [int(t) for t in text.split(",")]
            else:
                value = int(text) if kind.startswith("int") else float(text) if kind.startswith("float") else text
        except (KeyError, ValueError):
            raise SystemExit(f"{flag} {field}: expected a value of type {kind}, got {text!r}") from None
        out[field] = value
    return out
