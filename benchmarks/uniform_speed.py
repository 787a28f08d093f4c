"""What one block of U(0, 1) float32 numbers costs on this CPU, by generator.

The fused up-down step draws all its random numbers in one block (rng.StepUniforms: numpy's
PCG64, float32); at K = 10 that is about 2.6 million numbers per batch of 100. This script
times, alternating, medians of ``--repeats``:
  - "step_uniforms": the library's own block (rng.StepUniforms: one seed drawn from a
    torch.Generator, then numpy Generator(PCG64).random(n, float32));
  - "pcg64_raw": the bit generator's 64-bit raw draws alone (n / 2 of them), the floor of
    any float32 made from PCG64's output;
  - "pcg64_raw_split": those draws split into two 32-bit halves and turned into float32 on
    the 2^-24 grid (the top 24 bits of each half, as numpy's float32 uses);
  - "sfc64_raw", "philox_raw": the other numpy bit generators' raw draws;
  - "torch_rand": torch.rand with a CPU torch.Generator (mt19937);
  - "pcg64_chunks_threads": the block in chunks of 2^18 numbers, chunk i from PCG64(seed)
    jumped i times, filled by a pool of ``--threads`` threads (numpy releases the GIL while
    it fills). Alone it is faster on 2 cores; inside the up-down loop it was not (the
    matrix products' threads still hold the cores; benchmarks/RESULTS.md, 2026-12-07).

    python benchmarks/uniform_speed.py                      # ~10 s
    python benchmarks/uniform_speed.py --n 2600000 --out benchmarks/results/uniform_speed_cpu.json
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

import _bench
from deepbelief.rng import StepUniforms


def _split_to_float32(raw: np.ndarray, n: int) -> torch.Tensor:
    halves = torch.from_numpy(raw.view(np.int32))
    bits = torch.bitwise_right_shift(halves, 8).bitwise_and_(0xFFFFFF)  # top 24 bits of each half
    return bits.to(torch.float32).mul_(2.0 ** -24)[:n]


def _chunked_fill(pool: ThreadPoolExecutor, seed: int, n: int, chunk: int = 1 << 18) -> np.ndarray:
    out = np.empty(n, dtype=np.float32)

    def fill(i: int) -> None:
        bits = np.random.PCG64(seed)
        np.random.Generator(bits.jumped(i) if i else bits).random(
            out=out[i * chunk: (i + 1) * chunk], dtype=np.float32)

    for f in [pool.submit(fill, i) for i in range(-(-n // chunk))]:
        f.result()
    return out


def candidates(n: int, threads: int) -> dict:
    half = (n + 1) // 2
    pool = ThreadPoolExecutor(max(1, threads))
    pcg, sfc, philox = np.random.PCG64(1), np.random.SFC64(1), np.random.Philox(1)
    tgen, sgen, like = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2), torch.zeros(1)
    return {
        "step_uniforms": lambda: StepUniforms(sgen, n, like).block,
        "pcg64_raw": lambda: pcg.random_raw(half),
        "pcg64_raw_split": lambda: _split_to_float32(pcg.random_raw(half), n),
        "sfc64_raw": lambda: sfc.random_raw(half),
        "philox_raw": lambda: philox.random_raw(half),
        "torch_rand": lambda: torch.rand(n, generator=tgen),
        "pcg64_chunks_threads": lambda: _chunked_fill(pool, 1, n),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2_600_000, help="numbers per block (default: a K = 10 up-down step)")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    if a.n < 2 or a.repeats < 1:
        p.error(f"--n must be >= 2 and --repeats >= 1, got --n {a.n} --repeats {a.repeats}")
    if a.threads:
        torch.set_num_threads(a.threads)
    fns = candidates(a.n, torch.get_num_threads())
    times = {k: [] for k in fns}
    for f in fns.values():  # warm-up
        f()
    for _ in range(a.repeats):  # alternating, so drift of the machine hits every candidate alike
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    ms = {k: 1e3 * _bench.median(v) for k, v in times.items()}
    for k, v in ms.items():
        print(f"{k:>16}: {v:7.2f} ms  ({1e6 * v / a.n:.2f} ns per number)")
    _bench.write_json(a.out, {"benchmark": "uniform_speed", "n": a.n, "repeats": a.repeats, "median_ms": ms,
                              "machine": _bench.machine_info(torch.device("cpu"))})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
