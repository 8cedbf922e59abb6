"""Peak resident memory of sampling distillation batches from CIFAR-10: memory-mapped Arrow vs fully loaded.

Each mode runs in a fresh process: load the train split (decoded once into `datasets`' Arrow cache,
shared by both modes), then draw `--batches` class-balanced batches of `--per-class` images per
class as distillation does each iteration, and convert them to float. Prints peak RSS (and its part above the
interpreter with torch and datasets imported) and the time per batch for both.
Usage: python benchmarks/data_memory.py [--data ../shared/data/cifar10] [--batches 50] [--per-class 128]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"


def measure(data: str, memory_mapped: bool, batches: int, per_class: int) -> dict:
    import datasets  # noqa: F401  (imported before the baseline is read, as torch is)
    import torch

    from condense.data import load_real

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the interpreter with torch and datasets
    start = time.perf_counter()
    real = load_real(data, "train", memory_mapped=memory_mapped)
    loaded = time.perf_counter() - start
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    checksum = 0.0
    for _ in range(batches):
        checksum += real.floats(real.balanced_indices(per_class, generator)).sum().item()
    per_batch = (time.perf_counter() - start) / batches
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"memory_mapped": memory_mapped, "images": len(real), "load_seconds": loaded, "seconds_per_batch": per_batch,
            "peak_rss_mb": peak, "baseline_rss_mb": baseline, "checksum": checksum}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--per-class", type=int, default=128)
    parser.add_argument("--one", choices=["loaded", "mapped"], help=argparse.SUPPRESS)  # a child process's mode
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.data, args.one == "mapped", args.batches, args.per_class)))
        return
    base = [sys.executable, __file__, "--data", args.data, "--batches", str(args.batches), "--per-class", str(args.per_class)]
    subprocess.run([*base, "--one", "loaded"], check=True, capture_output=True)  # warm the decode cache for both
    rows = [json.loads(subprocess.run([*base, "--one", mode], check=True, capture_output=True, text=True).stdout.splitlines()[-1])
            for mode in ("loaded", "mapped")]
    if rows[0]["checksum"] != rows[1]["checksum"]:
        raise SystemExit("the two modes read different pixels")
    print(f"{args.batches} batches of {args.per_class} images x 10 classes from {args.data} [train], {rows[0]['images']} images")
    print(f"{'mode':<16} {'peak RSS':>10} {'of which data':>14} {'load (cached)':>14} {'s/batch':>9}")
    for row in rows:
        mode = "memory-mapped" if row["memory_mapped"] else "fully loaded"
        data = row["peak_rss_mb"] - row["baseline_rss_mb"]
        print(f"{mode:<16} {row['peak_rss_mb']:>7.0f} MB {data:>11.0f} MB {row['load_seconds']:>12.1f} s {row['seconds_per_batch']:>9.3f}")


if __name__ == "__main__":
    main()
