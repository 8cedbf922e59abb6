"""A paper preset (default `cifar10-ipc10`) on a GPU, shortened to fit a time budget.

Prints seconds per distillation iteration (median), peak GPU memory while distilling, and final-epoch
accuracy of the initial and distilled sets under the paper's evaluation (epochs and runs can be cut).
Usage: python benchmarks/ncfm_gpu.py --data DIR [--pool-size 20 --pool-epochs 60 --iterations 20000]
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from condense.config import preset
from condense.data import RealData, _stats_for
from condense.distill import make_method
from condense.evaluate import eval_preset, evaluate_set
from condense.flags import run_main
from condense.loop import run_distillation
from condense.pool import build_or_load_pool
from condense.run import pool_spec
from condense.runtime import resolve_device, write_json


def load_split(folder: str, split: str) -> RealData:
    """`load_real`, or, where `datasets` is not installed (the lent GPU machine), `read_parquet_split`."""
    try:
        from condense.data import load_real

        return load_real(folder, split)
    except ImportError:
        return read_parquet_split(folder, split)


def read_parquet_split(folder: str, split: str) -> RealData:
    """A split's parquet file read with pyarrow + PIL; class names from the ClassLabel that `datasets` keeps in the schema."""
    import numpy as np
    import pyarrow.parquet as pq
    from PIL import Image

    path = next(Path(folder).glob(f"**/{split}-*.parquet"))
    parquet = pq.read_table(path)
    table = parquet.to_pydict()
    image_column = next(k for k in table if k != "label")
    pixels = np.stack([np.asarray(Image.open(io.BytesIO(cell["bytes"])).convert("RGB")) for cell in table[image_column]])
    features = json.loads((parquet.schema.metadata or {}).get(b"huggingface", b"{}")).get("info", {}).get("features", {})
    names = features.get("label", {}).get("names") or [str(i) for i in range(max(table["label"]) + 1)]
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
    mean, std = _stats_for(folder, images)
    return RealData(images, torch.tensor(table["label"]), names, mean, std, folder, split)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--preset", default="cifar10-ipc10")
    parser.add_argument("--out", default="benchmarks/runs/ncfm_gpu")
    parser.add_argument("--pool-size", type=int)
    parser.add_argument("--pool-epochs", type=int)
    parser.add_argument("--iterations", type=int)
    parser.add_argument("--eval-epochs", type=int)
    parser.add_argument("--eval-runs", type=int)
    parser.add_argument("--sampler", help="learned (ψ, the paper presets' default) or gaussian")
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--skip-init-eval", action="store_true")
    parser.set_defaults(func=command)
    return run_main(parser, argv)


def command(args: argparse.Namespace) -> None:
    device = resolve_device("auto")
    out = Path(args.out)
    overrides = {"pool_size": args.pool_size, "pool_epochs": args.pool_epochs, "iterations": args.iterations, "sampler": args.sampler}
    overrides = {k: v for k, v in overrides.items() if v}
    config = preset(args.preset).changed(data=args.data, amp=args.amp, channels_last=args.channels_last, **overrides)
    start = time.perf_counter()
    real, test = load_split(args.data, "train"), load_split(args.data, "test")
    print(f"data loaded in {time.perf_counter() - start:.0f} s", flush=True)
    start = time.perf_counter()
    spec = pool_spec(config, real)
    pool = build_or_load_pool(out / "pool", spec, config.pool_size, real, test, device, progress=False)
    pretrain_seconds = time.perf_counter() - start
    manifest = json.loads((out / "pool" / "manifest.json").read_text())
    print(f"pool {config.pool_size} x {config.pool_epochs} epochs in {pretrain_seconds:.0f} s; member accuracies "
          f"{[m['test_accuracy'] for m in manifest['members']]}", flush=True)
    evaluation = eval_preset(config.eval_preset)
    if args.eval_epochs:
        evaluation.train = dataclasses.replace(evaluation.train, epochs=args.eval_epochs)
    if args.eval_runs:
        evaluation.runs = args.eval_runs
    figures = {"config": config.to_dict(), "evaluation": evaluation.to_dict(), "pretrain_seconds": pretrain_seconds,
               "pool_accuracies": [m["test_accuracy"] for m in manifest["members"]], "device": torch.cuda.get_device_name() if device.type == "cuda" else str(device)}
    distiller = make_method(config, real, pool, device)
    if not args.skip_init_eval:
        result = evaluate_set(distiller.synthetic_set(), test, evaluation, device, progress=False)
        figures["init"] = {"accuracy_mean": result["accuracy_mean"], "accuracy_std": result["accuracy_std"]}
        print(f"initial set: {result['accuracy_mean']:.2f} ± {result['accuracy_std']:.2f} %", flush=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seconds = run_distillation(distiller, out / "run", progress=False)
    figures["seconds_per_iteration_median"] = statistics.median(seconds[5:] or seconds)  # after warm-up
    figures["peak_gpu_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    print(f"distilled {config.iterations} iterations: median {figures['seconds_per_iteration_median']:.3f} s/iter, "
          f"peak GPU memory {figures['peak_gpu_memory_gb']} GB", flush=True)
    synthetic = distiller.synthetic_set()
    synthetic.save(out / "synthetic.safetensors")
    result = evaluate_set(synthetic, test, evaluation, device, progress=False)
    figures["distilled"] = {"accuracy_mean": result["accuracy_mean"], "accuracy_std": result["accuracy_std"], "runs": [r["accuracy"] for r in result["runs"]]}
    print(f"distilled set: {result['accuracy_mean']:.2f} ± {result['accuracy_std']:.2f} % "
          f"({evaluation.train.epochs} epochs, {evaluation.runs} runs, final epoch)", flush=True)
    write_json(out / "figures.json", figures)


if __name__ == "__main__":
    sys.exit(main())
