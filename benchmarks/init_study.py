"""The initialisation gap (issue 15, item 3): evaluations of initial sets only, no distillation.

Each row is the 0-iteration set of `cifar10-ipc10-cpu` (IPC 10, factor 2: 40 real images per class, each
downsized into a 16x16 tile) under one resize mode and one choice of images (random, seeded, or each class's
first in dataset order, as the published code), evaluated under one protocol (default `cpu`, 2 runs, final
epoch). Resize modes that give the same canvases as an earlier row (bilinear = area at factor 2) are not
trained again: the row says which one it equals. With --reference FILE, that set is evaluated beside them.
Writes JSON after every row. Usage:
  python benchmarks/init_study.py --data ../shared/data/cifar10 --out benchmarks/runs/x/init [--reference SET]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from condense.data import load_real
from condense.distill import initial_set, preset
from condense.evaluate import eval_preset, evaluate_set
from condense.flags import run_main
from condense.formation import RESIZE_MODES
from condense.runtime import resolve_device, write_json
from condense.synthetic import SyntheticSet

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--out", default="benchmarks/runs/x/init")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--protocol", default="cpu", help="evaluation protocol (condense.evaluate.EVAL_PRESETS)")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--rows", default="first:nearest,random:area,first:area,random:nearest,first:bilinear-antialias,"
                        "random:bilinear-antialias,random:bilinear",
                        help="IMAGES:RESIZE pairs, IMAGES random or first, RESIZE one of " + ", ".join(RESIZE_MODES))
    parser.add_argument("--reference", help="a set file to evaluate beside the rows (the published code's initial set)")
    parser.set_defaults(func=command)
    return run_main(parser, argv)


def command(args: argparse.Namespace) -> None:
    device, out = resolve_device(args.device), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    real, test = load_real(args.data, "train"), load_real(args.data, "test")
    evaluation = eval_preset(args.protocol)
    evaluation.runs = args.runs
    base = dataclasses.replace(preset("cifar10-ipc10-cpu"), data=args.data)
    figures = {"protocol": args.protocol, "evaluation": evaluation.to_dict(), "device": str(device),
               "torch_threads": torch.get_num_threads(), "rows": []}
    seen: dict[str, tuple[torch.Tensor, str]] = {}

    def record(name: str, synthetic: SyntheticSet, **extra) -> None:
        result = evaluate_set(synthetic, test, evaluation, device, progress=sys.stderr.isatty())
        runs = [r["accuracy"] for r in result["runs"]]
        figures["rows"].append({"set": name, "accuracy_mean": result["accuracy_mean"], "accuracy_std": result["accuracy_std"], "runs": runs, **extra})
        print(f"{name}: {result['accuracy_mean']:.2f} ± {result['accuracy_std']:.2f} % {runs}", flush=True)
        write_json(out / "figures.json", figures)

    for row in args.rows.split(","):
        images, _, resize = row.partition(":")
        synthetic = initial_set(dataclasses.replace(base, init_images=images, init_resize=resize), real)
        same = next((name for name, (canvases, _) in seen.items() if torch.allclose(canvases, synthetic.canvases, atol=1e-6)), None)
        if same is not None:
            figures["rows"].append({"set": row, "same_canvases_as": same})
            print(f"{row}: the same canvases as {same}", flush=True)
            write_json(out / "figures.json", figures)
            continue
        seen[row] = (synthetic.canvases, row)
        synthetic.save(out / f"{images}-{resize}.safetensors")
        record(row, synthetic, init_images=images, init_resize=resize)
    if args.reference:
        record(f"reference {Path(args.reference).name}", SyntheticSet.load(args.reference), file=args.reference)


if __name__ == "__main__":
    sys.exit(main())
