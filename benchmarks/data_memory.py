"""Peak resident memory of sampling distillation batches from CIFAR-10: fully loaded, memory-mapped Arrow, streamed.

Each mode runs in a fresh process: load the train split (fully loaded and memory-mapped: decoded once
into `datasets`' Arrow cache, shared by both; streamed: one pass over the parquet rows keeping
`--reservoir` random images per class, nothing cached), then draw `--batches` class-balanced batches
of `--per-class` images per class as distillation does each iteration, and convert them to float.
Prints peak RSS (and its part above the interpreter with torch and datasets imported), the load time
and the time per batch for each.
Usage: python benchmarks/data_memory.py [--data ../shared/data/cifar10] [--batches 50] [--per-class 128] [--reservoir 500]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from condense.flags import run_main

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"


MODES = {"loaded": "fully loaded", "mapped": "memory-mapped", "streamed": "streamed"}


def measure(data: str, mode: str, batches: int, per_class: int, reservoir: int) -> dict:
    import datasets  # noqa: F401  (imported before the baseline is read, as torch is)
    import torch

    from condense.data import load_real

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the interpreter with torch and datasets
    start = time.perf_counter()
    real = load_real(data, "train", memory_mapped=mode == "mapped", streaming=mode == "streamed",
                     per_class=reservoir if mode == "streamed" else None)
    loaded = time.perf_counter() - start
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    checksum = 0.0
    for _ in range(batches):
        checksum += real.floats(real.balanced_indices(per_class, generator)).sum().item()
    per_batch = (time.perf_counter() - start) / batches
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"mode": mode, "images": len(real), "load_seconds": loaded, "seconds_per_batch": per_batch,
            "peak_rss_mb": peak, "baseline_rss_mb": baseline, "checksum": checksum}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--per-class", type=int, default=128)
    parser.add_argument("--reservoir", type=int, default=500, help="streamed mode: images kept per class")
    parser.add_argument("--one", choices=list(MODES), help=argparse.SUPPRESS)  # a child process's mode
    parser.set_defaults(func=command)
    return run_main(parser, argv)


def command(args: argparse.Namespace) -> None:
    if args.one:
        print(json.dumps(measure(args.data, args.one, args.batches, args.per_class, args.reservoir)))
        return
    base = [sys.executable, __file__, "--data", args.data, "--batches", str(args.batches), "--per-class", str(args.per_class),
            "--reservoir", str(args.reservoir)]
    subprocess.run([*base, "--one", "loaded"], check=True, capture_output=True)  # warm the decode cache for both
    rows = [json.loads(subprocess.run([*base, "--one", mode], check=True, capture_output=True, text=True).stdout.splitlines()[-1])
            for mode in MODES]
    if rows[0]["checksum"] != rows[1]["checksum"]:
        raise SystemExit("fully loaded and memory-mapped read different pixels")
    print(f"{args.batches} batches of {args.per_class} images x 10 classes from {args.data} [train]")
    print(f"{'mode':<14} {'images':>7} {'peak RSS':>10} {'of which data':>14} {'load':>8} {'s/batch':>9}")
    for row in rows:
        data = row["peak_rss_mb"] - row["baseline_rss_mb"]
        print(f"{MODES[row['mode']]:<14} {row['images']:>7} {row['peak_rss_mb']:>7.0f} MB {data:>11.0f} MB "
              f"{row['load_seconds']:>6.1f} s {row['seconds_per_batch']:>9.3f}")
    print("(load: the decode cache is warm for fully loaded and memory-mapped; streamed reads the parquet rows each time)")


if __name__ == "__main__":
    sys.exit(main())
