"""The `downstream` command line: info, train, cl (continual learning) and nas (architecture search)."""

from __future__ import annotations

import argparse
import json
import sys

from condense.errors import UserError


def cmd_info(args: argparse.Namespace) -> None:
    from .load import load_condensed

    synthetic = load_condensed(args.set, args.config)
    print(synthetic.summary())
    counts = synthetic.labels.bincount(minlength=synthetic.num_classes).tolist()
    print("per class: " + ", ".join(f"{name} {count}" for name, count in zip(synthetic.class_names, counts)))
    print(f"mean {list(synthetic.mean)}, std {list(synthetic.std)}")
    if synthetic.evaluation:
        print("evaluation: " + json.dumps(synthetic.evaluation))


def _all_or_int(text: str) -> int | None:
    return None if text == "all" else int(text)


def add_nas_arguments(parser: argparse.ArgumentParser) -> None:
    """`--preset` plus one flag per NasConfig setting (the preset's value when not given)."""
    from condense.flags import add_runtime_arguments, add_source_arguments

    add_source_arguments(parser, required=True)
    parser.add_argument("--preset", default="cifar10-cpu", help="cifar10-cpu (default) or cifar10-paper (all 720 ConvNets, GPU)")
    parser.add_argument("--condensed", help="the condensed set: .safetensors file, run folder, Hub folder or repo id")
    parser.add_argument("--condensed-config", help="config of a Hub folder or repo with several (ipc10, ...)")
    parser.add_argument("--out", help="result folder: nas.json and nas.png (default runs/nas-<preset>); an earlier search there is continued")
    add_runtime_arguments(parser)
    group = parser.add_argument_group("settings (override the preset)")
    group.add_argument("--space", default=argparse.SUPPRESS, help="convnet720 or a JSON file with a list of build_net option dicts")
    group.add_argument("--candidates", type=_all_or_int, default=argparse.SUPPRESS, help="how many to sample, or all")
    group.add_argument("--max-mmacs", type=lambda text: None if text == "none" else float(text), default=argparse.SUPPRESS,
                       help="sample only candidates of at most this many million MACs per image (none: no limit)")
    group.add_argument("--proxies", default=argparse.SUPPRESS, help="comma-separated, among condensed, random, real")
    for flag in ("condensed-epochs", "random-ipc", "random-epochs", "real-epochs", "reference-epochs", "seed"):
        group.add_argument(f"--{flag}", type=int, default=argparse.SUPPRESS)
    for flag in ("real-per-class", "test-per-class"):
        group.add_argument(f"--{flag}", type=_all_or_int, default=argparse.SUPPRESS, help="images per class, or all")


NAS_SETTINGS = ("space", "candidates", "max_mmacs", "proxies", "condensed_epochs", "random_ipc", "random_epochs",
                "real_epochs", "reference_epochs", "real_per_class", "test_per_class", "seed")


def cmd_nas(args: argparse.Namespace) -> None:
    from pathlib import Path

    from condense.distributed import torchrun_world
    from condense.flags import source_from_args
    from condense.runtime import resolve_device
    from downstream.nas import RESULT_FILE, check_config, nas_preset, run_search
    from downstream.nas.report import PLOT_FILE, format_summary, plot_search

    config = nas_preset(args.preset)
    for key in NAS_SETTINGS:
        if key in vars(args):
            setattr(config, key, getattr(args, key))
    if isinstance(config.proxies, str):
        config.proxies = tuple(p.strip() for p in config.proxies.split(",") if p.strip())
    check_config(config, args.condensed is not None)
    source = source_from_args(args)
    out = Path(args.out or Path("runs") / f"nas-{args.preset}")

    def load_inputs():
        condensed = None
        if "condensed" in config.proxies:
            from downstream.load import load_condensed

            condensed = load_condensed(args.condensed, args.condensed_config, None)
        return condensed, source.load("train"), source.load("test")

    with torchrun_world(resolve_device(args.device)) as (world, device):  # under torchrun the candidates are shared by the ranks
        condensed, train_data, test = world.main_first(load_inputs)
        result = run_search(config, train_data, test, out, condensed=condensed, device=device,
                            progress=not args.no_progress and world.is_main, world=world)
    if world.is_main:
        plot_search(result, out / PLOT_FILE)
        print(format_summary(result))
        print(f"wrote {out / RESULT_FILE} and {out / PLOT_FILE}")


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """`downstream train`: the evaluation flags of `condense eval`, plus the set or data, DLB and label noise."""
    from condense.cli import add_eval_arguments
    from condense.flags import add_source_arguments

    parser.add_argument("set", nargs="?", help="a condensed set: .safetensors file, run folder, Hub folder or repo id (omit to train on --data)")
    parser.add_argument("--set-config", help="config of a Hub folder or repo with several (ipc10, ...)")
    add_source_arguments(parser, required=False)
    parser.add_argument("--per-class", type=int, help="with --data: train on this many random images per class (seeded by --seed)")
    parser.add_argument("--split", default="test", help="real split to test on (default test)")
    parser.add_argument("--label-noise", type=float, default=0.0, help="rate of symmetric noise on the training labels")
    add_eval_arguments(parser)
    parser.set_defaults(objective="dlb")  # --objective (or --loss) ce for plain cross-entropy
    parser.add_argument("--out", help="result JSON (default <set or data name>-<loss>.json)")


def cmd_train(args: argparse.Namespace) -> None:
    """`downstream train`, in one process or with its runs shared across `torchrun` ranks (as `condense eval`)."""
    from pathlib import Path

    from condense.cli import eval_config, eval_objective
    from condense.distributed import torchrun_world
    from condense.evaluate import describe, format_result
    from condense.runtime import resolve_device, write_json
    from downstream.train import train_model

    if args.set is None and args.data is None:
        raise UserError("name a condensed set to train on, or a real dataset with --data")
    if args.per_class is not None and args.set is not None:
        raise UserError("--per-class picks images of --data; a condensed set is trained on whole: drop --per-class or the set")
    if args.per_class is not None and args.per_class < 1:
        raise UserError(f"--per-class must be at least 1 image per class, got {args.per_class}")
    objective = eval_objective(args)
    config = eval_config(args, objective)
    if args.cutmix_p is None:
        config.train.cutmix_p = 0.0  # DLB compares per-sample predictions; CE trains on the same augmentation
    name = Path((args.set or args.data).rstrip("/")).name.removesuffix(".safetensors")
    out = Path(args.out or f"{name}-{args.objective}.json")
    with torchrun_world(resolve_device(args.device)) as (world, device):
        train_set, test = world.main_first(lambda: _train_and_test_sets(args, config.seed))
        if world.is_main:
            print(f"training {config.net} with {objective or 'cross-entropy'} on {describe(train_set)}"
                  f"{f', {args.label_noise:.0%} label noise' if args.label_noise else ''}\ntesting on {test.name} [{test.split}] on {device}"
                  + (f", runs shared by {world.size} processes" if world.size > 1 else ""))
        result = train_model(train_set, test, config, objective=objective, label_noise=args.label_noise, device=device,
                             progress=not args.no_progress and world.is_main, world=world)
    if world.is_main:
        write_json(out, result)
        print(format_result(result))
        print(f"{result['seconds_per_epoch']:.2f} s/epoch; wrote {out}")


def _train_and_test_sets(args: argparse.Namespace, seed: int):
    """What `downstream train` trains on (a condensed set, or real data with --per-class images per class) and tests on."""
    from condense.flags import source_from_args
    from downstream.train import real_subset

    if args.set is not None:
        from downstream.load import load_condensed

        train_set = load_condensed(args.set, args.set_config)
        return train_set, source_from_args(args, train_set.data_source(args.data)).load(args.split)
    source = source_from_args(args)
    train_set, test = source.load("train"), source.load(args.split)
    return (real_subset(train_set, args.per_class, seed) if args.per_class is not None else train_set), test


def add_cl_arguments(parser: argparse.ArgumentParser) -> None:
    """`downstream cl`: a preset, the data, the memories, the fresh model's objective, and the settings worth changing."""
    from condense.cli import add_objective_arguments
    from condense.flags import add_runtime_arguments, add_source_arguments
    from downstream.continual.config import STRATEGIES

    add_source_arguments(parser, required=True)
    add_objective_arguments(parser)
    parser.add_argument("--preset", default="cifar10-cpu", help="cifar10-cpu (default), cifar100-5steps or cifar100-10steps (GPU)")
    parser.add_argument("--memory", default="random,herding", help="comma-separated: random, herding, condensed:PATH (a condensed "
                        "set: file, run folder, Hub folder or repo id), condensed (condense as you go)")
    parser.add_argument("--out", help="result folder: cl.json and cl.png (default runs/cl-<data name>)")
    add_runtime_arguments(parser)
    group = parser.add_argument_group("settings (override the preset)")
    group.add_argument("--steps", type=int, default=argparse.SUPPRESS, help="experiences (the classes split equally)")
    group.add_argument("--ipc", type=int, default=argparse.SUPPRESS, help="stored images per class in every memory")
    group.add_argument("--mem-size", type=int, default=argparse.SUPPRESS, help="memory size in all (default ipc x classes); per class "
                       "min(ipc, mem-size // classes seen)")
    group.add_argument("--seeds", default=argparse.SUPPRESS, help="comma-separated; each seed draws a class order")
    group.add_argument("--class-order", default=argparse.SUPPRESS, help="comma-separated class indices, the same for every seed")
    group.add_argument("--epochs", type=int, default=argparse.SUPPRESS, help="epochs of the fresh model on the memory, per step")
    group.add_argument("--width", type=int, default=argparse.SUPPRESS, help="ConvNet width")
    group.add_argument("--strategy", choices=STRATEGIES, default=argparse.SUPPRESS,
                       help="fresh (default): the DM protocol, a fresh model trained on the memory after every experience is "
                       "tested; replay: Avalanche's experience replay, the continual model trained on the stream with replayed "
                       "memory is tested (--objective dlb adds DLBPlugin)")
    group.add_argument("--stream-epochs", type=int, default=argparse.SUPPRESS,
                       help="epochs of the continual model per experience (herding reads it; replay trains and tests it)")
    group.add_argument("--condensed-count", choices=("stored", "decoded"), default=argparse.SUPPRESS,
                       help="a condensed class's budget counts stored canvases (default) or decoded images")
    group.add_argument("--condense-iterations", type=int, default=argparse.SUPPRESS, help="condense-as-you-go: distillation iterations per step")


def cmd_cl(args: argparse.Namespace) -> None:
    from pathlib import Path

    from condense.cli import eval_objective
    from condense.flags import source_from_args
    from condense.runtime import resolve_device, write_json
    from condense.train import keeps_cutmix
    from downstream.continual import cl_preset, parse_memories
    from downstream.continual.protocol import run_comparison
    from downstream.continual.report import format_table, save_plot

    config = cl_preset(args.preset)
    settings = vars(args)
    for key in ("steps", "ipc", "mem_size", "strategy", "stream_epochs", "condensed_count"):
        if key in settings:
            setattr(config, key, settings[key])
    if "condense_iterations" in settings:
        config.condense["iterations"] = args.condense_iterations
    try:
        if "seeds" in settings:
            config.seeds = tuple(int(s) for s in args.seeds.split(","))
        if "class_order" in settings:
            config.order = tuple(int(c) for c in args.class_order.split(","))
    except ValueError as exc:
        raise UserError(f"--seeds and --class-order take comma-separated integers ({exc})") from exc
    if "epochs" in settings:
        config.train.epochs = args.epochs
    if "width" in settings:
        config.net_options["width"] = args.width
    objective = eval_objective(args)
    if not keeps_cutmix(objective):
        config.train.cutmix_p = 0.0  # DLB's paper scheme cannot mix (its official scheme mixes only new samples)
    config.check()  # before the data is read
    memories = parse_memories(args.memory)
    device = resolve_device(args.device)
    source = source_from_args(args)
    source = source.replace(label_column=source.label_column or config.label_column)  # the preset's column unless --label-column
    train_data, test = source.load("train"), source.load("test")
    out = Path(args.out or Path("runs") / f"cl-{Path(args.data.rstrip('/')).name}")
    result = run_comparison(train_data, test, memories, config, device, objective=objective, progress=not args.no_progress)
    write_json(out / "cl.json", result)
    save_plot(result, out / "cl.png")
    print(format_table(result))
    print(f"wrote {out / 'cl.json'} and {out / 'cl.png'}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="downstream", description="Use condensed sets: inspect them and train on them.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    info = commands.add_parser("info", help="describe a condensed set")
    info.add_argument("set", help="a .safetensors set, a run folder, a Hub folder or a Hub repo id")
    info.add_argument("--config", help="config of a Hub folder or repo (needed when it has several)")
    info.set_defaults(func=cmd_info)
    nas = commands.add_parser("nas", help="rank architectures on proxies (condensed, random, short real) against real training")
    add_nas_arguments(nas)
    nas.set_defaults(func=cmd_nas)
    train = commands.add_parser("train", help="train a network on a condensed set or real data, with CE or DLB; test at the final epoch")
    add_train_arguments(train)
    train.set_defaults(func=cmd_train)
    cl = commands.add_parser("cl", help="class-incremental learning with random, herding and condensed replay memories (Avalanche)")
    add_cl_arguments(cl)
    cl.set_defaults(func=cmd_cl)
    return parser


def main(argv: list[str] | None = None) -> int:
    from condense.flags import run_main

    return run_main(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
