"""Re-rank the candidates of a finished CPU NAS search with the proxies trained under another protocol.

Only the proxies (condensed set and random subset) are retrained; the reference accuracies are read
from the finished search's nas.json, so a protocol costs minutes, not the hours of the reference.
Prints Spearman over all candidates (and top 5/10/20) and the proxy search time for each proxy.

Usage: python benchmarks/nas_proxy_protocols.py --result benchmarks/results/cpu-2026-11-23/nas.json \\
           --condensed SET [--batch-size 32] [--dsa color_crop_flip_scale_rotate] [--condensed-epochs N]
           [--proxies condensed,random] [--random-seed S] [--out FILE.json] [--timing N]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch

from condense.data import load_real
from condense.flags import run_main
from condense.runtime import read_json, write_json
from downstream import nas
from downstream.load import load_condensed

HERE = Path(__file__).resolve().parent


def quiet_training(candidate: dict, training, test, config) -> dict:
    """`nas.train_candidate` on the CPU, without a progress bar."""
    return nas.train_candidate(candidate, training, test, config, torch.device("cpu"), False, "")


def time_against_reference(candidates: list[dict], sets: dict, proxies: list[str], test, config) -> None:
    """Train the reference and the proxies of each candidate in turn (the same load for all) and print the time ratios."""
    seconds = dict.fromkeys(["reference", *proxies], 0.0)
    for candidate in candidates:
        for name in seconds:
            seconds[name] += quiet_training(candidate, sets[name], test, config)["seconds"]
        print(f"{candidate['name']}: " + ", ".join(f"{name} {value:.0f} s" for name, value in seconds.items()) + " (running sums)")
    for proxy in proxies:
        print(f"{proxy:>9}: reference time / proxy time = {seconds['reference'] / seconds[proxy]:.2f} over {len(candidates)} candidates")


def rerank(candidates: list[dict], reference: list[float], sets: dict, proxies: list[str], test, config, args) -> None:
    """Train every candidate on each proxy and print (and with --out, write) its rank report against the stored reference."""
    names = [c["name"] for c in candidates]
    results = {"args": vars(args), "candidates": names, "reference": reference, "proxies": {}}
    for proxy in proxies:
        runs = [quiet_training(c, sets[proxy], test, config) for c in candidates]
        accuracies, seconds = [r["accuracy"] for r in runs], sum(r["seconds"] for r in runs)
        report = nas.rank_report(accuracies, reference, names)
        rho = ", ".join(f"{k} {v:.2f}" if v is not None else f"{k} n/a" for k, v in report["spearman"].items())
        print(f"{proxy:>9}: Spearman {rho}; {seconds:.0f} s")
        results["proxies"][proxy] = {"accuracies": accuracies, "seconds": seconds, **report}
        if args.out:
            write_json(args.out, results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--result", default=str(HERE / "results" / "cpu-2026-11-23" / "nas.json"), help="a finished search's nas.json")
    parser.add_argument("--condensed", default=str(HERE / "runs" / "ncfm_cpu" / "factor1" / "synthetic.safetensors"),
                        help="condensed set (default: the one benchmarks/nas_cpu.py distils)")
    parser.add_argument("--data", default=str(HERE.parents[1] / "shared" / "data" / "cifar10"))
    parser.add_argument("--batch-size", type=int, help="proxy training batch (default: the search's)")
    parser.add_argument("--dsa", help="proxy training DSA operations ('' for none; default: the search's)")
    parser.add_argument("--condensed-epochs", type=int,
                        help="epochs on the condensed set (default: the search's; the random subset gets as many steps)")
    parser.add_argument("--proxies", default="condensed,random", help="comma-separated subset of condensed, random")
    parser.add_argument("--random-seed", type=int, help="draw the random subset with this seed (default: the search's seed)")
    parser.add_argument("--out", help="write every candidate's proxy accuracies and the reports to this JSON file")
    parser.add_argument("--timing", type=int, metavar="N",
                        help="only time: train the reference and the proxies of N candidates (spread over the list), "
                             "interleaved, and print the reference's time over each proxy's (the stored reference "
                             "times come from another run, under another load)")
    parser.set_defaults(func=command)
    return run_main(parser, argv)


def command(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    stored = read_json(args.result, "NAS result")
    config = nas.nas_preset("cifar10-cpu")
    for key, value in stored["config"].items():
        if key != "train" and hasattr(config, key):
            setattr(config, key, tuple(value) if key == "proxies" else value)
    changes = {k: v for k, v in {"batch_size": args.batch_size, "dsa": args.dsa}.items() if v is not None}
    config.train = replace(config.train, **changes)
    config.proxies = ("condensed", "random")  # both sets are built: the random subset's epochs follow the condensed set's steps
    proxies = args.proxies.split(",")
    config.condensed_epochs = args.condensed_epochs or config.condensed_epochs
    train_data, test = load_real(args.data, "train"), load_real(args.data, "test")
    condensed = load_condensed(args.condensed)
    sets = nas.training_sets(config, train_data, test, condensed)
    if args.random_seed is not None:  # only the random draw changes: the reference and test subsets keep the search's seed
        sets["random"] = nas.training_sets(replace(config, seed=args.random_seed), train_data, test, condensed)["random"]
    test = nas.test_subset(test, config.test_per_class, config.seed)
    names = [c["name"] for c in stored["candidates"]]
    reference = [c["runs"]["reference"]["accuracy"] for c in stored["candidates"]]
    print(f"{len(names)} candidates of {args.result}; proxy training {changes or 'as the search'}")
    for proxy in proxies:
        print(f"{proxy:>9}: {sets[proxy].epochs} epochs on {sets[proxy].description}")
    if args.timing:
        time_against_reference(stored["candidates"][:: max(1, len(names) // args.timing)][: args.timing], sets, proxies, test, config)
    else:
        rerank(stored["candidates"], reference, sets, proxies, test, config, args)


if __name__ == "__main__":
    sys.exit(main())
