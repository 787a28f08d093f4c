"""Saving and loading: safetensors for tensors, JSON for everything else, atomic writes.

A model file is one safetensors file. Its header's ``__metadata__`` holds a JSON document
``{"format": "deepbelief", "format_version": 1, "kind": ..., "config": {...}, ...}`` from
which the model is rebuilt with no other input; the tensors are the model's state dict.
Keeping config and tensors in one file makes a save a single atomic rename. Nothing is
ever unpickled: safetensors parses a JSON header and raw little-endian buffers.

Writes go to a temporary file in the destination folder, are fsynced, then renamed over
the destination (``os.replace`` is atomic on POSIX and Windows), so a reader or a crash
sees either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from deepbelief.errors import ConfigError, ModelFileError

FORMAT = "deepbelief"
FORMAT_VERSION = 1
META_KEY = "deepbelief"

#: kind -> loader(config, tensors) -> object; filled by the modules that define models.
_LOADERS: dict[str, Callable[[dict, dict[str, torch.Tensor]], Any]] = {}


def register_loader(kind: str):
    def deco(fn):
        _LOADERS[kind] = fn
        return fn

    return deco


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file, fsync, rename, fsync folder."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ConfigError(f"output path {str(path)!r}: folder {str(folder)!r} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise ConfigError(f"output path {str(path)!r} is not writable: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def save_tensors(path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Atomically write ``tensors`` plus the JSON ``meta`` document as one safetensors file."""
    from safetensors.torch import save

    clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, **meta}
    blob = save(clean, metadata={META_KEY: json.dumps(header, sort_keys=True)})
    atomic_write_bytes(path, blob)


def load_tensors(path, *, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict]:
    """Read a file written by ``save_tensors``; raise ModelFileError naming the problem."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {str(path)!r} does not exist")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
    if len(head) < 8:
        raise ModelFileError(f"model file {str(path)!r} is truncated ({size} bytes): not a safetensors file")
    n = int.from_bytes(head, "little")
    if n <= 0 or n > min(size - 8, 100_000_000):
        kind = " (it looks like a pickle/torch.save payload, which is never loaded)" if head[:1] == b"\x80" or \
            head[:2] == b"PK" else ""
        raise ModelFileError(
            f"model file {str(path)!r} is not a valid safetensors file (header length {n}, file size {size}){kind}"
        )
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            raw_meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types
        raise ModelFileError(f"model file {str(path)!r} is corrupt or truncated: {exc}") from None
    if META_KEY not in raw_meta:
        raise ModelFileError(f"model file {str(path)!r} has no deepbelief metadata: not written by deepbelief")
    try:
        meta = json.loads(raw_meta[META_KEY])
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"model file {str(path)!r} has corrupt metadata JSON: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"model file {str(path)!r} is not a deepbelief file")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"model file {str(path)!r} has format_version {version!r}; this deepbelief reads version {FORMAT_VERSION}"
        )
    return tensors, meta


def check_state(path, module: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Raise ModelFileError unless ``tensors`` has exactly the module's keys and shapes."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing:
        raise ModelFileError(f"model file {str(path)!r} is missing tensors {missing}")
    if extra:
        raise ModelFileError(f"model file {str(path)!r} has unexpected tensors {extra}")
    for k, shape in expected.items():
        got = tuple(tensors[k].shape)
        if got != shape:
            raise ModelFileError(f"model file {str(path)!r}: tensor {k!r} has shape {got}, expected {shape}")
        if not tensors[k].is_floating_point():
            raise ModelFileError(f"model file {str(path)!r}: tensor {k!r} has dtype {tensors[k].dtype}, expected float")


def save_model(path, model, **extra) -> None:
    """Save a model that has ``kind``, ``config()`` and ``state_dict()``.

    ``extra`` JSON-serialisable entries (the training config, metrics, the data
    transform) are stored beside the config and returned by ``read_metadata``.
    """
    save_tensors(path, model.state_dict(), {"kind": model.kind, "config": model.config(), **extra})


def read_metadata(path) -> dict:
    """The JSON metadata of a deepbelief file (validated like ``load_model``)."""
    return load_tensors(path)[1]


def load_model(path, *, device: str | torch.device = "cpu"):
    """Load any deepbelief model file; the ``kind`` in its metadata picks the class."""
    tensors, meta = load_tensors(path, device=device)
    kind = meta.get("kind")
    _import_model_modules()
    if kind not in _LOADERS:
        raise ModelFileError(f"model file {str(path)!r} holds unknown model kind {kind!r}; known: {sorted(_LOADERS)}")
    try:
        model = _LOADERS[kind](meta.get("config") or {}, tensors, path)
    except ModelFileError:
        raise
    except (ConfigError, KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"model file {str(path)!r} has an invalid config: {exc}") from None
    return model.to(device) if hasattr(model, "to") else model


def load_state_into(path, module: torch.nn.Module, tensors: dict[str, torch.Tensor]):
    check_state(path, module, tensors)
    with torch.no_grad():
        module.load_state_dict(tensors, strict=True)
    return module


@register_loader("rbm")
def _load_rbm(cfg, tensors, path):
    from deepbelief.rbm import RBM

    return load_state_into(path, RBM.from_config(cfg), tensors)


def _import_model_modules():
    # importing registers their loaders; kept lazy so io.py has no import cycles
    import deepbelief.dbn  # noqa: F401
    import deepbelief.finetune  # noqa: F401
