"""The bridge from the settings' dataclasses to the command lines, the runtime flags, and the `main()` both CLIs share.

A field becomes `--its-name` with the field's `metadata["help"]`; booleans get `--x/--no-x`; a field
left off the command line is None in the parsed arguments, so the preset's (or the record's) value stays.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys

from .errors import UserError
from .runtime import is_local
from .source import DataSource

# Old flags that still work (listed after the new one in --help): the setting they set now.
OLD_FLAGS = {"dataset_config": ["--data-config"], "pooling": ["--pool"]}
TYPES = {"int": int, "float": float, "str": str}


def setting(default, help: str):
    """A dataclass field with its command-line help, for the settings classes the flags are derived from."""
    return dataclasses.field(default=default, metadata={"help": help})


def flag(name: str) -> str:
    """The command-line flag of a settings field."""
    return "--" + name.replace("_", "-")


def check_numbers(settings, at_least: dict[str, int], positive: tuple[str, ...] = (), not_negative: tuple[str, ...] = (),
                  fractions: tuple[str, ...] = ()) -> None:
    """Refuse, naming its flag, a counted setting below its least value (None: its default), or a number that is not
    finite, negative, zero where it must be `positive`, or outside [0, 1] for a fraction: such values train nothing or diverge."""
    for name, least in at_least.items():
        value = getattr(settings, name)
        if value is not None and value < least:
            raise UserError(f"{flag(name)} must be at least {least}, got {value}")
    for name in positive + not_negative:
        value = getattr(settings, name)
        if not math.isfinite(value) or value < 0 or (value == 0 and name in positive):
            raise UserError(f"{flag(name)} must be a finite number {'above' if name in positive else 'of at least'} 0, got {value}")
    for name in fractions:
        value = getattr(settings, name)
        if not 0 <= value <= 1:
            raise UserError(f"{flag(name)} must be between 0 and 1, got {value}")


def add_dataclass_arguments(group, cls, skip: tuple[str, ...] = (), flags: dict[str, str] | None = None, hidden: bool = False) -> None:
    """One flag per field of `cls` (but `skip`, and nested settings), named as in `flags` or after the field, help from its
    metadata (`hidden`: left out of --help)."""
    for item in dataclasses.fields(cls):
        if item.name in skip or item.metadata.get("nested"):
            continue
        help = argparse.SUPPRESS if hidden else item.metadata["help"]
        names = [(flags or {}).get(item.name, flag(item.name)), *OLD_FLAGS.get(item.name, [])]
        kind = getattr(item.type, "__name__", str(item.type)).replace(" | None", "")  # a class, or its name as a string annotation
        if kind == "bool":
            group.add_argument(*names, dest=item.name, action=argparse.BooleanOptionalAction, default=None, help=help)
        else:
            group.add_argument(*names, dest=item.name, type=TYPES[kind], default=None, metavar=kind.upper(), help=help)


def add_source_arguments(parser: argparse.ArgumentParser, required: bool) -> None:
    """`--data` and the other `DataSource` settings."""
    group = parser.add_argument_group("real data")
    path = dataclasses.fields(DataSource)[0]
    group.add_argument("--data", required=required, help=path.metadata["help"])
    add_dataclass_arguments(group, DataSource, skip=("path",))


def source_from_args(args: argparse.Namespace, recorded: DataSource | None = None) -> DataSource:
    """The data source the flags name; flags left out keep what `recorded` (e.g. a set's own source) says."""
    settings = {f.name: getattr(args, f.name) for f in dataclasses.fields(DataSource)[1:]}
    if recorded is not None:
        if args.data and is_local(args.data):  # the set's Hub revision does not apply to a local copy
            recorded = dataclasses.replace(recorded, revision=None)
        return recorded.replace(path=args.data, **settings)
    if not args.data:
        raise UserError("--data is needed: a Hub id or a local folder in Hub layout")
    return DataSource(args.data, **settings)


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run_main(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse, run the chosen command's `func`; a UserError is one line on stderr (exit 2), Ctrl-C exits 130."""
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
