"""DLB against cross-entropy where cross-entropy memorises noisy labels (issue 17, item 2).

A class-balanced CIFAR-10 subset (`--per-class`, seed 0), symmetric label noise at each `--noise` rate
(drawn from the training seed), **no augmentation** and no CutMix, so that CE fits the wrong labels
and its test accuracy peaks and then falls. Network and optimiser: the CPU evaluation ConvNet and
protocol (AdamW lr 1e-3, wd 0.01, lr halved at every fifth of the steps). Methods, same epochs and
seeds: `ce`, `dlb-official` (a), `dlb-paper` (b), and `ce-2x` (CE for twice the epochs: as many
forwards as DLB, about the same time). Each run tests the network after every epoch on a fixed
class-balanced test subset (`--curve-per-class`, the curve: peak and final) and at the end on the
whole test split (the final figure). Prints one line per run, a table of mean ± population std over
seeds, writes every figure to --out (JSON, rewritten after each run) and the curves to --plot. An
--out that exists is continued: its finished runs are kept and skipped (so more rates, seeds or
methods can be added later), provided the other settings are the same.

The robustness claim holds at a rate if DLB's final accuracy minus CE's final is larger there than
on clean labels (rate 0 must be among --noise for the clean gap).

Usage: python benchmarks/dlb_noise.py [--per-class 200] [--epochs 30] [--noise 0,0.2,0.4] [--seeds 2]
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

from condense.data import RealData, load_real
from condense.flags import run_main
from condense.nets import build_net
from condense.runtime import write_json
from condense.train import accuracy, train
from downstream.dlb import DLB
from downstream.train import default_config, symmetric_label_noise

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"
METHODS = ("ce", "dlb-official", "dlb-paper", "ce-2x")


class TestCurve:
    """The `train` objective that tests `net` at the start of every epoch (after the one before): the curve.

    It takes each step's samples and extra loss from `inner` (a DLB) or, without one, the plain batches
    of CE (one part per step, no extra loss: the same training as `objective=None`).
    """

    def __init__(self, net, inner: DLB | None, test: RealData, device: torch.device):
        self.net, self.inner, self.test, self.device = net, inner, test, device

    def start(self) -> None:
        self.points: list[float] = []
        self.epoch = 0
        if self.inner is not None:
            self.inner.start()

    def steps_per_epoch(self, count: int, batch_size: int) -> int:
        return math.ceil(count / batch_size) if self.inner is None else self.inner.steps_per_epoch(count, batch_size)

    def record(self) -> None:
        self.points.append(accuracy(self.net, self.test, self.test.mean, self.test.std, self.device))
        self.net.train()

    def steps(self, order: torch.Tensor, batch_size: int):
        if self.epoch > 0:
            self.record()
        self.epoch += 1
        yield from ([batch] for batch in order.split(batch_size)) if self.inner is None else self.inner.steps(order, batch_size)

    def extra_loss(self, logits: list[torch.Tensor]) -> torch.Tensor:
        return torch.zeros((), device=logits[0].device) if self.inner is None else self.inner.extra_loss(logits)


def run(method: str, train_set: RealData, noise: float, seed: int, args, curve_test: RealData, test: RealData, device) -> dict:
    config = default_config()
    epochs = args.epochs * (2 if method == "ce-2x" else 1)
    train_config = replace(config.train, epochs=epochs, batch_size=args.batch_size, lr=args.lr, dsa="", cutmix_p=0.0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_net(config.net, train_set.channels, train_set.num_classes, train_set.image_size, **config.net_options)
    generator = torch.Generator().manual_seed(seed)
    labels = symmetric_label_noise(train_set.labels, noise, train_set.num_classes, generator) if noise else train_set.labels
    inner = None if method.startswith("ce") else DLB(tau=args.tau, alpha=args.alpha, scheme=method.split("-")[1])
    curve = TestCurve(net, inner, curve_test, device)
    stats = train(net, train_set.images, labels, train_config, mean=train_set.mean, std=train_set.std, generator=generator,
                  device=device, progress=sys.stderr.isatty(), objective=curve)
    curve.record()
    points = curve.points
    peak = max(range(epochs), key=points.__getitem__)
    return {"method": method, "noise": noise, "seed": seed, "epochs": epochs, "curve": points, "peak": points[peak],
            "peak_epoch": peak + 1, "final_curve": points[-1], "final": accuracy(net, test, train_set.mean, train_set.std, device),
            "flipped": int((labels != train_set.labels).sum()), "seconds": stats["seconds"]}


def summary(runs: list[dict], key: str) -> str:
    values = [r[key] for r in runs]
    return f"{statistics.fmean(values):6.2f} ± {statistics.pstdev(values):4.2f}"


def print_table(figures: dict) -> None:
    print(f"\nfinal = whole test split after the last epoch; peak = best point of the curve "
          f"({figures['curve_test']}); mean ± population std over seeds")
    print(f"{'noise':>5} {'method':>13} {'seeds':>5} {'peak (curve)':>15} {'final (curve)':>15} {'final':>15} {'vs CE final':>11}")
    for noise in sorted(figures["results"], key=float):
        by_method = figures["results"][noise]
        ce = by_method.get("ce")
        for method, runs in by_method.items():
            if not runs:
                continue
            gain = statistics.fmean(r["final"] for r in runs) - statistics.fmean(r["final"] for r in ce) if ce else float("nan")
            print(f"{noise:>5} {method:>13} {len(runs):>5} {summary(runs, 'peak'):>15} {summary(runs, 'final_curve'):>15} "
                  f"{summary(runs, 'final'):>15} {gain:>+11.2f}")


def save_plot(figures: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = sorted(figures["results"], key=float)
    fig, axes = plt.subplots(1, len(rates), figsize=(5 * len(rates), 4), sharey=True, squeeze=False)
    colours = dict(zip(METHODS, ("tab:blue", "tab:orange", "tab:green", "tab:gray")))
    for axis, noise in zip(axes[0], rates):
        for method, runs in figures["results"][noise].items():
            if not runs:
                continue
            curves = torch.tensor([r["curve"] for r in runs])
            mean, spread = curves.mean(0), curves.std(0, unbiased=False)
            epochs = range(1, curves.shape[1] + 1)
            axis.plot(epochs, mean, label=f"{method} ({len(runs)} seed{'s' if len(runs) > 1 else ''})", color=colours[method])
            axis.fill_between(epochs, mean - spread, mean + spread, color=colours[method], alpha=0.2)
        axis.set_title(f"{float(noise):.0%} symmetric label noise")
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"test accuracy (%), {figures['curve_test']}")
    axes[0][0].legend()
    fig.suptitle(f"ConvNet-64, CIFAR-10 {figures['train_images']} images, no augmentation; mean ± std over seeds")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def settings(args: argparse.Namespace) -> dict:
    """What every run of one figures file shares (the noise rates, seeds and methods may grow between invocations)."""
    return {key: value for key, value in vars(args).items() if key not in ("noise", "seeds", "methods", "out", "plot", "threads")}


def continued(args: argparse.Namespace) -> dict | None:
    """The figures already in --out (runs there are skipped), or None; refuses a file made with other settings."""
    import json

    if not Path(args.out).is_file():
        return None
    figures = json.loads(Path(args.out).read_text())
    if figures["settings"] != settings(args):
        sys.exit(f"error: {args.out} holds runs with other settings ({figures['settings']}); choose another --out")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--per-class", type=int, default=200, help="training images per class (200: 2,000 images)")
    parser.add_argument("--curve-per-class", type=int, default=200, help="test images per class tested after every epoch")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--noise", default="0,0.2,0.4", help="comma-separated symmetric noise rates")
    parser.add_argument("--seeds", type=int, default=2, help="training seeds 0..N-1 (network, order, noise)")
    parser.add_argument("--methods", default=",".join(METHODS[:3]), help=f"comma-separated subset of {', '.join(METHODS)}")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--tau", type=float, default=3.0)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/runs/dlb_noise/figures.json")
    parser.add_argument("--plot", default="benchmarks/runs/dlb_noise/curves.png")
    parser.set_defaults(func=command)
    return run_main(parser, argv)


def command(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    start, device = time.perf_counter(), torch.device("cpu")
    full_train, test = load_real(args.data, "train"), load_real(args.data, "test")
    train_set, curve_test = full_train.balanced_subset(args.per_class, seed=0), test.balanced_subset(args.curve_per_class, seed=0)
    rates, methods = [str(float(r)) for r in args.noise.split(",")], args.methods.split(",")
    figures = continued(args) or {"settings": settings(args), "train_images": len(train_set), "curve_test": f"{len(curve_test)} test images",
                                  "test": f"{len(test)} test images", "results": {}}
    figures.setdefault("commands", []).append(" ".join(sys.argv))
    for seed in range(args.seeds):
        for rate in rates:
            for method in methods:
                done = figures["results"].setdefault(rate, {}).setdefault(method, [])
                if any(r["seed"] == seed for r in done):
                    continue
                result = run(method, train_set, float(rate), seed, args, curve_test, test, device)
                done.append(result)
                print(f"noise {rate} {method:>13} seed {seed}: peak {result['peak']:6.2f} % at epoch {result['peak_epoch']:>3}, "
                      f"final {result['final_curve']:6.2f} % (curve) {result['final']:6.2f} % (test), {result['flipped']} flipped, "
                      f"{result['seconds']:.0f} s", flush=True)
                write_json(args.out, figures)
                save_plot(figures, args.plot)
    print_table(figures)
    print(f"total {time.perf_counter() - start:.0f} s; figures in {args.out}, curves in {args.plot}")


if __name__ == "__main__":
    sys.exit(main())
