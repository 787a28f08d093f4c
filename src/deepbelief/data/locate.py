"""Where the IDX files of MNIST and Fashion-MNIST are looked for, in order: the ``data_dir``
argument, ``$DEEPBELIEF_DATA``, the user cache (sources.py has the whole rule), and the
checksums every MNIST file is verified against."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from deepbelief.errors import ConfigError, DataError

#: Environment variable naming a folder of datasets (files directly, or ``mnist/`` etc.).
DATA_ENV_VAR = "DEEPBELIEF_DATA"

#: The four IDX files of MNIST and Fashion-MNIST, without the optional ``.gz`` suffix.
MNIST_FILES: tuple[str, ...] = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

#: SHA-256 of the decompressed MNIST files (identical to the official distribution).
MNIST_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}


def default_cache_dir() -> Path:
    """The user cache folder: ``$XDG_CACHE_HOME/deepbelief``, else ``~/.cache/deepbelief``.

    A relative ``XDG_CACHE_HOME`` is ignored, as the XDG Base Directory specification asks.
    """
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "deepbelief"


def as_path(name: str, value: Any) -> Path:
    if isinstance(value, (str, os.PathLike)) and str(value):
        return Path(value).expanduser()
    raise ConfigError(f"{name} must be a folder path (str or os.PathLike), got {value!r}")


def file_names(stem: str) -> tuple[str, ...]:
    # Also accept the dotted spelling some redistributions use (train-images.idx3-ubyte).
    dotted = stem.replace("-idx", ".idx")
    return (stem, stem + ".gz", dotted, dotted + ".gz")


def find_files(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """Map each of MNIST_FILES to an existing file in ``folder``; also list the missing ones."""
    found, missing = {}, []
    for stem in MNIST_FILES:
        for name in file_names(stem):
            if (folder / name).is_file():
                found[stem] = folder / name
                break
        else:
            missing.append(stem + "[.gz]")
    return found, missing


def search(places: list[tuple[str, Path | None]]) -> tuple[dict[str, Path] | None, list[str]]:
    """Return the files of the first complete folder among ``places``, and what was seen where."""
    report = []
    for label, folder in places:
        if folder is None:
            report.append(f"{label}: not set")
            continue
        if not folder.is_dir():
            report.append(f"{label}: {folder} (no such folder)")
            continue
        found, missing = find_files(folder)
        if not missing:
            return found, report
        report.append(f"{label}: {folder} (missing {', '.join(missing)})")
    return None, report


def search_places(subdir: str, data_dir: Any, cache_root: Path, *,
                  env_top_level: bool) -> list[tuple[str, Path | None]]:
    """Folders to search, in order: data_dir (and its subdir), $DEEPBELIEF_DATA, the cache.

    ``env_top_level`` lets the environment folder itself hold the files; only MNIST, the
    default, may sit there, since Fashion-MNIST uses the very same file names.
    """
    places: list[tuple[str, Path | None]] = []
    if data_dir is None:
        places.append(("data_dir argument (--data-dir)", None))
    else:
        root = as_path("data_dir", data_dir)
        places += [("data_dir", root), ("data_dir", root / subdir)]
    env = os.environ.get(DATA_ENV_VAR, "")
    if not env:
        places.append((f"${DATA_ENV_VAR}", None))
    else:
        root = Path(env).expanduser()
        if env_top_level:
            places.append((f"${DATA_ENV_VAR}", root))
        places.append((f"${DATA_ENV_VAR}", root / subdir))
    places.append(("user cache", cache_root / subdir))
    return places


def not_found(title: str, report: list[str], hint: str) -> DataError:
    lines = "\n".join(f"  - {line}" for line in report)
    return DataError(f"{title} not found. Looked in:\n{lines}\nTo fix: {hint}")


def fix_hint(subdir: str, cache_root: Path, extra: str = "") -> str:
    files = ", ".join(s + "[.gz]" for s in MNIST_FILES)
    return (
        f"put the four files ({files}) in a folder and pass it with --data-dir DIR "
        f"(data_dir=DIR), or set {DATA_ENV_VAR}=DIR (the files directly, or in DIR/{subdir}/), "
        f"or copy them into {cache_root / subdir}{extra}"
    )
