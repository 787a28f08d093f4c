"""Benchmark: `deepbelief reproduce erhan` (see docs/6-experiments.md).

    python benchmarks/reproduce_erhan.py [--quick] [--device auto|cpu|cuda] [--seed 0]
        [--data-dir ../shared/data/mnist] [--out benchmarks/results/erhan.json]

Writes the markdown table and figures to docs/results/ and, with --out, every measured
figure plus machine information (torch version, device name, date, command) as JSON.
"""

from _common import run_reproduce

if __name__ == "__main__":
    raise SystemExit(run_reproduce("erhan"))
