"""One table of CIFAR-10 IPC-10 sets under several evaluation protocols, hard and soft labels (issue 15, item 2).

Rows (`ROWS`): random real IPC 10, herding IPC 10 (iCaRL's greedy mean matching on the teacher's features),
the published NCFM code's initial and 200-iteration sets (../shared/reference_sets), this project's initial
set and its best set (--best, a run folder or set file). Columns: PROTOCOL:LABELS, PROTOCOL one of
condense.evaluate.EVAL_PRESETS, LABELS hard (class labels) or soft (the --teacher's probabilities on every
augmented batch, at --temperature); an optional third part names the objective (`OBJECTIVES`: ce with the
protocol's CutMix, the default; ce-nocutmix; dlb-official and dlb-paper, DLB's two schemes, which drop CutMix;
dlb-official-cutmix, DLB's official scheme with the protocol's CutMix on its new samples).
The random row under a soft column is the baseline every soft-label
figure stands beside: random real images with the same teacher. Each cell: final-epoch test accuracy, mean ±
population std over --runs evaluation runs (seeds 0..runs-1). Cells already in the JSON are kept (the table
can be filled over several invocations). Writes figures.json, table.md and table.png under --out.
Usage:
  python benchmarks/protocols.py --data ../shared/data/cifar10 --pool pools/cifar10-convnet-2x1ep-11d062a7ac \
      --best benchmarks/runs/lead/lr1e-2-seed0 --rows published-200it,ours-best --columns cpu:hard,ncfm:hard,dc:hard
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from condense.baseline import coreset, random_subset
from condense.config import preset
from condense.data import RealData, load_real
from condense.distill import initial_set
from condense.errors import UserError
from condense.evaluate import EVAL_PRESETS, eval_preset, evaluate_set, teacher_files
from condense.flags import check_numbers, run_main
from condense.hub import load_set_source
from condense.pool import load_member
from condense.runtime import read_json, resolve_device, save_figure, write_json
from condense.synthetic import SyntheticSet
from downstream.dlb import DLB

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
PUBLISHED = SHARED / "reference_sets"
ROWS = {
    "random": "random real IPC 10 (seed 0)",
    "herding": "herding IPC 10 (teacher features)",
    "published-init": "published NCFM code, initial set",
    "published-200it": "published NCFM code, 200 iterations",
    "ours-init": "this project, initial set (preset defaults)",
    "ours-best": "this project, best set (--best)",
}


def build_row(name: str, args, real: RealData, device: torch.device) -> SyntheticSet:
    if name == "random":
        return random_subset(real, 10, seed=0)
    if name == "herding":
        return coreset(real, 10, "herding", load_member(args.teacher, device), device, Path(args.teacher).name)
    if name.startswith("published-"):
        return SyntheticSet.load(PUBLISHED / published_file(name))
    if name == "ours-init":
        return initial_set(dataclasses.replace(preset("cifar10-ipc10-cpu"), data=args.data), real)
    return load_set_source(args.best)


def published_file(row: str) -> str:
    """The file of a published-* row in ../shared/reference_sets."""
    return f"published_ncfm_cifar10_ipc10_cpu_{row.split('-')[1]}.safetensors"


# The objective part of a column: (DLB scheme or None for cross-entropy, CutMix kept)
OBJECTIVES = {"ce": (None, True), "ce-nocutmix": (None, False), "dlb-official": ("official", False), "dlb-paper": ("paper", False),
              "dlb-official-cutmix": ("official", True)}


def table(figures: dict) -> str:
    columns = figures["columns"]
    lines = ["| set | " + " | ".join(columns) + " |", "| --- |" + " --- |" * len(columns)]
    for row in figures["rows"]:
        cells = figures["cells"].get(row, {})
        shown = [f"{cells[c]['accuracy_mean']:.2f} ± {cells[c]['accuracy_std']:.2f}" if c in cells else "–" for c in columns]
        lines.append(f"| {ROWS[row]} | " + " | ".join(shown) + " |")
    return "\n".join(lines)


def heatmap(figures: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    rows, columns = figures["rows"], figures["columns"]
    values = [[figures["cells"].get(r, {}).get(c, {}).get("accuracy_mean", float("nan")) for c in columns] for r in rows]
    figure, axes = plt.subplots(figsize=(1.6 * len(columns) + 4, 0.6 * len(rows) + 1.5))
    image = axes.imshow(values, cmap="viridis", aspect="auto")
    axes.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
    axes.set_yticks(range(len(rows)), [ROWS[r] for r in rows])
    for i, line in enumerate(values):
        for j, value in enumerate(line):
            if value == value:
                axes.text(j, i, f"{value:.1f}", ha="center", va="center", color="white")
    figure.colorbar(image, label="final-epoch test accuracy (%)")
    axes.set_title(f"CIFAR-10 IPC 10, mean of {figures['runs']} evaluation runs")
    figure.tight_layout()
    save_figure(figure, path)


def build_parser() -> argparse.ArgumentParser:
    """The command line, with `run` as its command (for `condense.flags.run_main`, as the CLIs)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--data", default=str(SHARED / "data" / "cifar10"))
    parser.add_argument("--out", default="benchmarks/runs/x/protocols")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--pool", default=str(ROOT / "pools" / "cifar10-convnet-2x1ep-11d062a7ac"), help="the preset's pool folder")
    parser.add_argument("--teacher", help="soft labels' teacher: a member file, several joined by commas or a pool folder "
                        "(default: the pool's first trained member); herding uses the first file's features")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--best", help="this project's best set: a run folder or set file")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, from {', '.join(ROWS)}")
    parser.add_argument("--columns", default=",".join(f"{p}:{k}" for p in ("cpu", "ncfm", "dc") for k in ("hard", "soft")),
                        help=f"comma-separated PROTOCOL:LABELS, PROTOCOL from {', '.join(EVAL_PRESETS)}, LABELS hard or soft")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--epochs", type=int, help="override every protocol's epochs (300 at CPU scale)")
    parser.set_defaults(func=run)
    return parser


def column_parts(column: str) -> tuple[str, str, str]:
    """PROTOCOL, LABELS and OBJECTIVE (default ce) of a column's name; a malformed name is a UserError."""
    parts = column.split(":")
    protocol, labels, objective = (*parts, "ce")[:3] if len(parts) in (2, 3) else (None, None, None)
    if protocol not in EVAL_PRESETS or labels not in ("hard", "soft") or objective not in OBJECTIVES:
        raise UserError(f"column {column!r}: use PROTOCOL:hard or PROTOCOL:soft[:OBJECTIVE] with PROTOCOL from {', '.join(EVAL_PRESETS)} "
                        f"and OBJECTIVE from {', '.join(OBJECTIVES)}")
    return protocol, labels, objective


def check_inputs(args, rows: list[str], columns: list[str]) -> None:
    """Before any data is loaded: the settings, and every file the rows and columns read (a missing one stopped the
    table with a traceback, after the cells before it)."""
    check_numbers(args, {"runs": 1, "epochs": 1}, positive=("temperature",))
    unknown = [row for row in rows if row not in ROWS]
    if unknown:
        raise UserError(f"unknown rows {unknown}; use {', '.join(ROWS)}")
    labels = {column_parts(column)[1] for column in columns}
    if "ours-best" in rows and not args.best:
        raise UserError("row ours-best needs --best (a run folder or set file)")
    needed = [PUBLISHED / published_file(row) for row in rows if row.startswith("published-")]
    needed += [Path(args.best)] if "ours-best" in rows else []
    if "herding" in rows or "soft" in labels:
        needed += [Path(name) for name in teacher_files(args.teacher)]
    missing = [str(path) for path in needed if not path.exists()]
    if missing:
        raise UserError(f"missing {', '.join(missing)}: the published sets are in ../shared/reference_sets, the teacher is --teacher "
                        "(or --pool's first member) and the best set --best; pass existing paths or leave their rows and columns out")


def read_figures(path: Path) -> dict:
    """The figures a table's earlier invocations wrote, checked to be of the shape `write_outputs` writes."""
    figures = read_json(path, "figures file of benchmarks/protocols.py")
    cells = figures.get("cells") if isinstance(figures, dict) else None
    if not (isinstance(cells, dict) and isinstance(figures.get("rows"), list) and isinstance(figures.get("columns"), list)
            and all(isinstance(row, dict) and all(isinstance(cell, dict) and _is_number(cell.get("accuracy_mean")) and _is_number(cell.get("accuracy_std"))
                                                  for cell in row.values()) for row in cells.values())):
        raise UserError(f"{path} is not a figures file of benchmarks/protocols.py (rows, columns and cells); delete it or choose another --out")
    return figures


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def run(args) -> None:
    args.teacher = args.teacher or str(Path(args.pool) / "member-000-trained.safetensors")
    device, out = resolve_device(args.device), Path(args.out)
    rows, columns = args.rows.split(","), args.columns.split(",")
    check_inputs(args, rows, columns)
    previous = out / "figures.json"
    figures = read_figures(previous) if previous.is_file() else {"rows": [], "columns": [], "cells": {}}
    settings = {"teacher": args.teacher, "temperature": args.temperature, "runs": args.runs, "epochs": args.epochs, "best": args.best,
                "data": args.data}
    if figures.get("settings", settings) != settings:
        raise UserError(f"{previous} holds figures of other settings ({figures['settings']}); choose another --out")
    figures.update(settings=settings, runs=args.runs, device=str(device), torch_threads=torch.get_num_threads())
    join_layout(figures, rows, columns)
    real, test = load_real(args.data, "train"), load_real(args.data, "test")
    for row in rows:
        synthetic = build_row(row, args, real, device)
        for column in columns:
            if column in figures["cells"].get(row, {}):
                continue
            protocol, labels, objective = column_parts(column)
            config = eval_preset(protocol)
            config.runs = args.runs
            config.train.epochs = args.epochs or config.train.epochs
            if labels == "soft":
                config.teacher, config.train.temperature = args.teacher, args.temperature
            scheme, cutmix = OBJECTIVES[objective]
            if not cutmix:
                config.train.cutmix_p = 0.0
            result = evaluate_set(synthetic, test, config, device, progress=sys.stderr.isatty(), objective=DLB(scheme=scheme) if scheme else None)
            figures["cells"].setdefault(row, {})[column] = {
                "accuracy_mean": result["accuracy_mean"], "accuracy_std": result["accuracy_std"], "runs": [r["accuracy"] for r in result["runs"]],
                "labels": result["labels"], "protocol": result["protocol"], "set": result["set"]}
            print(f"{ROWS[row]} | {column}: {result['accuracy_mean']:.2f} ± {result['accuracy_std']:.2f} %", flush=True)
            write_outputs(figures, out)
    write_outputs(figures, out)
    print(table(figures))


def main(argv: list[str] | None = None) -> int:
    return run_main(build_parser(), argv)


def join_layout(figures: dict, rows: list[str], columns: list[str]) -> None:
    """`figures`' rows and columns joined with `rows` and `columns` (rows in the canonical order, columns as first seen)."""
    figures["rows"] = [row for row in ROWS if row in figures["rows"] + rows]
    figures["columns"] = list(dict.fromkeys(figures["columns"] + columns))


def write_outputs(figures: dict, out: Path) -> None:
    """figures.json, table.md and table.png, after every cell (a long table keeps what it finished).

    Cells another invocation wrote into the same figures.json since this one read it are kept: two invocations
    filling one table side by side lose nothing (`figures` gains their cells)."""
    previous = out / "figures.json"
    if previous.is_file():
        written = read_figures(previous)
        for row, cells in written["cells"].items():
            figures["cells"].setdefault(row, {}).update({c: v for c, v in cells.items() if c not in figures["cells"][row]})
        join_layout(figures, written["rows"], written["columns"])
    write_json(previous, figures)
    (out / "table.md").write_text(table(figures) + "\n")
    heatmap(figures, out / "table.png")


if __name__ == "__main__":
    sys.exit(main())
