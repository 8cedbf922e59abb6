"""The `condense` commands that make and move sets: baseline, import, export and push (`add_set_commands`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .baseline import CORESETS
from .errors import UserError
from .flags import add_source_arguments, source_from_args


def cmd_baseline(args: argparse.Namespace) -> None:
    from .baseline import coreset, random_subset
    from .pool import load_member, member_spec
    from .run import check_teacher
    from .runtime import resolve_device

    if args.kind != "random" and not args.network:
        raise UserError(f"{args.kind} chooses real images by a network's features: pass --network, a trained pool member "
                        "(e.g. pools/<pool>/member-000-trained.safetensors; `condense pretrain` builds a pool)")
    if args.kind == "random" and args.network:
        raise UserError("a random subset uses no network; drop --network (or choose herding or kcenter)")
    if args.network:
        member_spec(args.network)  # readable, and a pool member: checked before the data is loaded
    source = source_from_args(args)
    real = source.load(args.split)
    if args.kind == "random":
        synthetic = random_subset(real, args.ipc, args.seed)
    else:
        device = resolve_device(args.device)
        check_teacher(args.network, real, device, "--network")
        synthetic = coreset(real, args.ipc, args.kind, load_member(args.network, device), device, Path(args.network).name)
    synthetic.config.update(data=args.data, **source.options())
    out = Path(args.out or f"{Path(args.data.rstrip('/')).name}-{args.kind}-ipc{args.ipc}.safetensors")
    synthetic.save(out)
    print(f"wrote {out}: {synthetic.summary()}")


def cmd_import(args: argparse.Namespace) -> None:
    from .importers import import_set

    numbers = {}
    for name in ("mean", "std"):
        text = getattr(args, name)
        try:
            numbers[name] = tuple(float(v) for v in text.split(",")) if text else None
        except ValueError:
            raise UserError(f"--{name} takes numbers separated by commas, one per channel, got {text!r}") from None
    if (numbers["mean"] is None) != (numbers["std"] is None):
        raise UserError("--mean and --std go together: pass both, or neither (the method's own values for the dataset)")
    source = source_from_args(args)
    real = source.load(args.split)
    synthetic = import_set(args.source, args.format, real, ipc=args.ipc, factor=args.factor, experiment=args.experiment, lr=args.lr,
                           zca=args.zca, to_pixels=args.to_pixels, **numbers)
    synthetic.config["import"].update(data=args.data if not Path(args.data).exists() else Path(args.data.rstrip("/")).name, split=args.split)
    out = Path(args.out or f"{Path(args.source.rstrip('/')).stem}-{args.format}.safetensors")
    synthetic.save(out)
    print(f"wrote {out}: {synthetic.summary()} (imported from {Path(args.source).name}, image space {synthetic.image_space})")


def add_import_parser(commands) -> None:
    """`condense import SOURCE --format F --data D`."""
    from .importers import LAYOUTS

    parser = commands.add_parser("import", help="read a set another method published (DC/DSA/DM, DataDAM, IDC, NCFM, DD-Ranking, image folders)")
    parser.add_argument("source", help="the file (or folder, for ddranking and imagefolder) the method wrote")
    parser.add_argument("--format", required=True, choices=[*LAYOUTS, "auto"],
                        help="its layout (../shared/FORMATS.md): " + "; ".join(f"{name}: {layout.method}" for name, layout in LAYOUTS.items())
                             + "; auto: where the file's shape says it alone (else an error naming the candidates)")
    parser.add_argument("--factor", type=int, help="idc, ncfm: the multi-formation factor (IDC: in the run's folder name; NCFM: 2)")
    parser.add_argument("--experiment", type=int, default=-1, help="dc: which experiment of the file (default -1, the last, as IDC reads them)")
    parser.add_argument("--mean", help="the mean the method normalised with, per channel, comma-separated (default: its value for the dataset)")
    parser.add_argument("--std", help="the std the method normalised with (with --mean)")
    parser.add_argument("--ipc", type=int, help="images per class as stored (default: from the set)")
    parser.add_argument("--lr", type=float, help="mtt: the lr it learned (MTT logs it to wandb only); kept with the set, "
                                                 "`condense eval` trains with it under SGD protocols")
    parser.add_argument("--zca", action="store_true", help="mtt: the run used --zca (its images are in ZCA space); datm always does")
    parser.add_argument("--to-pixels", action="store_true", help="a ZCA-space set (mtt --zca, datm): refit the whitening on --data's "
                                                                 "training images (eps 0.1, as those methods fit it) and map the set back "
                                                                 "to pixels, not clamped (evaluating in ZCA space itself: not supported yet)")
    parser.add_argument("--split", default="train", help="the split of --data the set was distilled from (its classes, image size)")
    parser.add_argument("--out", help="output .safetensors (default: <source>-<format>.safetensors)")
    add_source_arguments(parser, required=True)
    parser.set_defaults(func=cmd_import)


def cmd_export(args: argparse.Namespace) -> None:
    from .hub import export

    written = export(args.source, args.out, args.config, repo_id=args.repo_id, source_id=args.source_id,
                     license=args.license, pretty_name=args.pretty_name)
    print(f"wrote {written} and {Path(args.out) / 'README.md'}")
    print(f"check: datasets.load_dataset({str(args.out)!r}, {written.name!r})")


def cmd_push(args: argparse.Namespace) -> None:
    from .hub import push

    url = push(args.folder, args.repo, private=args.private, revision=args.revision)
    print(f"pushed {args.folder} to {args.repo}: {url}")


def add_baseline_parser(commands) -> None:
    """`condense baseline random|herding|kcenter`."""
    baseline = commands.add_parser("baseline", help="make a baseline set: random real images, or the coresets herding and k-center")
    baseline.add_argument("kind", choices=["random", *CORESETS],
                          help="random: IPC random real images per class; herding: the images whose feature mean best follows the "
                               "class's (iCaRL); kcenter: greedy k-center cover of the class's features (both by --network)")
    baseline.add_argument("--ipc", type=int, default=10, help="images per class (default 10)")
    baseline.add_argument("--seed", type=int, default=0, help="seed of the random subset")
    baseline.add_argument("--network", help="herding, kcenter: the network whose features rank the images (a trained pool member file)")
    baseline.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (herding, kcenter)")
    baseline.add_argument("--split", default="train")
    baseline.add_argument("--out", help="output .safetensors (default: <dataset>-<kind>-ipc<K>.safetensors)")
    add_source_arguments(baseline, required=True)
    baseline.set_defaults(func=cmd_baseline)


def add_set_commands(commands) -> None:
    """The parsers of baseline, import, export and push."""
    add_baseline_parser(commands)
    add_import_parser(commands)
    export = commands.add_parser("export", help="write or update a Hub folder: parquet rows, safetensors, preview, card")
    export.add_argument("source", help="a run folder of `condense distill` or a .safetensors set")
    export.add_argument("--out", required=True, help="the Hub folder (created if needed; other configs in it are kept)")
    export.add_argument("--config", help="config name (default ipc<K>)")
    export.add_argument("--repo-id", help="OWNER/NAME shown in the card's loading examples (default: kept, or OWNER/<folder name>)")
    export.add_argument("--source-id", help="Hub id of the source dataset for the card (default: the set's source when it is a Hub id)")
    export.add_argument("--license", help="card license (default: kept, or 'other'; follow the source dataset's terms)")
    export.add_argument("--pretty-name", help="card title")
    export.set_defaults(func=cmd_export)

    push = commands.add_parser("push", help="upload a Hub folder to a dataset repo in one commit")
    push.add_argument("folder", help="a folder written by `condense export`")
    push.add_argument("--repo", required=True, help="OWNER/NAME of the dataset repo (created if missing)")
    push.add_argument("--private", action="store_true", help="create the repo private")
    push.add_argument("--revision", help="branch to push to (created from main if missing)")
    push.set_defaults(func=cmd_push)
