"""What the experiments share: published figures, data subsets, machine information."""

from __future__ import annotations

import datetime
import platform
import sys
from pathlib import Path

import torch
from deepbelief.errors import check_fields

#: published test errors (%) on permutation-invariant MNIST for the lecture's table
PUBLISHED = {
    "backprop_random_init": (1.6, "Hinton, lecture 14 (backprop from small random weights)"),
    "pretrain_backprop": (1.18, "Srivastava et al. 2014, table 2 (DBN + finetuning); 1.2% in Hinton & Salakhutdinov 2006"),
    "pretrain_dropout": (0.92, "Srivastava et al. 2014, table 2 (DBN + dropout finetuning)"),
    "generative_updown": (1.25, "Hinton, Osindero & Teh 2006 (generative DBN after up-down)"),
}
#: Erhan et al. (2010), JMLR, table/figure of MNIST test error (%) by depth
ERHAN_PUBLISHED = {1: (1.81, 1.41), 2: (1.77, 1.37)}


def _from_dict(cls, d: dict):
    """An experiment's config from a dict of its fields; a field that holds a config of its own
    (an ``RBMTrainConfig``, a ``FinetuneConfig``) takes a dict, read by that config's ``from_dict``."""
    import dataclasses

    d = dict(check_fields(cls, d, f"{cls.__name__} option"))
    defaults = cls()
    for f in dataclasses.fields(cls):
        sub = getattr(defaults, f.name)
        if f.name in d and isinstance(d[f.name], dict) and dataclasses.is_dataclass(sub):
            d[f.name] = type(sub).from_dict(d[f.name])
    return cls(**d)


def merge_settings(base: dict, overrides: dict) -> dict:
    """``base`` with ``overrides`` laid over it, nested tables merged key by key (so that
    ``{"pretrain": {"epochs": 3}}`` changes one field of a preset's ``pretrain``)."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_settings(out[key], value)
        else:
            out[key] = value
    return out


# -- data -------------------------------------------------------------------------------
def mnist_subset(n_train: int, n_valid: int, n_test: int, *, data_dir=None, device="cpu"):
    """(x_tr, y_tr, x_va, y_va, x_te, y_te) on ``device``: the first ``n_train`` training
    images, the last ``n_valid`` of the 60,000 (the usual validation split) and the first
    ``n_test`` test images. Falls back to the embedded 8x8 digits if MNIST is absent
    only when ``data_dir == "digits"``."""
    from deepbelief.data import load_dataset

    ds = load_dataset("digits" if data_dir == "digits" else "mnist", data_dir=None if data_dir == "digits" else data_dir)
    n_all = ds.x_train.shape[0]
    n_valid = min(n_valid, n_all // 4)
    n_train = min(n_train, n_all - n_valid)
    x, y = ds.x_train, ds.y_train
    out = (x[:n_train], y[:n_train], x[n_all - n_valid:], y[n_all - n_valid:], ds.x_test[:n_test], ds.y_test[:n_test])
    return tuple(t.to(device).contiguous() for t in out)


def machine_info(device) -> dict:
    dev = torch.device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else _cpu_name()
    return {"torch": torch.__version__, "device": str(dev), "device_name": name, "threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": " ".join(["deepbelief"] + sys.argv[1:]) if sys.argv and "deepbelief" in sys.argv[0]
            else " ".join(sys.argv)}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
