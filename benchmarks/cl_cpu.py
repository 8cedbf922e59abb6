"""Continual learning with condensed memory on CPU: the `cifar10-cpu` preset of `downstream cl`.

CIFAR-10 in 5 steps of 2 classes (class order from each seed), memory of 10 stored images per class,
the DM protocol (a fresh ConvNet trained from scratch on the memory after every step, tested on all
seen classes). Memories: random real, herding, the precomputed NCFM set counted by stored canvases
(10 canvases = 40 decoded images per class) and the same set counted by decoded images (10 of its
40 per class); `--as-you-go` adds condense-as-you-go (NCFM on each step's classes, matchers
pretrained on the classes seen so far). Prints the table, the condensed - random gap per step, and
the wall time; writes cl.json and cl.png to --out.

Usage: python benchmarks/cl_cpu.py [--data ../shared/data/cifar10] [--set SET] [--epochs 300] [--seeds 0,1]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

from condense.data import load_real
from condense.flags import run_main
from condense.runtime import resolve_device, write_json
from downstream.continual import MemorySpec, cl_preset
from downstream.continual.protocol import run_comparison, summarise
from downstream.continual.report import format_table, save_plot

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "cifar10"
DEFAULT_SET = ROOT / "benchmarks" / "runs" / "ncfm_cpu" / "gaussian-lr3e-3" / "synthetic.safetensors"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--set", default=str(DEFAULT_SET), help="precomputed condensed set (IPC 10)")
    parser.add_argument("--epochs", type=int, default=300, help="fresh-model epochs per step")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--as-you-go", action="store_true", help="also condense as you go (slow on CPU)")
    parser.add_argument("--condense-iterations", type=int, default=100, help="condense-as-you-go: NCFM iterations per step")
    parser.add_argument("--condense-pool", type=int, default=2, help="condense-as-you-go: matchers pretrained per step")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "runs" / "cl_cpu"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is faster on a shared 2-core machine)")
    parser.add_argument("--progress", action="store_true", help="progress bars even when stderr is not a terminal")
    parser.add_argument("--merge", nargs="+", metavar="FOLDER", help="merge the cl.json of runs with other memories into --out")
    parser.add_argument("--memories", default="random,herding,condensed,condensed-decoded", help="which of the memories to run")
    parser.set_defaults(func=command)
    return run_main(parser, argv)


def command(args: argparse.Namespace) -> None:
    if args.merge:
        report(merge([json.loads((Path(folder) / "cl.json").read_text()) for folder in args.merge]), Path(args.out), "merged")
        return
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    config = cl_preset("cifar10-cpu")
    config.train.epochs = args.epochs
    config.seeds = tuple(int(s) for s in args.seeds.split(","))
    config.condense.update(iterations=args.condense_iterations, pool_size=args.condense_pool)
    memories = [MemorySpec("random"), MemorySpec("herding"), MemorySpec("condensed", args.set, "stored"),
                MemorySpec("condensed", args.set, "decoded")]
    memories = [m for m, name in zip(memories, ("random", "herding", "condensed", "condensed-decoded")) if name in args.memories.split(",")]
    if args.as_you_go:
        memories.append(MemorySpec("condensed"))
    train, test = load_real(args.data, "train"), load_real(args.data, "test")
    device = resolve_device(args.device)
    result = run_comparison(train, test, memories, config, device, progress=args.progress or sys.stderr.isatty())
    result["seconds"] = time.perf_counter() - start
    report(result, Path(args.out), device)


def merge(results: list[dict]) -> dict:
    """One result from runs of the same settings split over processes (by memory or by seed)."""
    settings = [{**r["config"], "seeds": None} for r in results]
    if any(s != settings[0] for s in settings):
        sys.exit("cannot merge runs with different settings")
    memories: dict[str, dict] = {}
    for result in results:
        for label, memory in result["memories"].items():
            memories.setdefault(label, {"spec": memory["spec"], "runs": []})["runs"] += memory["runs"]
    for memory in memories.values():
        memory["runs"].sort(key=lambda run: run["seed"])
        summarise(memory)
    seeds = sorted({run["seed"] for memory in memories.values() for run in memory["runs"]})
    return {**results[0], "config": {**results[0]["config"], "seeds": seeds}, "memories": memories,
            "seconds": [r["seconds"] for r in results]}


def report(result: dict, out: Path, device) -> None:
    write_json(out / "cl.json", result)
    save_plot(result, out / "cl.png")
    print(format_table(result))
    random = result["memories"].get("random", {}).get("accuracy_mean")
    for label, memory in result["memories"].items():
        if label.startswith("condensed") and random:
            gaps = ", ".join(f"{m - r:+.2f}" for m, r in zip(memory["accuracy_mean"], random))
            print(f"{label} - random, per step: {gaps} points")
    for label, memory in result["memories"].items():
        run = memory["runs"][0]["steps"][-1]
        print(f"{label}: last step of seed {memory['runs'][0]['seed']}: {run['memory_images']} training images in memory "
              f"({run['images_per_second']:.0f} img/s); accuracy on seen classes {run['accuracy']:.2f} %")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"device {device}; peak RSS {peak_mb:.0f} MB; wall time {result['seconds']} s; wrote {out / 'cl.json'} and {out / 'cl.png'}")


if __name__ == "__main__":
    sys.exit(main())
