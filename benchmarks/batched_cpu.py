"""Networks trained one by one against at once (`--batched-pool`, `evaluate_set(batched=True)`) on this CPU.

The `cifar10-ipc10-cpu` pool (2 ConvNets, width 64, its pretraining settings) trained for `--steps` steps
(the first steps x 128 images of the train split, one epoch), and the `cpu` evaluation of a random IPC-10
set for `--eval-epochs` epochs with 2 runs; each alternately one by one and batched, `--repeats` times.
Prints the median seconds of each and the ratio batched / one by one (below 1: batched is faster), and how far
the two end apart: the largest and the mean difference in the weights of a pool member (with the largest weight, for
scale), the members' test accuracies, and the runs' accuracies and final losses.
Usage: OMP_NUM_THREADS=1 python benchmarks/batched_cpu.py [--data ../shared/data/cifar10] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch

from condense.baseline import random_subset
from condense.config import preset
from condense.data import RealData, load_real
from condense.evaluate import eval_preset, evaluate_set
from condense.flags import run_main
from condense.pool import pretrain_pool
from condense.run import pool_spec
from condense.runtime import write_json
from condense.train import accuracy

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"
CPU = torch.device("cpu")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--steps", type=int, default=50, help="pool pretraining steps of 128 images")
    parser.add_argument("--eval-epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", help="write the figures here (JSON)")
    parser.set_defaults(func=command)
    return run_main(parser, argv)


def trained_net(spec, weights: dict) -> torch.nn.Module:
    net = spec.build()
    net.load_state_dict(weights)
    return net


def command(args: argparse.Namespace) -> None:
    train, test = load_real(args.data, "train"), load_real(args.data, "test")
    first = train.images[: args.steps * 128]
    part = RealData(first, train.labels[: len(first)], train.class_names, train.mean, train.std, train.source, train.split)
    config = preset("cifar10-ipc10-cpu")
    spec = pool_spec(config, part)
    evaluation = eval_preset("cpu")
    evaluation.train = dataclasses.replace(evaluation.train, epochs=args.eval_epochs)
    subset = random_subset(train, ipc=10, seed=0)
    seconds = {("pool", False): [], ("pool", True): [], ("eval", False): [], ("eval", True): []}
    checks, members, member_accuracies, losses = {}, {}, {}, {}
    for repeat in range(args.repeats):
        for batched in (False, True) if repeat % 2 == 0 else (True, False):  # alternate which goes first
            start = time.perf_counter()
            pool = pretrain_pool(spec, config.pool_size, part, CPU, progress=False, batched=batched)
            seconds["pool", batched].append(time.perf_counter() - start)
            checks["pool", batched] = [float(trained["classifier.weight"].norm()) for _, trained in pool.members]
            members[batched] = [trained for _, trained in pool.members]
            member_accuracies[batched] = [accuracy(trained_net(spec, trained), test, part.mean, part.std, CPU) for trained in members[batched]]
            start = time.perf_counter()
            result = evaluate_set(subset, test, evaluation, CPU, progress=False, batched=batched)
            seconds["eval", batched].append(time.perf_counter() - start)
            checks["eval", batched] = [run["accuracy"] for run in result["runs"]]
            losses[batched] = [run["loss"] for run in result["runs"]]
            print(f"repeat {repeat}: {'batched' if batched else 'one by one'}: pool {seconds['pool', batched][-1]:.1f} s, "
                  f"eval {seconds['eval', batched][-1]:.1f} s", flush=True)
    figures = {"threads": torch.get_num_threads(), "steps": args.steps, "eval_epochs": args.eval_epochs, "repeats": args.repeats,
               "members": config.pool_size, "eval_runs": evaluation.runs}
    for phase in ("pool", "eval"):
        alone, together = statistics.median(seconds[phase, False]), statistics.median(seconds[phase, True])
        figures[phase] = {"one_by_one_s": seconds[phase, False], "batched_s": seconds[phase, True], "median_one_by_one_s": alone,
                          "median_batched_s": together, "ratio_batched_over_one_by_one": together / alone,
                          "check_one_by_one": checks[phase, False], "check_batched": checks[phase, True]}
        print(f"{phase}: one by one {alone:.2f} s, batched {together:.2f} s (median of {args.repeats}); batched / one by one = "
              f"{together / alone:.2f}; check (pool: classifier weight norms, eval: run accuracies) {checks[phase, False]} vs {checks[phase, True]}")
    differences = torch.cat([(alone[name] - together[name]).abs().flatten() for alone, together in zip(members[False], members[True])
                             for name in alone if alone[name].is_floating_point()])
    largest = max(value.abs().max().item() for member in members[False] for value in member.values() if value.is_floating_point())
    figures["pool"].update(max_weight_difference=differences.max().item(), mean_weight_difference=differences.mean().item(),
                           max_abs_weight=largest, member_accuracy_one_by_one=member_accuracies[False],
                           member_accuracy_batched=member_accuracies[True])
    figures["eval"].update(loss_one_by_one=losses[False], loss_batched=losses[True])
    print(f"pool members, batched against one by one: weights differ by {differences.max().item():.3g} at most, "
          f"{differences.mean().item():.3g} on average (largest weight {largest:.3g}); test accuracies {member_accuracies[False]} vs "
          f"{member_accuracies[True]}; final losses of the runs {losses[False]} vs {losses[True]}")
    if args.out:
        write_json(args.out, figures)


if __name__ == "__main__":
    sys.exit(main())
