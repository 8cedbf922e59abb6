"""The `condense` command line: distill, pretrain and eval here; baseline, import, export and push in `condense.setcommands`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import replace
from pathlib import Path

from .errors import UserError
from .flags import add_dataclass_arguments, add_runtime_arguments, add_source_arguments, flag, run_main, source_from_args
from .nets import ACTIVATIONS, NETS, NORMS, POOLINGS
from .objectives import objective_names
from .setcommands import add_set_commands
from .train import TrainConfig, keeps_cutmix


def add_objective_arguments(parser: argparse.ArgumentParser) -> None:
    """`--objective ce|dlb` and DLB's settings (`eval_objective` builds the objective)."""
    objective = parser.add_argument_group("objective")
    objective.add_argument("--objective", "--loss", dest="objective", choices=objective_names(), default="ce",
                           help="ce: cross-entropy (default); dlb: DLB, self-distillation from the last mini-batch (downstream.dlb), "
                                "which keeps the protocol's CutMix in its official scheme (mixing only new samples) and drops it in "
                                "the paper scheme")
    objective.add_argument("--scheme", help="DLB batches: official (default; new batch + previous batch, two forwards) "
                                             "or paper (half-overlapping batches of n)")
    objective.add_argument("--tau", type=float, help="DLB temperature (default 3)")
    objective.add_argument("--alpha", type=float, help="DLB weight (default 1)")


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    from .evaluate import EVAL_PRESETS, SCALES

    parser.add_argument("--protocol", "--preset", dest="protocol", default="cpu", metavar="NAME",
                        help=f"how to train: {', '.join(EVAL_PRESETS)}: optimiser, schedule, augmentation, CutMix "
                             "(paper: ncfm at paper scale; BENCHMARKS.md; --preset is the old name)")

    def epochs(by_protocol: dict) -> str:  # "2000 epochs (dc: 1000)": the usual count and the exceptions
        counts = list(by_protocol.values())
        usual = max(counts, key=counts.count)
        others = ", ".join(f"{protocol}: {count}" for protocol, count in by_protocol.items() if count != usual)
        return f"{usual} epochs" + (f" ({others})" if others else "")

    sizes = "; ".join(f"{name}: width {size['width']}, {epochs(size['epochs'])}, {size['runs']} runs" for name, size in SCALES.items())
    parser.add_argument("--scale", choices=list(SCALES),
                        help=f"how big and how long: {sizes} (default cpu; paper for --protocol paper)")
    net = parser.add_argument_group("network (defaults from the preset)")
    net.add_argument("--net", choices=list(NETS))
    net.add_argument("--depth", type=int, help="ConvNet depth (default: 3 at 32 px, 4 at 64, 5 at 128)")
    net.add_argument("--width", type=int, help="ConvNet width")
    net.add_argument("--norm", choices=list(NORMS))
    net.add_argument("--act", choices=list(ACTIVATIONS), help="ConvNet activation")
    net.add_argument("--pooling", "--pool", dest="pooling", choices=list(POOLINGS), help="ConvNet pooling (--pool: its old name)")
    training = parser.add_argument_group("training (defaults from the preset)")
    add_dataclass_arguments(training, TrainConfig, skip=("lr_decay_at",))
    training.add_argument("--labels", choices=["hard", "stored"],
                          help="hard: the class labels (default; with --teacher, the teacher's soft labels of every augmented batch); "
                               "stored: the set's stored soft labels, which do not follow the augmentation")
    training.add_argument("--teacher", help="pool member file (member-XXX-trained.safetensors), several joined by commas or a pool folder "
                                            "(the ensemble of its trained members): KD from it on every augmented batch")
    training.add_argument("--runs", type=int)
    training.add_argument("--seed", type=int)
    add_objective_arguments(parser)
    add_runtime_arguments(parser)


def eval_config(args: argparse.Namespace, objective=None):
    """The protocol's EvalConfig with every option given on the command line applied (named in its `name`);
    `objective` (from `eval_objective`) decides whether the protocol's CutMix stays."""
    from .evaluate import eval_preset

    config = eval_preset(args.protocol, args.scale)
    if args.net is not None and args.net != config.net:
        config.net, config.net_options = args.net, {}
    network = {k: getattr(args, k) for k in ("depth", "width", "norm", "act", "pooling") if getattr(args, k) is not None}
    config.net_options.update(network)
    training = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if getattr(args, f.name, None) is not None}
    if "cutmix_p" not in training and not keeps_cutmix(objective):
        training["cutmix_p"] = 0.0  # an objective that cannot mix (DLB's paper scheme) drops the protocol's CutMix
    config.train = replace(config.train, **training)
    changed = [k for k in ("net", *network, *training) if k in training or getattr(args, k) is not None]
    if changed:
        config.name = f"{config.name} with {', '.join(changed)} changed"
    for key in ("runs", "seed", "labels", "teacher"):
        if getattr(args, key) is not None:
            setattr(config, key, getattr(args, key))
    if args.temperature is not None and not config.teacher and config.labels != "stored":
        raise UserError("--temperature scales soft labels (a --teacher or --labels stored); with hard labels it does nothing: drop it")
    return config


def eval_objective(args: argparse.Namespace):
    """The training objective `--objective` names: None (cross-entropy) or a registered one (`condense.objectives`)."""
    from .objectives import make_objective

    given = {name: getattr(args, name) for name in ("tau", "alpha", "scheme") if getattr(args, name) is not None}
    if given and args.objective == "ce":
        one = len(given) == 1
        raise UserError(f"{', '.join(flag(name) for name in given)} {'is a setting' if one else 'are settings'} of --objective dlb, "
                        f"which plain cross-entropy (--objective ce) does not use; add --objective dlb or drop {'it' if one else 'them'}")
    return make_objective(args.objective, **given)


def check_holdout(holdout: int, recorded: dict) -> None:
    """`condense eval --holdout N` tests on images the set never saw: a set distilled with at least N held out (held-out
    images are nested: those of N are among those of any larger count); refused before any data is read."""
    if holdout < 0:
        raise UserError(f"--holdout is a number of images per class (at least 1; 0 tests on the test split), got {holdout}")
    distilled = recorded.get("holdout") or 0
    if holdout and not (isinstance(distilled, int) and distilled >= holdout):
        raise UserError(f"--holdout {holdout}: this set was distilled with --holdout {distilled}, so it may have been made from the images "
                        f"it would be tested on; test it on the test split (drop --holdout), or distil with --holdout {holdout} or more")


def eval_inputs(args: argparse.Namespace):
    """What `condense eval` trains on (a condensed set, or the train split of a plain image-classification dataset: a Hub
    id, or a folder in Hub layout with data/), where its result goes, and the test source and split."""
    from .hub import CARD, SET_FILE, load_set_source
    from .runtime import is_local
    from .source import DataSource

    given = Path(args.set)
    hub_dataset = not is_local(args.set) and "/" in args.set and not args.set.endswith(".safetensors")  # OWNER/NAME of a dataset repo
    if hub_dataset or (given.is_dir() and (given / "data").is_dir() and not (given / SET_FILE).is_file()):
        if not args.data or args.holdout:
            raise UserError(f"{args.set} is a dataset, trained on as a whole: pass --data for the test split (and no --holdout)")
        train = DataSource(args.set).load("train")
        return train, Path(f"{Path(args.set.rstrip('/')).name}.eval.json"), source_from_args(args), args.split or "test"
    synthetic = load_set_source(args.set, args.config)
    if (given / CARD).is_file():  # a Hub folder: the result goes beside it, never into what `push` uploads
        default_out = given.with_name(f"{given.name}{'-' + args.config if args.config else ''}.eval.json")
    else:
        default_out = (given / SET_FILE if given.is_dir() else given).with_suffix(".eval.json")
    check_holdout(args.holdout, synthetic.config)
    split = args.split or (synthetic.config.get("split", "train") if args.holdout else "test")
    return synthetic, default_out, source_from_args(args, synthetic.data_source(args.data)), split


def zca_of(synthetic, source, world):
    """For a ZCA-space set, the whitening refitted on its source's training pixels (the test images are whitened alike); else None."""
    if getattr(synthetic, "image_space", None) != "zca":
        return None
    from .importers import ZCA

    split = synthetic.config.get("import", {}).get("split", "train")
    return ZCA.fit(world.main_first(lambda: source.load(split)), eps=synthetic.config["import"]["settings"]["zca"]["eps"])


def cmd_eval(args: argparse.Namespace) -> None:
    """`condense eval`, in one process or with its runs shared across `torchrun` ranks."""
    from .distributed import torchrun_world
    from .evaluate import describe, evaluate_set, format_result, use_learned_lr
    from .runtime import resolve_device, write_json

    objective = eval_objective(args)  # bad settings are refused before the set or any data is read
    config = eval_config(args, objective)
    synthetic, default_out, source, split = eval_inputs(args)
    learned_lr = use_learned_lr(config, getattr(synthetic, "learned_lr", None), args.lr is not None)
    with torchrun_world(resolve_device(args.device)) as (world, device):
        test = world.main_first(lambda: source.load(split) if not args.holdout else source.load(split).holdout_split(args.holdout)[1])
        if world.is_main:
            print(f"evaluating {describe(synthetic)}\non {test.name} [{test.split}] with {config.net}{f' and {objective}' if objective else ''} on {device}"
                  + (f", runs shared by {world.size} processes" if world.size > 1 else ""))
        whitening = zca_of(synthetic, source, world)
        result = evaluate_set(synthetic, test, config, device, progress=not args.no_progress and world.is_main, world=world,
                              batched=args.batched_runs, objective=objective, test_transform=whitening and whitening.whiten)
    if world.is_main:
        out = Path(args.out or default_out)
        notes = {**({"learned_lr": learned_lr} if learned_lr else {}), **({"test_whitened": whitening.describe()} if whitening else {})}
        write_json(out, {"set_file": str(args.set), **result, **notes})
        print(format_result(result))
        print(f"wrote {out}")


def add_distill_arguments(parser: argparse.ArgumentParser, argv: list[str] | None) -> None:
    """`--preset` plus one flag per DistillConfig field and per setting of the method `--method` in `argv` names (the
    preset's value when not given); the other methods' settings are accepted but hidden, so that one is refused by name."""
    from .config import PRESETS, DistillConfig, method_of
    from .methods import METHODS

    parser.add_argument("--preset", default="cifar10-ipc10-cpu", help=f"one of {', '.join(PRESETS)} (default cifar10-ipc10-cpu); "
                                                                      "each runs any --method at its shared settings")
    add_runtime_arguments(parser)
    add_dataclass_arguments(parser.add_argument_group("settings (override the preset)"), DistillConfig)
    chosen = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    chosen.add_argument("--method")
    try:
        method = chosen.parse_known_args(sys.argv[1:] if argv is None else argv)[0].method or DistillConfig.method
    except argparse.ArgumentError:  # --method without a value: the main parser says so
        method = DistillConfig.method
    try:
        settings = method_of(method).Settings  # an installed package's method is loaded here
    except UserError:  # refused (unknown, or settings that cannot be flags) once the flags are parsed, in one error line
        method, settings = DistillConfig.method, method_of(DistillConfig.method).Settings
    added = {f.name for f in dataclasses.fields(settings)}
    add_dataclass_arguments(parser.add_argument_group(f"settings of the method {method} (override the preset)"), settings)
    for name in list(METHODS):
        try:
            other = method_of(name).Settings
        except UserError:  # a registered method whose settings cannot be flags breaks no other command
            continue
        add_dataclass_arguments(parser, other, skip=tuple(added), hidden=True)
        added |= {f.name for f in dataclasses.fields(other)}


def distill_config(args: argparse.Namespace):
    from .config import preset
    from .methods import METHODS

    config = preset(args.preset, args.method)
    names = {f.name for f in dataclasses.fields(config)} - {"method", "method_settings"}
    names |= {f.name for method in METHODS.values() for f in dataclasses.fields(method.Settings)}
    return config.changed(**{name: getattr(args, name) for name in sorted(names) if getattr(args, name, None) is not None})


def cmd_distill(args: argparse.Namespace) -> None:
    """`condense distill`, in one process or as one rank of `torchrun ... -m condense distill`."""
    from .distributed import torchrun_world
    from .run import distill
    from .runtime import resolve_device

    config = distill_config(args)
    out = Path(args.out or Path("runs") / (args.preset if config.method == "ncfm" else f"{args.preset}-{config.method}"))
    with torchrun_world(resolve_device(args.device)) as (world, device):
        result = distill(config, out, device, resume=args.resume, progress=not args.no_progress)
    if not world.is_main:
        return
    seconds = sorted(result["seconds_per_iteration"])
    print(f"wrote {out / 'synthetic.safetensors'}: {result['set'].summary()}")
    if seconds:  # a resumed run that had already finished iterates no more
        print(f"median {seconds[len(seconds) // 2]:.2f} s/iteration over {len(seconds)} iterations")
    if result["evaluation"]:
        from .evaluate import format_result

        print(format_result(result["evaluation"]))


def cmd_pretrain(args: argparse.Namespace) -> None:
    """`condense pretrain`, in one process or with the members trained in parallel by `torchrun` ranks."""
    from .distributed import torchrun_world
    from .run import prepare
    from .runtime import resolve_device

    with torchrun_world(resolve_device(args.device)) as (world, device):
        _, _, _, folder = prepare(distill_config(args), device, progress=not args.no_progress, world=world, with_pool=True)
    if not world.is_main:
        return
    manifest = json.loads((folder / "manifest.json").read_text())
    for member in manifest["members"]:
        print(f"member {member['index']}: test accuracy {member.get('test_accuracy', float('nan')):.2f}%, {member['seconds']:.0f} s")
    print(f"pool of {len(manifest['members'])} in {folder}")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser of `condense`; `argv` (default: this process's arguments) names the method whose settings `distill` lists."""
    parser = argparse.ArgumentParser(prog="condense", description="Dataset condensation (NCFM, DANCE, DM or a registered method) and the train-on-small-set, test-on-real evaluation.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")


    distill = commands.add_parser("distill", help="condense a real dataset (NCFM, DANCE, DM or another registered method)")
    distill.add_argument("--out", help="run folder (default runs/<preset>)")
    distill.add_argument("--resume", nargs="?", const=True, default=False, choices=["auto"], metavar="auto",
                         help="continue the run in --out from its last checkpoint; --resume auto: continue it if --out holds a "
                              "checkpoint, start it otherwise (for torchrun --max-restarts N, which restarts every process "
                              "with the same arguments); settings that differ from the run's are refused either way")
    add_distill_arguments(distill, argv)
    distill.set_defaults(func=cmd_distill)

    pretrain = commands.add_parser("pretrain", help="train (or complete) the extractor pool of a preset")
    add_distill_arguments(pretrain, argv)
    pretrain.set_defaults(func=cmd_pretrain)

    evaluate = commands.add_parser("eval", help="train on a set, report final-epoch accuracy on the real test split")
    evaluate.add_argument("set", help="a .safetensors set, a run folder of `condense distill`, a Hub folder of `condense export`, or "
                                      "a plain image-classification dataset (a Hub id or a folder in Hub layout) whose train split is the set")
    evaluate.add_argument("--config", help="the config of a Hub folder (default: its only one)")
    evaluate.add_argument("--batched-runs", action="store_true",
                          help="train the runs at once (stacked weights, one vmapped forward): the same draws, other rounding, which training "
                               "amplifies (cpu protocol: accuracies within 0.1 point); slower on CPU")
    evaluate.add_argument("--split", help="real split to test on (default test); with --holdout, the split the images are held out of "
                                           "(default: the one the set was distilled from)")
    evaluate.add_argument("--holdout", type=int, default=0, metavar="N",
                          help="test on the N images per class held out of the training split (a validation split, as `condense distill "
                               "--holdout` holds them out) instead of the test split; the set must have been distilled with --holdout N or more")
    evaluate.add_argument("--out", help="JSON result (default: <set>.eval.json; for a Hub folder <folder>[-<config>].eval.json beside it)")
    add_eval_arguments(evaluate)
    add_source_arguments(evaluate, required=False)
    evaluate.set_defaults(func=cmd_eval)

    add_set_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_main(build_parser(argv), argv)


if __name__ == "__main__":
    sys.exit(main())
