"""A paper preset (default `cifar10-ipc10`) end to end in one command: pool, distillation, evaluation, Hub export.

Prints each phase's seconds, seconds per distillation iteration (median), peak GPU memory and the final-epoch
accuracy (mean ± population std over the evaluation runs); writes them to OUT/figures.json.
OUT holds pool/ (the extractor pool), run/ (config.json, log.jsonl, checkpoint.pt, synthetic.safetensors),
eval.json and hub/ (the exported Hub folder). The pool members and the evaluation runs are trained at once
(batched) unless --no-batched-pool / --no-batched-eval.

--budget SECONDS stops at the first safe point after the budget is spent (after each saved epoch of the pool,
after the pool, at a distillation checkpoint, before the evaluation), once this command has done some work, and
leaves OUT resumable: the same command again continues where it stopped. The pool saves every epoch, so a
command killed by a time limit loses at most one epoch of it; the evaluation, once begun, runs to its end, so
leave the command's own time limit some room above the budget.
On CUDA the real uint8 images stay on the GPU (--no-real-on-device keeps them on the host), so a step's real
batch is converted to floats there, not on the host.
--tiny: seconds-long sizes (a few images per class, two tiny networks, a few iterations) for a CPU check.
Usage: python benchmarks/paper_gpu.py --data ../shared/data/cifar10 [--out DIR] [--budget 480]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from condense.config import preset
from condense.data import RealData
from condense.distill import make_method
from condense.distributed import World
from condense.errors import UserError
from condense.evaluate import eval_preset, evaluate_set, evaluation_summary
from condense.flags import run_main
from condense.loop import Callback, run_distillation
from condense.pool import MANIFEST, build_or_load_pool
from condense.run import pool_spec
from condense.runfolder import check_run_folder, claim_run_folder, load_checkpoint
from condense.runtime import read_json, resolve_device, write_json
from condense.synthetic import SyntheticSet

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is no package: ncfm_gpu's reader is imported from beside

# --tiny: what a CPU does in seconds (ipc 1 x factor 2 needs 4 real images per class; ψ splits 16 frequencies)
TINY = {"width": 8, "pool_size": 2, "pool_epochs": 1, "real_batch": 4, "frequencies": 16, "ipc": 1, "iterations": 6,
        "checkpoint_every": 2, "log_every": 1}
TINY_PER_CLASS = {"train": 8, "test": 8}
TINY_EVAL = {"epochs": 2, "runs": 2, "width": 8}


class BudgetSpent(Exception):
    """Raised at a safe point once the budget is spent: the run folder holds everything done so far."""


class Budget:
    """Seconds this command may work; spent only once it has done some work (so every command makes progress)."""

    def __init__(self, seconds: float | None):
        self.seconds, self.start, self.worked = seconds, time.perf_counter(), False

    def spent(self) -> bool:
        return self.seconds is not None and self.worked and time.perf_counter() - self.start > self.seconds

    def check(self, where: str) -> None:
        if self.spent():
            raise BudgetSpent(where)

    def progressed(self, where: str) -> None:
        """Work was done and saved at `where`: a safe point."""
        self.worked = True
        self.check(where)


class TimeBudget(Callback):
    """Ends the command (BudgetSpent) before a step once the budget is spent, where the last checkpoint holds the current
    state; keeps each step's seconds."""

    def __init__(self, budget: Budget):
        self.budget, self.step_seconds = budget, []

    def stop(self, distiller) -> bool:
        if distiller.iteration % distiller.config.checkpoint_every == 0:
            self.budget.check(f"distillation, at the checkpoint of iteration {distiller.iteration}")
        return False

    def on_step(self, distiller, record: dict) -> None:
        self.step_seconds.append(record["seconds"])
        self.budget.worked = True


def residence(on_device: bool | None, device: torch.device) -> torch.device:
    """Where the real uint8 splits live: on the device if asked, by default on CUDA (a paper step converts 10,240 real
    images to floats: 122 ms on a host CPU), else on the host."""
    return device if (device.type == "cuda" if on_device is None else on_device) else torch.device("cpu")


def prepared(data: RealData, per_class: int | None, device: torch.device) -> RealData:
    """The split with only the first `per_class` images of every class (--tiny), its uint8 images on `device` (--real-on-device)."""
    keep = torch.cat([indices[:per_class] for indices in data.by_class]).sort().values if per_class else slice(None)  # a view: no copy
    return RealData(data.images[keep].to(device), data.labels[keep], data.class_names, data.mean, data.std, data.source, data.split, data.revision)


class Phases:
    """Seconds and peak GPU memory of each phase, summed over the commands that resumed one another (OUT/figures.json)."""

    def __init__(self, path: Path, device: torch.device):
        self.path, self.device = path, device
        self.figures = json.loads(path.read_text()) if path.is_file() else {"phases": {}}

    def begin(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        return time.perf_counter()

    def end(self, name: str, began: float, **figures) -> dict:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        phase = self.figures["phases"].setdefault(name, {"seconds": 0.0, "commands": 0})
        phase["seconds"] += time.perf_counter() - began
        phase["commands"] += 1
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated() / 2**30
            phase["peak_gpu_memory_gb"] = max(peak, phase.get("peak_gpu_memory_gb", 0.0))
        phase.update(figures)
        self.save()
        return phase

    def save(self) -> None:
        write_json(self.path, self.figures)


def describe(name: str, phase: dict) -> str:
    memory = f"peak GPU memory {phase['peak_gpu_memory_gb']:.2f} GB" if "peak_gpu_memory_gb" in phase else "no GPU"
    return f"{name:<8} {phase['seconds']:>8.1f} s  {memory}  " + ", ".join(f"{k}={v}" for k, v in phase.items()
                                                                      if k not in ("seconds", "peak_gpu_memory_gb", "commands"))


def settings(args: argparse.Namespace):
    """The distillation and evaluation settings: the preset, --tiny's sizes, and the flags given."""
    overrides = {"pool_size": args.pool_size, "pool_epochs": args.pool_epochs, "iterations": args.iterations, "amp": args.amp,
                 "channels_last": args.channels_last, "compile": args.compile}
    config = preset(args.preset)
    given = {k: v for k, v in overrides.items() if v is not None}  # over --tiny's sizes
    config = config.changed(data=args.data, batched_pool=args.batched_pool, **{**(TINY if args.tiny else {}), **given})
    evaluation = eval_preset(config.eval_preset)
    epochs, runs = (TINY_EVAL["epochs"], TINY_EVAL["runs"]) if args.tiny else (evaluation.train.epochs, evaluation.runs)
    evaluation.train = dataclasses.replace(evaluation.train, epochs=args.eval_epochs or epochs)
    evaluation.runs = args.eval_runs or runs
    if args.tiny:
        evaluation.net_options = {**evaluation.net_options, "width": TINY_EVAL["width"]}
    return config, evaluation


def check_packages() -> None:
    """Before any work: the run folder's lock needs filelock and the export needs datasets (a bare GPU machine may lack them)."""
    import importlib.util

    missing = [name for name in ("filelock", "datasets", "safetensors") if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(f"benchmarks/paper_gpu.py needs {', '.join(missing)}, not installed here; install them (or put their wheels "
                        "on the machine and pip install those) and run again")


def check_evaluation(path: Path, evaluation) -> None:
    """An evaluation already in OUT must be the one asked for: a rerun with other evaluation settings would otherwise
    report the earlier figures as its own, complete."""
    if not path.is_file():
        return
    recorded = read_json(path, "evaluation result")
    recorded = recorded.get("protocol") if isinstance(recorded, dict) else None
    asked = json.loads(json.dumps(evaluation.to_dict()))  # as it reads back from JSON (tuples as lists)
    if recorded != asked:
        changed = sorted(key for key in asked if not isinstance(recorded, dict) or recorded.get(key) != asked[key])
        raise UserError(f"{path} holds an evaluation with other settings ({', '.join(changed)} differ, e.g. --eval-epochs or "
                        f"--eval-runs); delete it to evaluate again with these, or choose another --out")


def run(args: argparse.Namespace) -> dict:
    check_packages()
    budget, device, out = Budget(args.budget), resolve_device(args.device), Path(args.out)
    config, evaluation = settings(args)
    check_evaluation(out / "eval.json", evaluation)
    run_folder = out / "run"
    progress = not args.no_progress
    with claim_run_folder(run_folder, World()):
        phases = Phases(out / "figures.json", device)
        phases.figures.update(device=torch.cuda.get_device_name() if device.type == "cuda" else str(device), complete=False)
        began = phases.begin()
        from ncfm_gpu import load_split

        resident = residence(args.real_on_device, device)
        real, test = (prepared(load_split(args.data, split), TINY_PER_CLASS[split] if args.tiny else None, resident) for split in ("train", "test"))
        print(describe("data", phases.end("data", began, train_images=len(real), test_images=len(test), real_images_on=str(resident))),
              flush=True)

        spec, pool_folder = pool_spec(config, real), out / "pool"
        manifest = pool_folder / MANIFEST
        missing = config.pool_size - (len(json.loads(manifest.read_text())["members"]) if manifest.is_file() else 0)
        began = phases.begin()
        try:
            pool = build_or_load_pool(pool_folder, spec, config.pool_size, real, test, device, progress, batched=config.batched_pool,
                                      on_saved=lambda where: budget.progressed(f"in the pool, {where}"))
        except BudgetSpent:
            phases.end("pool", began)  # its seconds so far: the next command adds the rest
            raise
        accuracies = [m.get("test_accuracy") for m in json.loads(manifest.read_text())["members"]]
        print(describe("pool", phases.end("pool", began, members=config.pool_size, epochs=config.pool_epochs, batched=config.batched_pool,
                                          member_test_accuracy_mean=round(statistics.fmean(accuracies), 2))), flush=True)
        budget.worked = budget.worked or missing > 0
        budget.check("after the pool")

        resume = (run_folder / "config.json").is_file()
        check_run_folder(run_folder, config, resume)
        distiller, timer = make_method(config, real, pool, device), TimeBudget(budget)
        if (run_folder / "checkpoint.pt").is_file():
            load_checkpoint(distiller, run_folder / "checkpoint.pt")
        write_json(run_folder / "config.json", {**config.to_dict(), "resolved_data": real.source, "resolved_pool_folder": str(pool_folder)})
        began, first = phases.begin(), distiller.iteration
        try:
            run_distillation(distiller, run_folder, progress, [timer])
        finally:
            steps = timer.step_seconds[5:] or timer.step_seconds  # after warm-up
            previous = phases.figures["phases"].get("distill", {}).get("s_per_iteration_median")
            phases.end("distill", began, iterations_done=distiller.iteration, iterations=config.iterations,
                       s_per_iteration_median=statistics.median(steps) if steps else previous)
        print(describe("distill", phases.figures["phases"]["distill"]), flush=True)
        set_file = run_folder / "synthetic.safetensors"
        if first < distiller.iteration or not set_file.is_file():
            distiller.synthetic_set().save(set_file)
        budget.check("before the evaluation")

        if not (out / "eval.json").is_file():
            began = phases.begin()
            synthetic = SyntheticSet.load(set_file)
            result = evaluate_set(synthetic, test, evaluation, device, progress, batched=args.batched_eval)
            synthetic.evaluation = evaluation_summary(result)
            synthetic.save(set_file)  # the exported card shows the figures
            write_json(out / "eval.json", result)
            budget.worked = True
            phases.end("eval", began, runs=evaluation.runs, epochs=evaluation.train.epochs, batched=args.batched_eval,
                       accuracy_mean=round(result["accuracy_mean"], 2), accuracy_std=round(result["accuracy_std"], 2))
        print(describe("eval", phases.figures["phases"]["eval"]), flush=True)

        from condense.hub import export

        began = phases.begin()
        config_folder = export(set_file, out / "hub", f"ipc{config.ipc}")
        print(describe("export", phases.end("export", began, folder=str(config_folder))), flush=True)
        phases.figures["complete"] = True
        phases.figures["total_seconds"] = sum(phase["seconds"] for phase in phases.figures["phases"].values())
        phases.save()
        return phases.figures


def build_parser() -> argparse.ArgumentParser:
    """The command line, with `command` as its command (for `condense.flags.run_main`, as the CLIs)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a local folder in Hub layout (../shared/data/cifar10)")
    parser.add_argument("--preset", default="cifar10-ipc10")
    parser.add_argument("--out", default="benchmarks/runs/paper_gpu")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--budget", type=float, help="seconds; stop at the next safe point after them (run again to continue)")
    parser.add_argument("--tiny", action="store_true", help="seconds-long sizes for a CPU check")
    parser.add_argument("--batched-pool", action=argparse.BooleanOptionalAction, default=True, help="train the pool members at once")
    parser.add_argument("--batched-eval", action=argparse.BooleanOptionalAction, default=True, help="train the evaluation runs at once")
    parser.add_argument("--pool-size", type=int)
    parser.add_argument("--pool-epochs", type=int)
    parser.add_argument("--iterations", type=int)
    parser.add_argument("--eval-epochs", type=int)
    parser.add_argument("--eval-runs", type=int)
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None, help="bf16 autocast of the real-image forward")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile the matcher's features")
    parser.add_argument("--real-on-device", action=argparse.BooleanOptionalAction, default=None,
                        help="keep the real uint8 images on the device (no host conversion per step); default: on CUDA")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=command)
    return parser


def parse(argv: list[str] | None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def command(args: argparse.Namespace) -> None:
    """The whole run; a stop by the budget ends it normally (exit 0): the same command continues."""
    try:
        figures = run(args)
    except BudgetSpent as stop:
        print(f"stopped by the budget ({args.budget:g} s) {stop}; run the same command again to continue", flush=True)
        return
    print(f"complete: {figures['total_seconds']:.1f} s in all (phases summed over the commands that made it)", flush=True)


def main(argv: list[str] | None = None) -> int:
    return run_main(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
