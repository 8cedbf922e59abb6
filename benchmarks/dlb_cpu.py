"""DLB against plain cross-entropy on CIFAR-10 (issue 5): accuracy and seconds per epoch.

Settings (each trained with CE, DLB scheme `official` and DLB scheme `paper`, same epochs, schedule and
seeds): a class-balanced 5,000-image subset of the train split, the same with 20% symmetric label
noise, and a random IPC-10 set (`condense.baseline.random_subset`). Network: the BENCHMARKS.md CPU
ConvNet (depth 3, width 64, instance norm, ReLU, average pooling); training: the CPU evaluation
protocol (AdamW lr 1e-3, wd 0.01, lr halved at every fifth, per-sample DSA) without CutMix; test:
the full test split at the final epoch. Prints one line per run as it ends, then mean ± std over
seeds and seconds per epoch (with its ratio to CE) per setting; writes every figure to --out.

`--timing N` measures only the time: N rounds of one epoch per method on the clean subset, the methods
interleaved within each round (so a busy spell of the machine hits them all), and prints the median
seconds per epoch and its ratio to CE's median.

Usage: python benchmarks/dlb_cpu.py [--epochs 6] [--ipc-epochs 100] [--seeds 3] [--settings clean,noisy,ipc10]
       python benchmarks/dlb_cpu.py --timing 5 [--methods ce,dlb-official,dlb-paper]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from condense.baseline import random_subset
from condense.data import load_real
from condense.flags import run_main
from condense.runtime import resolve_device, write_json
from downstream.dlb import DLB
from downstream.train import default_config, real_subset, train_model

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"
# ce-2x: CE for twice the epochs (as many forwards as DLB); dlb-paper-half: scheme (b) for half the epochs (as many
# steps and forwards as CE, i.e. the same wall time)
METHODS = ("ce", "dlb-official", "dlb-paper", "ce-2x", "dlb-paper-half")
EPOCH_SCALE = {"ce-2x": 2.0, "dlb-paper-half": 0.5}


def objective(method: str, args: argparse.Namespace) -> DLB | None:
    return None if method.startswith("ce") else DLB(tau=args.tau, alpha=args.alpha, scheme=method.split("-")[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--per-class", type=int, default=500, help="real images per class (500: the 5,000-image subset)")
    parser.add_argument("--epochs", type=int, default=6, help="epochs on the real subset")
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--ipc-epochs", type=int, default=100, help="epochs on the random IPC set")
    parser.add_argument("--noise", type=float, default=0.2, help="symmetric label-noise rate of the noisy setting")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--tau", type=float, default=3.0)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--settings", default="clean,noisy,ipc10", help="comma-separated subset of clean, noisy, ipc10")
    parser.add_argument("--methods", default=",".join(METHODS[:3]), help=f"comma-separated subset of {', '.join(METHODS)}")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: faster than 2 on a CPU shared with other jobs)")
    parser.add_argument("--out", default="benchmarks/runs/dlb_cpu/figures.json")
    parser.add_argument("--timing", type=int, metavar="N", help="only time N interleaved one-epoch rounds per method")
    parser.set_defaults(func=command)
    return run_main(parser, argv)


def command(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    if args.timing:
        time_epochs(args)
        return
    start = time.perf_counter()
    device = resolve_device(args.device)
    train, test = load_real(args.data, "train"), load_real(args.data, "test")
    sets = {
        "clean": (real_subset(train, args.per_class, seed=0), 0.0, args.epochs),
        "noisy": (real_subset(train, args.per_class, seed=0), args.noise, args.epochs),
        "ipc10": (random_subset(train, args.ipc, seed=0), 0.0, args.ipc_epochs),
    }
    settings, methods = args.settings.split(","), args.methods.split(",")
    figures: dict = {"args": vars(args), "device": str(device), "results": {}}
    for setting in settings:
        train_set, noise, epochs = sets[setting]
        config = default_config()
        results = figures["results"].setdefault(setting, {method: [] for method in methods})
        for seed in range(args.seeds):
            for method in methods:
                config.seed, config.runs = seed, 1
                method_epochs = max(1, round(EPOCH_SCALE.get(method, 1.0) * epochs))
                config.train = replace(config.train, epochs=method_epochs, batch_size=args.batch_size, lr=args.lr)
                dlb = objective(method, args)
                result = train_model(train_set, test, config, objective=dlb, label_noise=noise, device=device,
                                     progress=sys.stderr.isatty())
                run = result["runs"][0]
                steps = dlb.steps_per_epoch(len(train_set), args.batch_size) if dlb else math.ceil(len(train_set) / args.batch_size)
                results[method].append({"seed": seed, "accuracy": run["accuracy"], "seconds_per_epoch": run["seconds_per_epoch"],
                                        "seconds_per_step": run["seconds_per_epoch"] / steps})
                print(f"{setting:>6} {method:>13} seed {seed}: {run['accuracy']:6.2f} %  {run['seconds_per_epoch']:7.2f} s/epoch "
                      f"({steps} steps)", flush=True)
                write_json(args.out, figures)
    print(f"\nConvNet-64 instance norm, {args.seeds} seeds, final-epoch accuracy on the {len(test)} test images; "
          f"real subset {args.per_class}/class x {args.epochs} epochs, IPC {args.ipc} x {args.ipc_epochs} epochs, batch {args.batch_size}")
    print(f"{'setting':>7} {'method':>13} {'accuracy':>16} {'vs CE':>7} {'s/epoch':>8} {'x CE':>6} {'s/step x CE':>11}")
    for setting, results in figures["results"].items():
        ce = results.get("ce")
        for method, runs in results.items():
            accuracies = [r["accuracy"] for r in runs]
            seconds = statistics.fmean(r["seconds_per_epoch"] for r in runs)
            mean = statistics.fmean(accuracies)
            gain = f"{mean - statistics.fmean(r['accuracy'] for r in ce):+.2f}" if ce else "-"
            ratio = f"{seconds / statistics.fmean(r['seconds_per_epoch'] for r in ce):.2f}" if ce else "-"
            step = statistics.fmean(r["seconds_per_step"] for r in runs)
            step_ratio = f"{step / statistics.fmean(r['seconds_per_step'] for r in ce):.2f}" if ce else "-"
            print(f"{setting:>7} {method:>13} {mean:7.2f} ± {statistics.pstdev(accuracies):4.2f} % {gain:>7} {seconds:8.2f} {ratio:>6} {step_ratio:>11}")
    print(f"total {time.perf_counter() - start:.0f} s on {device}; figures in {args.out}")


def time_epochs(args: argparse.Namespace) -> None:
    """Median seconds per epoch of each method over `args.timing` interleaved rounds (no testing)."""
    from condense.nets import build_net
    from condense.train import train

    subset = real_subset(load_real(args.data, "train"), args.per_class, seed=0)
    config = replace(default_config().train, epochs=1, batch_size=args.batch_size, lr=args.lr)
    methods = [m for m in args.methods.split(",") if EPOCH_SCALE.get(m, 1.0) == 1.0]  # per-epoch cost: one epoch each
    seconds: dict[str, list[float]] = {method: [] for method in methods}
    for round_index in range(args.timing):
        for method in methods:
            net = build_net("convnet", subset.channels, subset.num_classes, subset.image_size, **default_config().net_options)
            stats = train(net, subset.images, subset.labels, config, mean=subset.mean, std=subset.std,
                          generator=torch.Generator().manual_seed(round_index), device=resolve_device(args.device),
                          progress=False, objective=objective(method, args))
            seconds[method].append(stats["seconds"])
    ce = statistics.median(seconds["ce"]) if "ce" in seconds else None
    print(f"{len(subset)} images, batch {args.batch_size}, {args.threads} thread(s), {args.timing} rounds; median s/epoch:")
    for method, values in seconds.items():
        ratio = f"{statistics.median(values) / ce:.2f}x CE" if ce else ""
        print(f"{method:>13} {statistics.median(values):7.2f} s  {ratio}  (all: {', '.join(f'{v:.2f}' for v in values)})")


if __name__ == "__main__":
    sys.exit(main())
