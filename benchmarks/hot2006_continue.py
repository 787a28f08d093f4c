"""More up-down epochs on a finished hot2006 model, then its test error and judged samples.

A pilot bench for changes to the last phase of the ``hot2006`` recipe: it loads the model
file a ``mnist_hot2006.py --work DIR`` run saved (``DIR/hot2006.safetensors``) and the judge
it cached (``DIR/judge.safetensors``), runs ``--epochs`` more up-down epochs on all 60,000
training images with the recipe's final-phase settings (rate ``lr_final``, the schedule's
last K, balanced batches, persistent chains, averaging) changed by ``--updown FIELD=VALUE``,
and reports the free-energy test error and the figure-8 samples (label clamped, 1,000 Gibbs
iterations from random top-level states, one top-down pass; from the feature biases in the
runs before 2026-12-06) judged per class, before and after.
Run it twice, with and without a change, to compare the change against more of the same.

    python benchmarks/hot2006_continue.py --work runs/hot2006 --epochs 10 \\
        --updown clamped_chains=0.5 --out continue.json

The model file in ``--work`` is read, never written; ``--save`` writes the continued model.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch
from _common import field_values, machine_info, parser, write_json
from _judge import train_judge
from mnist_hot2006 import judge_samples

from deepbelief.data import load_dataset
from deepbelief.errors import ConfigError, resolve_device
from deepbelief.io import load_model, save_model
from deepbelief.recipes import get_recipe
from deepbelief.training import make_generator
from deepbelief.wake_sleep import UpDownConfig, up_down


def final_phase_config(overrides: list[str], epochs: int) -> UpDownConfig:
    """The hot2006 recipe's final up-down phase (``UpDownConfig.final_phase``, as the runner
    runs it), for ``epochs`` epochs, with ``--updown`` overrides."""
    cfg = dataclasses.replace(get_recipe("hot2006").updown.final_phase(), epochs=epochs)
    if overrides:
        cfg = dataclasses.replace(cfg, **field_values("--updown", UpDownConfig, overrides))
    return cfg.validate()


def measure(model, judge, ds, dev, *, per_class: int, seed: int) -> dict:
    err = model.error_rate(ds.x_test.to(dev), ds.y_test.to(dev))
    return {"test_error_pct": 100 * float(err),
            "samples": judge_samples(model, judge, per_class=per_class, steps=1000, gen=make_generator(seed, dev))}


def main(argv=None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--work", required=True, help="a finished mnist_hot2006.py run's --work folder")
    p.add_argument("--epochs", type=int, default=10, help="more up-down epochs on all 60,000 images (10)")
    p.add_argument("--updown", action="append", default=[], metavar="FIELD=VALUE",
                   help="change the final phase's UpDownConfig, e.g. --updown clamped_chains=0.5")
    p.add_argument("--per-class", type=int, default=500, help="judged samples per class (500)")
    p.add_argument("--save", default=None, help="write the continued model here (safetensors)")
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.epochs < 1:
        raise ConfigError(f"--epochs must be >= 1, got {a.epochs}")
    work = Path(a.work)
    model_file = work / "hot2006.safetensors"
    if not model_file.exists():
        raise SystemExit(f"--work must hold a finished run's model {model_file}; it does not exist")
    cfg = final_phase_config(a.updown, a.epochs)
    dev = resolve_device(a.device)
    model = load_model(model_file, device=dev)
    ds = load_dataset("mnist", data_dir=a.data_dir)
    judge, judge_err = train_judge(ds.x_train, ds.y_train, ds.x_test, ds.y_test, cache=work / "judge.safetensors")
    res = {"work": str(work), "epochs": a.epochs, "updown": dataclasses.asdict(cfg), "seed": a.seed,
           "judge_test_error_pct": 100 * judge_err}
    res["before"] = measure(model, judge, ds, dev, per_class=a.per_class, seed=a.seed + 2000)
    b = res["before"]
    print(f"before: test error {b['test_error_pct']:.2f}%, samples {b['samples']['agreement_pct']:.1f}% "
          f"(per class {[round(v) for v in b['samples']['per_class_agreement_pct']]})", flush=True)
    t0 = time.perf_counter()

    def on_epoch(epoch, m):
        print(f"  epoch {epoch + 1}/{cfg.epochs} (K={m['gibbs_steps']}): recon {m['recon_error']:.4f} "
              f"({time.perf_counter() - t0:.0f}s)", flush=True)

    res["history"] = up_down(model, ds.x_train.to(dev), ds.y_train.to(dev), cfg,
                             generator=make_generator(a.seed, dev), callback=on_epoch)
    res["updown_seconds"] = time.perf_counter() - t0
    res["after"] = measure(model, judge, ds, dev, per_class=a.per_class, seed=a.seed + 2000)
    r = res["after"]
    print(f"after {a.epochs} epochs: test error {r['test_error_pct']:.2f}%, samples {r['samples']['agreement_pct']:.1f}% "
          f"(per class {[round(v) for v in r['samples']['per_class_agreement_pct']]})", flush=True)
    if a.save:
        save_model(a.save, model)
    res["machine"] = machine_info(a.device)
    write_json(a.out, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
