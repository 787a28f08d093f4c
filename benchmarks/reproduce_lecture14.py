"""Benchmark: `deepbelief reproduce lecture14` (see docs/experiments.md).

    python benchmarks/reproduce_lecture14.py [--quick] [--device auto|cpu|cuda] [--seed 0]
        [--data-dir ../shared/data/mnist] [--out benchmarks/results/lecture14.json]

Writes the markdown table and figures to docs/results/ and, with --out, every measured
figure plus machine information (torch version, device name, date, command) as JSON.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from deepbelief.cli import main  # noqa: E402


def default_data_dir() -> str:
    here = ROOT.parent / "shared" / "data" / "mnist"
    return str(here if here.is_dir() else Path("/work/shared/data/mnist"))


if __name__ == "__main__":
    argv = sys.argv[1:]
    if not any(a == "--data-dir" or a.startswith("--data-dir=") for a in argv):
        argv += ["--data-dir", default_data_dir()]
    if not any(a == "--docs-dir" or a.startswith("--docs-dir=") for a in argv):
        argv += ["--docs-dir", str(ROOT / "docs")]
    if not any(a == "--results" or a.startswith("--results=") for a in argv):
        argv += ["--results", str(ROOT / "benchmarks" / "results")]
    raise SystemExit(main(["reproduce", "lecture14"] + argv))
