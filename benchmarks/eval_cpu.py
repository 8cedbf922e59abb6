"""Evaluation part of the `cifar10-ipc10-cpu` preset (BENCHMARKS.md) on a random IPC-10 CIFAR-10 subset.

Prints final-epoch accuracy (mean ± std over 2 runs), training images per second and peak
resident memory. Usage: python benchmarks/eval_cpu.py [--data ../shared/data/cifar10] [--device auto]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

from condense.baseline import random_subset
from condense.data import load_real
from condense.evaluate import eval_preset, evaluate_set, format_result
from condense.flags import run_main
from condense.runtime import resolve_device

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random subset")
    parser.set_defaults(func=command)
    return run_main(parser, argv)


def command(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    train, test = load_real(args.data, "train"), load_real(args.data, "test")
    subset = random_subset(train, ipc=10, seed=args.seed)
    device = resolve_device(args.device)
    result = evaluate_set(subset, test, eval_preset("cpu"), device, progress=sys.stderr.isatty())
    print(format_result(result))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"random IPC-10 CIFAR-10: {result['accuracy_mean']:.2f} ± {result['accuracy_std']:.2f} % (final epoch, 2 runs); "
        f"{result['train_images_per_second']:.0f} training images/s on {device}; peak RSS {peak_mb:.0f} MB; "
        f"total {time.perf_counter() - start:.0f} s"
    )


if __name__ == "__main__":
    sys.exit(main())
