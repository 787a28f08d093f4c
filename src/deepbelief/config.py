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

from deepbelief.errors import ConfigError

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
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        with open(path, "rb") as fh:
            return _toml.load(fh)
    except _toml.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
