"""The `downstream` command line: `downstream info SET`."""

from __future__ import annotations

import argparse
import json
import sys

from condense.errors import UserError


def cmd_info(args: argparse.Namespace) -> None:
    from condense.synthetic import SyntheticSet

    synthetic = SyntheticSet.load(args.set)
    print(synthetic.summary())
    counts = synthetic.labels.bincount(minlength=synthetic.num_classes).tolist()
    print("per class: " + ", ".join(f"{name} {count}" for name, count in zip(synthetic.class_names, counts)))
    print(f"mean {list(synthetic.mean)}, std {list(synthetic.std)}")
    if synthetic.evaluation:
        print("evaluation: " + json.dumps(synthetic.evaluation))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="downstream", description="Use condensed sets: inspect them and train on them.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    info = commands.add_parser("info", help="describe a condensed-set file")
    info.add_argument("set", help="a .safetensors set written by condense")
    info.set_defaults(func=cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
