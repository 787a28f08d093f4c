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
import re
import secrets
import stat
from pathlib import Path
import torch

from deepbelief.classifier import DeepClassifier
from deepbelief.dbn import DBN, GenerativeDBN
from deepbelief.errors import ConfigError, ModelFileError, not_a_file
from deepbelief.rbm import RBM

FORMAT = "deepbelief"
FORMAT_VERSION = 1
META_KEY = "deepbelief"
#: JSON key of the SHA-256 over metadata and tensors (content_digest)
DIGEST_KEY = "sha256"
#: a larger JSON header is refused before it is read (ours are a few kB)
MAX_HEADER_BYTES = 100_000_000

#: a file's ``kind`` -> the model class that reads it (a static name -> class table, as in
#: torchdiffeq's solver table). Each class has ``kind``, ``config()``, ``from_config(cfg)``
#: and its state dict; models never import this module.
MODELS: dict[str, type[torch.nn.Module]] = {cls.kind: cls for cls in (RBM, DBN, GenerativeDBN, DeepClassifier)}


#: the atomic writer's temporary files are ``.<name>.<8 random characters>.tmp``
TMP_SUFFIX = ".tmp"
_TMP_PATTERN = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


def output_mode(path: str | os.PathLike) -> int:
    """The permission bits a plain ``open(path, "w")`` would leave: an existing file keeps
    its own, a new one gets 0o666 minus the umask. (the temporary file is created 0o600, which the
    rename would otherwise carry over to every output.)"""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mask = os.umask(0o022)  # the only portable way to read the umask is to set it
        os.umask(mask)
        return 0o666 & ~mask


def remove_stale_temporaries(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Delete temporary files of ``atomic_write_bytes`` left in ``folder`` by a process
    killed during a save (SIGKILL leaves no chance to clean up); with ``name``, only those
    of that destination file. Call it only while holding the folder's run lock
    (``checkpoint.RunLock``), so that no live writer owns them. Returns what was removed."""
    removed = []
    for p in sorted(Path(folder).glob(f".{name}.*" if name else ".*")):
        if p.is_file() and _TMP_PATTERN.match(p.name):
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed


class Temporary:
    """A temporary file ``<prefix><8 random hex digits><suffix>`` in ``folder`` whose name is
    known before the file exists: ``create()`` sets ``path`` first, then creates the file
    (0o600, exclusive) and returns its descriptor, so ``remove()`` in a handler finds the
    file whatever instant an interrupt came at. (``tempfile.mkstemp`` returns the name only
    after creating the file; a SIGTERM raised in between left the file behind.)"""

    def __init__(self, folder: str | os.PathLike, prefix: str, suffix: str):
        self.folder, self.prefix, self.suffix = Path(folder), prefix, suffix
        self.path: Path | None = None

    def create(self) -> int:
        while True:
            self.path = self.folder / f"{self.prefix}{secrets.token_hex(4)}{self.suffix}"
            try:
                return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
            except FileExistsError:
                continue
            except OSError:
                self.path = None  # nothing was created
                raise

    def remove(self) -> None:
        """Delete the file if it was created; never raises (it runs while another error,
        or an interrupt, is on its way out)."""
        if self.path is not None:
            try:
                self.path.unlink(missing_ok=True)
            except OSError:
                pass


def fsync_folder(folder: str | os.PathLike) -> None:
    """Make a rename in ``folder`` durable; best effort (some systems cannot open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file, fsync, rename, fsync folder."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ConfigError(f"output path {str(path)!r}: folder {str(folder)!r} does not exist")
    if path.is_dir():
        raise ConfigError(f"output path {str(path)!r} is a folder; expected a file name")
    tmp = Temporary(folder, f".{path.name}.", TMP_SUFFIX)
    try:
        try:
            fd = tmp.create()
        except OSError as exc:
            raise ConfigError(f"output path {str(path)!r} is not writable: {exc.strerror}") from None
        os.fchmod(fd, output_mode(path))
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp.path, path)
    except BaseException as exc:
        tmp.remove()
        if isinstance(exc, OSError):
            raise ConfigError(f"output path {str(path)!r} could not be written: {exc.strerror or exc}") from None
        raise
    fsync_folder(folder)  # make the rename itself durable


def save_tensors(path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Atomically write ``tensors`` plus the JSON ``meta`` document as one safetensors file."""
    from safetensors.torch import save

    clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, **meta}
    header.pop(DIGEST_KEY, None)
    header = json.loads(json.dumps(header))  # hash exactly what a reader will parse (int keys become str)
    header[DIGEST_KEY] = content_digest(header, clean)
    blob = save(clean, metadata={META_KEY: json.dumps(header, sort_keys=True)})
    atomic_write_bytes(path, blob)


def content_digest(header: dict, tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the JSON document (without the digest itself) and every tensor's name,
    dtype, shape and bytes, in name order. safetensors has no checksum of its own, so this
    is what turns a flipped bit or an edited config into an error instead of a silently
    different model."""
    import hashlib

    h = hashlib.sha256(json.dumps({k: v for k, v in header.items() if k != DIGEST_KEY}, sort_keys=True).encode())
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(f"\n{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def load_tensors(path, *, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict]:
    """Read a file written by ``save_tensors``; raise ModelFileError naming the problem."""
    from safetensors import safe_open

    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ConfigError(f"path must be a file path (str or os.PathLike), got {path!r}")
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {str(path)!r} {not_a_file(path)}")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(9)
    n = int.from_bytes(head[:8], "little") if len(head) >= 8 else -1
    # a safetensors file is an 8-byte little-endian header length, then the JSON header
    if len(head) < 9 or n <= 1 or n > min(size - 8, MAX_HEADER_BYTES) or head[8:9] != b"{":
        if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05") or head[:4] == b"PK\x03\x04":
            raise ModelFileError(
                f"model file {str(path)!r} looks like a pickle/zip payload (torch.save), not safetensors; "
                "deepbelief never unpickles files"
            )
        if len(head) < 9:
            raise ModelFileError(f"model file {str(path)!r} is truncated ({size} bytes): not a safetensors file")
        raise ModelFileError(
            f"model file {str(path)!r} is not a valid safetensors file (header length {n}, file size {size})"
        )
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            raw_meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types
        raise ModelFileError(f"model file {str(path)!r} is corrupt or truncated: {exc}") from None
    if META_KEY not in raw_meta:
        raise ModelFileError(f"model file {str(path)!r} has no deepbelief metadata: not written by deepbelief")
    try:
        meta = json.loads(raw_meta[META_KEY])
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError; deep nesting recurses
        raise ModelFileError(f"model file {str(path)!r} has corrupt metadata JSON: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"model file {str(path)!r} is not a deepbelief file")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"model file {str(path)!r} has format_version {version!r}; this deepbelief reads version {FORMAT_VERSION}"
        )
    digest = meta.get(DIGEST_KEY)
    if digest is None:
        raise ModelFileError(
            f"model file {str(path)!r} has no content checksum ({DIGEST_KEY!r} in its metadata): every file "
            "deepbelief writes carries one, so this one was edited or made by another program"
        )
    if digest != content_digest(meta, tensors):
        raise ModelFileError(
            f"model file {str(path)!r} fails its content checksum ({DIGEST_KEY}): its tensors or metadata "
            "were changed after it was written (corrupted or tampered with)"
        )
    if torch.device(device).type != "cpu":
        tensors = {k: v.to(device) for k, v in tensors.items()}
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
    if not (hasattr(model, "kind") and hasattr(model, "config") and hasattr(model, "state_dict")):
        raise ConfigError(f"model must be a deepbelief model (with kind, config, state_dict), got {type(model).__name__}")
    state = model.state_dict()
    check_finite(path, state, "cannot be saved")
    save_tensors(path, state, {"kind": model.kind, "config": model.config(), **extra})


def check_finite(path, tensors: dict[str, torch.Tensor], verb: str) -> None:
    """Raise ModelFileError naming the first tensor that holds NaN or inf values: such a
    model (diverged training, a damaged file) would give meaningless results silently."""
    for name in sorted(tensors):
        t = tensors[name]
        if t.is_floating_point() and t.device.type != "meta" and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise ModelFileError(
                f"model {str(path)!r} {verb}: tensor {name!r} holds {bad} NaN/inf value(s) of {t.numel()}; "
                "its training diverged or the file was damaged"
            )


def read_metadata(path) -> dict:
    """The JSON metadata of a deepbelief file (validated like ``load_model``)."""
    return load_tensors(path)[1]


def load_model(path, *, device: str | torch.device = "cpu"):
    """Load any deepbelief model file; the ``kind`` in its metadata picks the class."""
    tensors, meta = load_tensors(path, device=device)
    check_finite(path, tensors, "cannot be loaded")
    kind = meta.get("kind")
    if not isinstance(kind, str) or kind not in MODELS:
        raise ModelFileError(f"model file {str(path)!r} holds unknown model kind {kind!r}; known: {sorted(MODELS)}")
    cfg = meta.get("config") or {}
    # First build the model on the meta device (no memory) and check the file's tensors
    # against it, so that a tampered config declaring a huge model is refused without
    # allocating it: once names and shapes match, the model is no larger than the file.
    # Models must therefore be constructible under torch.device("meta").
    cls = MODELS[kind]
    for probe in (True, False):
        try:
            if probe:
                with torch.device("meta"):
                    model = load_state_into(path, cls.from_config(cfg), {k: v.to("meta") for k, v in tensors.items()})
            else:
                model = load_state_into(path, cls.from_config(cfg), tensors)
        except ModelFileError:
            raise
        except (ConfigError, KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError,
                OverflowError, MemoryError, RecursionError, NotImplementedError) as exc:
            raise ModelFileError(f"model file {str(path)!r} has an invalid config: {exc}") from None
    return model.to(device) if hasattr(model, "to") else model


def load_state_into(path, module: torch.nn.Module, tensors: dict[str, torch.Tensor]):
    check_state(path, module, tensors)
    with torch.no_grad():
        module.load_state_dict(tensors, strict=True)
    return module

