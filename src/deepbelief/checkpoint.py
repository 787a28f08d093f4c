"""Checkpoints any long run can adopt: tensors + generator + optimiser + JSON, atomically.

A checkpoint is an ordinary deepbelief safetensors file (io.save_tensors): a JSON
document in the header (``kind``, ``format_version``, the run's config, the step it
stopped at, its history) and named tensors. Writes go to a temporary file in the same
folder, are fsynced and renamed over the old checkpoint, so a run killed at any moment
(even by SIGKILL, even in the middle of a save) leaves either the previous checkpoint or
the new one, never half a file. Nothing is unpickled on load.

What makes a resumed run end with *exactly* the weights of an uninterrupted one on the
same device is that every piece of mutable state is saved, and nothing else is consulted:

- the model's state dict,
- the optimiser's per-parameter buffers (momentum, Adam moments; ``optimizer_tensors``),
- sampler state such as PCD chains,
- the state of the run's one ``torch.Generator`` (``generator.state``), which fixes every
  later permutation, dropout mask and Gibbs sample,
- the step (epoch) counter and any running statistics, in the JSON ``meta``.

Usage (what ``finetune`` does; the up-down and AIS loops can do the same)::

    from deepbelief import checkpoint as ck

    state = ck.load_checkpoint(path, kind="my_loop", generator=gen, device=dev) if resume else None
    ...
    for step in range(start, n_steps):
        ...
        if ck.due(step + 1, every, n_steps):
            ck.save_checkpoint(path, kind="my_loop", tensors={...}, meta={"step": step + 1, ...},
                               generator=gen)

Shapes and keys are the caller's; this module only guarantees atomicity, the generator
round trip and clear errors (``ModelFileError`` naming the file and the problem).
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from deepbelief.errors import ConfigError, ModelFileError
from deepbelief.io import check_state, load_tensors, save_tensors

GENERATOR_KEY = "generator.state"


def due(step: int, every: int, last: int) -> bool:
    """True when a checkpoint is due after ``step`` steps: every ``every`` and at ``last``."""
    return step % max(1, every) == 0 or step >= last


def save_checkpoint(
    path: str | Path,
    *,
    kind: str,
    tensors: dict[str, Tensor],
    meta: dict[str, Any],
    generator: torch.Generator | None = None,
) -> None:
    """Atomically write one checkpoint (safetensors + JSON ``meta``; see the module doc).

    Args:
        path: destination file; its folder must exist.
        kind: what wrote it (``"rbm_checkpoint"``, ``"finetune_checkpoint"``, ...);
            ``load_checkpoint`` refuses a file of another kind.
        tensors: name -> tensor (any device; stored on the CPU, contiguous).
        meta: JSON-serialisable run state: step counters, config, history.
        generator: the run's generator; its state is stored under ``generator.state``.
    """
    if GENERATOR_KEY in tensors:
        raise ConfigError(f"tensors must not use the reserved key {GENERATOR_KEY!r}, got it among {sorted(tensors)}")
    out = dict(tensors)
    if generator is not None:
        out[GENERATOR_KEY] = generator.get_state()
    save_tensors(path, out, {**meta, "kind": kind})


def load_checkpoint(
    path: str | Path,
    *,
    kind: str,
    device: str | torch.device = "cpu",
    generator: torch.Generator | None = None,
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a checkpoint written by ``save_checkpoint``; restore ``generator`` in place.

    Returns:
        ``(tensors, meta)``: the tensors on ``device`` (without ``generator.state``) and
        the JSON meta.

    Raises:
        ModelFileError: missing, truncated, tampered or pickled file, another format
            version, another ``kind``, or no generator state when one is asked for.
    """
    tensors, meta = load_tensors(path, device=device)
    if meta.get("kind") != kind:
        raise ModelFileError(f"checkpoint {str(path)!r} is a {meta.get('kind')!r} file, expected a {kind!r} file")
    state = tensors.pop(GENERATOR_KEY, None)
    if generator is not None:
        if state is None:
            raise ModelFileError(f"checkpoint {str(path)!r} holds no generator state ({GENERATOR_KEY!r})")
        restore_generator(path, generator, state)
    return tensors, meta


def save_run(
    path: str | Path,
    *,
    kind: str,
    epoch: int,
    model: dict,
    train: Any,
    history: list[dict],
    tensors: dict[str, Tensor],
    generator: torch.Generator,
    **extra: Any,
) -> None:
    """The checkpoint of a training run, one format for every trainer (RBM training,
    up-down, fine-tuning): ``meta`` holds ``epoch`` (epochs done), ``model`` (the model's
    config), ``train`` (the run's config dataclass), ``history`` and the trainer's
    ``extra`` fields; the tensors are the trainer's (``model.*``, ``velocity.*``, ...)
    plus the generator state."""
    meta = {"epoch": int(epoch), "model": model, "train": dataclasses.asdict(train), "history": history, **extra}
    save_checkpoint(path, kind=kind, tensors=tensors, meta=meta, generator=generator)


def load_run(
    path: str | Path,
    *,
    kind: str,
    model: dict,
    train: Any,
    device: str | torch.device,
    generator: torch.Generator,
    allowed: tuple[str, ...] = ("epochs",),
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a ``save_run`` checkpoint for a run whose model config is ``model`` and whose
    config dataclass is ``train``; restore ``generator``. Refuses a checkpoint of another
    kind, of another model, or of other settings than ``allowed`` may differ (a field the
    checkpoint predates had its default value there)."""
    tensors, meta = load_checkpoint(path, kind=kind, device=device, generator=generator)
    saved_model = meta.get("model", meta.get("net"))  # fine-tuning checkpoints before 2026-12-04: "net"
    if saved_model != model:
        raise ModelFileError(f"checkpoint {str(path)!r} was written for another model: {saved_model}")
    saved = {**dataclasses.asdict(type(train)()), **(meta.get("train") or {})}
    check_same_config(path, saved, train, allowed=allowed)
    return tensors, meta


def kept_note(checkpoint, epoch: int) -> str:
    """For a divergence message: where the last good checkpoint is, if there is one."""
    if checkpoint is None or not Path(checkpoint).exists():
        return ""
    return f"; the last good checkpoint (epoch {epoch}) is kept at {str(checkpoint)!r}"


def restore_generator(path, generator: torch.Generator, state: Tensor) -> None:
    """Set ``generator`` to a saved state, with an error naming the file if it does not fit."""
    try:
        generator.set_state(state.to("cpu", torch.uint8))
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ModelFileError(
            f"checkpoint {str(path)!r} holds a generator state that does not fit a generator on "
            f"{generator.device} (was it written on another device?): {exc}"
        ) from None


def generator_state_from(path: str | Path) -> Tensor | None:
    """The generator state stored in any checkpoint file, or None if it has none."""
    return load_tensors(path)[0].get(GENERATOR_KEY)


def optimizer_tensors(opt: torch.optim.Optimizer, prefix: str = "optim") -> tuple[dict[str, Tensor], dict]:
    """Split an optimiser's per-parameter state into tensors and JSON.

    Parameters are numbered in the order of ``opt.param_groups``; a tensor buffer ``b`` of
    parameter ``i`` is stored as ``"{prefix}.{i}.{b}"``, any non-tensor entry in the JSON
    part. The learning rate and other group settings are not stored: the caller rebuilds
    the optimiser from its config and schedule, then calls ``load_optimizer_tensors``.
    """
    tensors, other = {}, {}
    params = [p for g in opt.param_groups for p in g["params"]]
    for i, p in enumerate(params):
        for key, value in opt.state.get(p, {}).items():
            if isinstance(value, Tensor):
                tensors[f"{prefix}.{i}.{key}"] = value
            else:
                other[f"{i}.{key}"] = value
    return tensors, {"n_params": len(params), "other": other}


def load_optimizer_tensors(path, opt: torch.optim.Optimizer, tensors: dict[str, Tensor], info: dict,
                           prefix: str = "optim") -> None:
    """Inverse of ``optimizer_tensors``: put the saved buffers back into ``opt.state``."""
    params = [p for g in opt.param_groups for p in g["params"]]
    if info.get("n_params") != len(params):
        raise ModelFileError(
            f"checkpoint {str(path)!r} holds optimiser state for {info.get('n_params')} parameters, "
            f"the optimiser has {len(params)}"
        )
    opt.state.clear()
    head = prefix + "."
    for name, value in tensors.items():
        if not name.startswith(head):
            continue
        index, key = name[len(head):].split(".", 1)
        p = params[int(index)]
        if value.shape != p.shape and value.dim() != 0:
            raise ModelFileError(
                f"checkpoint {str(path)!r}: optimiser buffer {name!r} has shape {tuple(value.shape)}, "
                f"expected {tuple(p.shape)}"
            )
        opt.state[p][key] = value.to(p.device).clone()
    for name, value in (info.get("other") or {}).items():
        index, key = name.split(".", 1)
        opt.state[params[int(index)]][key] = value


def check_same_config(path, saved: dict, current: dict, *, allowed: tuple[str, ...] = ()) -> None:
    """Raise ConfigError if a resumed run's config differs from the checkpoint's.

    Resuming with other hyper-parameters would silently produce a run that is neither the
    old one nor the new one; ``allowed`` names fields that may change (e.g. ``epochs``, to
    train longer).
    """
    if dataclasses.is_dataclass(current):
        current = dataclasses.asdict(current)
    diff = sorted(k for k in set(saved) | set(current) if k not in allowed and saved.get(k) != current.get(k))
    if diff:
        shown = ", ".join(f"{k}: checkpoint {saved.get(k)!r}, now {current.get(k)!r}" for k in diff)
        raise ConfigError(
            f"resume: the configuration differs from the one in checkpoint {str(path)!r} ({shown}); "
            "resume with the same settings or start afresh without --resume"
        )


LOCK_NAME = ".deepbelief.lock"


@contextlib.contextmanager
def hold_folder(folder: str | Path, *, what: str = "checkpoint_dir", lock_name: str = LOCK_NAME,
                temporaries: tuple[str, ...] | None = None, log=None):
    """Hold an exclusive OS lock on ``folder`` (created if needed) for one run.

    The lock is ``fcntl.flock`` on ``folder/lock_name``: the OS releases it when the
    process ends, however it ends (SIGKILL included), so there is never a stale lock to
    delete by hand. A second run on the same folder is refused with ConfigError naming the
    process that holds it, instead of both runs silently overwriting each other's
    checkpoints. Once the lock is held, no live writer can own a temporary file of
    ``io.atomic_write_bytes`` there, so those left by a killed run are deleted (all of
    them, or only those of the file names in ``temporaries``).
    """
    from deepbelief.io import remove_stale_temporaries

    folder = make_folder(folder, what)
    fh = _acquire(folder / lock_name, what, folder)
    try:
        names = temporaries if temporaries is not None else (None,)
        removed = [p for n in names for p in remove_stale_temporaries(folder, n)]
        if removed and log is not None:
            log(f"  removed {len(removed)} temporary file(s) left by a killed run: {[p.name for p in removed]}")
        yield folder
    finally:
        fh.close()  # closing the file releases the lock


def _acquire(path: Path, what: str, folder: Path):
    import fcntl
    import os

    try:
        fh = open(path, "a+")
    except OSError as exc:
        raise ConfigError(f"{what} {str(folder)!r} cannot be locked: {exc.strerror}") from None
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.seek(0)
        owner = fh.read().strip() or "another process"
        fh.close()
        raise ConfigError(f"{what} {str(folder)!r} is in use by another run ({owner}); wait for it to end or "
                          "choose another folder") from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"process {os.getpid()}")
    fh.flush()
    return fh


__all__ = [
    "GENERATOR_KEY", "due", "save_checkpoint", "load_checkpoint", "save_run", "load_run", "kept_note", "restore_generator", "generator_state_from",
    "optimizer_tensors", "load_optimizer_tensors", "check_same_config", "hold_folder", "LOCK_NAME",
]


@torch.no_grad()
def restore_training_state(path, model: torch.nn.Module, tensors: dict, names: list[str],
                           velocities: list[Tensor]) -> None:
    """Load a checkpoint's ``model.*`` tensors into ``model`` (checked against its state
    dict first) and its ``velocity.<name>`` tensors into ``velocities`` in place: the part
    of every trainer's checkpoint that is the same (RBM training, up-down)."""
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    check_state(path, model, state)
    model.load_state_dict(state)
    for n, v in zip(names, velocities):
        saved = tensors.get(f"velocity.{n}")
        if saved is None or saved.shape != v.shape:
            raise ModelFileError(f"checkpoint {str(path)!r}: velocity of {n!r} is missing or misshapen")
        v.copy_(saved)


def make_folder(folder, what: str) -> Path:
    """Create ``folder`` (and its parents) or raise ConfigError naming ``what`` and why."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        why = "is a file, not a folder" if folder.is_file() else f"cannot be created: {exc.strerror}"
        raise ConfigError(f"{what} {str(folder)!r} {why}") from None
    return folder
