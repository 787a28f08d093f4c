"""Configuration files: a TOML document whose tables mirror the config dataclasses.

    name = "my-run"
    dataset = "mnist"
    layers = [500, 500, 2000]

    [rbm]              # RBMTrainConfig fields
    epochs = 50
    lr = 0.1

    [finetune]         # FinetuneConfig fields
    epochs = 50

Unknown keys are errors (a typo must not be silently ignored).
"""

from __future__ import annotations

from pathlib import Path

from deepbelief.errors import ConfigError, not_a_file

try:  # Python >= 3.11
    import tomllib as _toml
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    try:
        import tomli as _toml
    except ModuleNotFoundError:
        _toml = None


def load_toml(path: str | Path) -> dict:
    """Read a TOML config file into a dict, with errors that name the file."""
    path = Path(path)
    if _toml is None:  # pragma: no cover
        raise ConfigError("reading TOML config files on Python < 3.11 needs 'tomli' (pip install tomli)")
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} {not_a_file(path)}")
    try:
        with open(path, "rb") as fh:
            return _toml.load(fh)
    except _toml.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None


def _toml_value(key: str, v) -> str:
    import json
    import math

    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return "nan" if v != v else ("inf" if v > 0 else "-inf")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(key, x) for x in v) + "]"
    if isinstance(v, dict):  # inline table (e.g. a layer's units config)
        return "{" + ", ".join(f"{k} = {_toml_value(k, x)}" for k, x in v.items()) + "}"
    raise ConfigError(f"config value {key!r} cannot be written as TOML: {v!r} ({type(v).__name__})")


def dump_toml(config: dict) -> str:
    """Write a recipe-like dict as TOML that ``load_toml`` reads back to the same dict.

    Top-level scalars first, then one ``[table]`` per nested dict. TOML has no null, so
    keys whose value is None are left out (the dataclass default, None, applies when the
    file is read); a top-level table that is None is written as ``key = false``.
    """
    head, tables = [], []
    for k, v in config.items():
        if isinstance(v, dict):
            body = [f"{kk} = {_toml_value(kk, vv)}" for kk, vv in v.items() if vv is not None]
            tables.append(f"\n[{k}]\n" + "\n".join(body))
        elif v is None:
            head.append(f"{k} = false")
        else:
            head.append(f"{k} = {_toml_value(k, v)}")
    return "\n".join(head) + "\n" + "\n".join(tables) + "\n"
