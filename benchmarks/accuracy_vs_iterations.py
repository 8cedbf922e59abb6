"""Accuracy against distillation iterations for one preset, with the published code's 200-iteration set as a line (issue 15, item 9).

One distillation to the largest count, a snapshot of the set at every count asked for (a callback of the one
distillation loop), each snapshot evaluated under one protocol (final-epoch accuracy, mean ± population std
of --runs runs). Snapshots and finished evaluations are kept in --out, so a killed study continues where it
stopped. Writes figures.json and accuracy_vs_iterations.png under --out.
Usage:
  python benchmarks/accuracy_vs_iterations.py --data ../shared/data/cifar10 --pool-folder pools/cifar10-convnet-2x1ep-11d062a7ac \
      --out benchmarks/runs/iterations
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from condense.config import preset
from condense.distill import make_method
from condense.evaluate import eval_preset, evaluate_set
from condense.flags import run_main
from condense.loop import Callback, Checkpoints, iterate
from condense.run import prepare
from condense.runfolder import load_checkpoint
from condense.runtime import read_json, resolve_device, save_figure, write_json
from condense.synthetic import SyntheticSet

PUBLISHED = Path(__file__).resolve().parents[2] / "shared" / "reference_sets" / "published_ncfm_cifar10_ipc10_cpu_200it.safetensors"


class Snapshots(Callback):
    """The set as it stands at each of `counts` iterations, saved as snapshot-<count>.safetensors."""

    def __init__(self, out: Path, counts: list[int]):
        self.out, self.counts = out, set(counts)

    def on_step(self, distiller, record: dict) -> None:
        if distiller.iteration in self.counts:
            distiller.synthetic_set().save(self.out / f"snapshot-{distiller.iteration}.safetensors")


def plot(figures: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    counts = sorted(int(count) for count in figures["sets"])
    means = [figures["sets"][str(count)]["accuracy_mean"] for count in counts]
    stds = [figures["sets"][str(count)]["accuracy_std"] for count in counts]
    axis.errorbar(counts, means, yerr=stds, marker="o", capsize=3, label=f"this project, {figures['preset']}")
    if "published" in figures:
        axis.axhline(figures["published"]["accuracy_mean"], color="grey", linestyle="--", label="published NCFM code, 200 iterations")
    axis.set_xscale("symlog", linthresh=25)
    axis.set_xticks(counts, [str(count) for count in counts])
    axis.set_xlabel("distillation iterations")
    axis.set_ylabel(f"test accuracy (%), {figures['protocol']} protocol")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    save_figure(figure, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/cifar10")
    parser.add_argument("--preset", default="cifar10-ipc10-cpu")
    parser.add_argument("--pool-folder", help="reuse this pool (default: the preset's)")
    parser.add_argument("--counts", default="0,25,50,100,200,400", help="iteration counts to evaluate, comma-separated")
    parser.add_argument("--protocol", default="cpu")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--epochs", type=int, help="evaluation epochs (default: the protocol's; fewer for a quick check)")
    parser.add_argument("--seed", type=int, default=0, help="distillation seed")
    parser.add_argument("--out", default="benchmarks/runs/iterations")
    parser.add_argument("--device", default="auto")
    parser.set_defaults(func=command)
    return run_main(parser, argv)


def command(args: argparse.Namespace) -> None:
    out, device, counts = Path(args.out), resolve_device(args.device), sorted(int(c) for c in args.counts.split(","))
    out.mkdir(parents=True, exist_ok=True)
    config = preset(args.preset).changed(data=args.data, iterations=max(counts), seed=args.seed, checkpoint_every=25,
                                 **({"pool_folder": args.pool_folder} if args.pool_folder else {}))
    real, test, pool, _ = prepare(config, device, progress=False)
    distiller = make_method(config, real, pool, device)
    if (out / "checkpoint.pt").is_file():
        load_checkpoint(distiller, out / "checkpoint.pt")
    if 0 in counts and not (out / "snapshot-0.safetensors").is_file():
        distiller.synthetic_set().save(out / "snapshot-0.safetensors")
    iterate(distiller, [Snapshots(out, counts), Checkpoints(out / "checkpoint.pt")])
    figures = read_json(out / "figures.json") if (out / "figures.json").is_file() else {"sets": {}}
    evaluation = eval_preset(args.protocol)
    evaluation.runs = args.runs
    if args.epochs:
        evaluation.train.epochs = args.epochs
    figures.update(preset=args.preset, protocol=args.protocol, runs=args.runs, seed=args.seed, data=args.data)
    for name, path in [*((str(count), out / f"snapshot-{count}.safetensors") for count in counts), ("published", PUBLISHED)]:
        done = figures["sets"] if name != "published" else figures
        if name in done or not path.is_file():
            continue
        result = evaluate_set(SyntheticSet.load(path), test, evaluation, device, progress=False)
        done[name] = {"accuracy_mean": result["accuracy_mean"], "accuracy_std": result["accuracy_std"],
                      "runs": [run["accuracy"] for run in result["runs"]]}
        print(f"{name}: {result['accuracy_mean']:.2f} ± {result['accuracy_std']:.2f} %", flush=True)
        write_json(out / "figures.json", figures)  # after every set: a long study keeps what it finished
    plot(figures, out / "accuracy_vs_iterations.png")
    print(f"wrote {out / 'figures.json'} and {out / 'accuracy_vs_iterations.png'}")


if __name__ == "__main__":
    sys.exit(main())
