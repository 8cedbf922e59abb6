"""The methods table (BENCHMARKS.md): every method and baseline at a preset's compute, several protocols, and the
methods' seconds per iteration side by side.

Rows: the distillation methods (`ncfm`, `dance`, `dm`, and `ncfm`/`dance` without calibration) run at the preset's
shared settings (the same pool, iterations, real batch, IPC, factor) with hard labels; the coresets `herding`
and `kcenter` on trained pool member `seed` (mod the pool size); `random` real images (seed `seed`). Each row is
made once per seed and evaluated under each of its protocols (`evaluate_set`, final-epoch accuracy, runs paired
across rows); a cell's figure is the mean ± population std over all its (seed, run) pairs, each seed's mean beside it.

Every set, run folder and evaluation is kept under --out as it finishes, and a cell already there is not redone:
the same command continues a partial table. Two processes with the same command share the work (each task is
taken under a lock), e.g. one per core with OMP_NUM_THREADS=1. `--table` only writes the table from what is there.
Writes OUT/methods.json, OUT/methods.md and OUT/methods.png.

    python benchmarks/methods.py --data ../shared/data/cifar10 --out benchmarks/runs/methods/cifar10
    python benchmarks/methods.py --preset mnist-ipc10-cpu --data ../shared/data/mnist --rows ncfm,dance,dm --protocols cpu \\
        --out benchmarks/runs/methods/mnist
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

from condense.baseline import coreset, random_subset
from condense.config import SHARED_SETTINGS, DistillConfig, parse_setting, preset
from condense.distill import make_method
from condense.errors import UserError
from condense.evaluate import eval_preset, evaluate_set
from condense.flags import run_main
from condense.loop import run_distillation
from condense.methods import method_class
from condense.pool import load_member
from condense.run import prepare
from condense.runfolder import check_run_folder, load_checkpoint
from condense.runtime import resolve_device, write_json
from condense.synthetic import SyntheticSet

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"
# Each row: the method and its settings over the preset's, or a baseline; and the protocols it is evaluated under.
ROWS = {
    "ncfm": {"method": "ncfm"},
    "dance": {"method": "dance"},
    "dm": {"method": "dm"},
    "ncfm-no-calibration": {"method": "ncfm", "calibration_weight": 0.0},
    "dance-no-calibration": {"method": "dance", "calibration_weight": 0.0},
    "herding": {"baseline": "herding"},
    "kcenter": {"baseline": "kcenter"},
    "random": {"baseline": "random"},
}
PROTOCOLS = {"ncfm": ("cpu", "ncfm", "dc"), "dance": ("cpu", "ncfm", "dc")}  # every other row: cpu and dc
TIMED = ("ncfm", "dance", "dm")


def row_protocols(row: str, chosen: list[str]) -> list[str]:
    return [p for p in PROTOCOLS.get(row, ("cpu", "dc")) if p in chosen]


class Study:
    """The tasks of one table under `out`, each done once (by whichever process takes its lock first)."""

    def __init__(self, args: argparse.Namespace):
        self.args, self.out = args, Path(args.out)
        self.rows, self.seeds, self.protocols = args.rows.split(","), [int(s) for s in args.seeds.split(",")], args.protocols.split(",")
        unknown = [r for r in self.rows if r not in ROWS]
        if unknown:
            raise UserError(f"unknown rows {', '.join(unknown)}; choose from {', '.join(ROWS)}")
        self.given = dict(parse_setting(item) for item in args.set)
        if "method" in self.given:
            raise UserError("--set method=...: each row is its method; choose rows with --rows instead")
        shared = {k: v for k, v in self.given.items() if k in SHARED_SETTINGS}
        self.base = preset(args.preset).changed(**shared, data=args.data, pool_folder=str(self.out / "pool"), eval_runs=0, soft_labels="none")
        self.device = resolve_device(args.device)
        self._data = None

    def data(self):
        if self._data is None:  # the splits and the pool, once per process
            self._data = prepare(self.base, self.device, progress=False)
        return self._data

    def set_file(self, row: str, seed: int) -> Path:
        return self.out / "sets" / f"{row}-seed{seed}.safetensors"

    def eval_file(self, row: str, seed: int, protocol: str) -> Path:
        return self.out / "evals" / f"{row}-seed{seed}-{protocol}.json"

    def tasks(self):
        """(what, done file, work) in order: the rows two at a time in --rows order (their sets, then their evaluations
        protocol by protocol in --protocols order, so the first rows' cells and the first protocol's finish first), then
        the timing."""
        for first in range(0, len(self.rows), 2):
            rows = self.rows[first : first + 2]
            for seed in self.seeds:
                for row in rows:
                    yield f"{row} seed {seed}", self.set_file(row, seed), lambda row=row, seed=seed: self.make_set(row, seed)
            for protocol in self.protocols:
                for seed in self.seeds:
                    for row in (row for row in rows if protocol in row_protocols(row, self.protocols)):
                        yield (f"{row} seed {seed} under {protocol}", self.eval_file(row, seed, protocol),
                               lambda row=row, seed=seed, protocol=protocol: self.evaluate(row, seed, protocol))
        if self.args.timing_steps and all(row in self.rows for row in TIMED):
            yield "seconds per iteration", self.out / "timing.json", self.time_methods

    def row_config(self, row: str, seed: int = 0) -> DistillConfig:
        """The settings of a method's row: the preset's, --set's (a method's own where it has them), the row's own."""
        spec = dict(ROWS[row])
        method = spec.pop("method")
        known = {f.name for f in dataclasses.fields(method_class(method).Settings)}
        own = {k: v for k, v in self.given.items() if k in known}
        return self.base.changed(method=method).changed(**{**own, **spec}, seed=seed)

    def make_set(self, row: str, seed: int) -> None:
        spec = dict(ROWS[row])
        real, _, pool, _ = self.data()
        if "method" in spec:  # every seed matches through the one pool (seed 0's), as every method does
            method, run = make_method(self.row_config(row, seed), real, pool, self.device), self.out / "runs" / f"{row}-seed{seed}"
            if (run / "checkpoint.pt").is_file():  # a killed study continues the run, if it has the same settings
                if (run / "config.json").is_file():
                    check_run_folder(run, method.config, resume=True)
                load_checkpoint(method, run / "checkpoint.pt")
            run.mkdir(parents=True, exist_ok=True)
            write_json(run / "config.json", method.config.to_dict())
            run_distillation(method, run, progress=False)
            synthetic = method.synthetic_set()
        elif spec["baseline"] == "random":
            synthetic = random_subset(real, self.base.ipc, seed)
        else:
            member = self.out / "pool" / f"member-{seed % self.base.pool_size:03d}-trained.safetensors"
            synthetic = coreset(real, self.base.ipc, spec["baseline"], load_member(member, self.device), self.device, member.name)
        self.set_file(row, seed).parent.mkdir(parents=True, exist_ok=True)
        synthetic.save(self.set_file(row, seed))

    def evaluate(self, row: str, seed: int, protocol: str) -> None:
        _, test, _, _ = self.data()
        config = eval_preset(protocol)
        config.runs = self.args.runs
        if self.args.epochs:
            config.train.epochs = self.args.epochs
        result = evaluate_set(SyntheticSet.load(self.set_file(row, seed)), test, config, self.device, progress=False)
        write_json(self.eval_file(row, seed, protocol), {"row": row, "seed": seed, "protocol": protocol, **result})

    def time_methods(self) -> None:
        """Seconds per iteration of each timed method, in one process, taking turns step by step (so a loaded machine
        slows all alike): the median of each after one warm-up step, and its ratio to ncfm's."""
        real, _, pool, _ = self.data()
        methods = {row: make_method(self.row_config(row), real, pool, self.device) for row in TIMED}
        seconds = {row: [] for row in TIMED}
        for _ in range(self.args.timing_steps + 1):
            for row, method in methods.items():
                start = time.perf_counter()
                method.step()
                seconds[row].append(time.perf_counter() - start)
        medians = {row: statistics.median(times[1:]) for row, times in seconds.items()}
        write_json(self.out / "timing.json", {"steps": self.args.timing_steps, "torch_threads": torch.get_num_threads(),
                                              "seconds_per_iteration_median": medians,
                                              "ratio_to_ncfm": {row: medians[row] / medians["ncfm"] for row in TIMED}})

    def run(self) -> None:
        """Do every task not done and not taken; wait for the ones other processes hold; then write the table."""
        from filelock import FileLock, Timeout

        (self.out / "locks").mkdir(parents=True, exist_ok=True)
        while True:
            waiting = False
            for what, done, work in self.tasks():
                if done.exists():
                    continue
                lock = FileLock(self.out / "locks" / f"{done.name}.lock", timeout=0)
                try:
                    lock.acquire()
                except Timeout:
                    waiting = True
                    continue
                try:
                    if not done.exists() and self.ready(done):
                        print(f"{time.strftime('%H:%M:%S')} {what}", flush=True)
                        work()
                    elif not done.exists():
                        waiting = True
                finally:
                    lock.release()
            write_table(self)
            if not waiting or self.args.no_wait:
                return
            time.sleep(30)

    def ready(self, done: Path) -> bool:
        """An evaluation waits for its set (another process may be making it)."""
        if done.parent.name != "evals":
            return True
        row_seed = done.stem.rsplit("-", 1)[0]
        return (self.out / "sets" / f"{row_seed}.safetensors").exists()


def write_table(study: Study) -> dict:
    """methods.json (every cell: mean ± population std over seeds x runs, each seed's mean, the runs), methods.md, methods.png."""
    table = {"preset": study.args.preset, "settings": study.args.set, "epochs": study.args.epochs or "the protocol's",
             "seeds": study.seeds, "runs": study.args.runs, "rows": {}}
    for row in sorted(study.rows, key=list(ROWS).index):
        cells = {}
        for protocol in row_protocols(row, study.protocols):
            results = {seed: json.loads(study.eval_file(row, seed, protocol).read_text()) for seed in study.seeds
                       if study.eval_file(row, seed, protocol).exists()}
            runs = [run["accuracy"] for result in results.values() for run in result["runs"]]
            if runs:
                cells[protocol] = {"mean": statistics.fmean(runs), "std": statistics.pstdev(runs), "seeds_done": sorted(results),
                                   "seed_means": {str(s): r["accuracy_mean"] for s, r in results.items()}, "runs": runs}
        table["rows"][row] = cells
    timing = study.out / "timing.json"
    if timing.exists():
        table["timing"] = json.loads(timing.read_text())
    write_json(study.out / "methods.json", table)
    lines = [f"| row | {' | '.join(study.protocols)} |", "|---" * (len(study.protocols) + 1) + "|"]
    for row, cells in table["rows"].items():
        shown = [f"{c['mean']:.2f} ± {c['std']:.2f}" + ("" if len(c["seeds_done"]) == len(study.seeds) else f" (seeds {c['seeds_done']})")
                 if (c := cells.get(p)) else "" for p in study.protocols]
        lines.append(f"| {row} | {' | '.join(shown)} |")
    (study.out / "methods.md").write_text("\n".join(lines) + "\n")
    plot(table, study.protocols, study.out / "methods.png")
    return table


def plot(table: dict, protocols: list[str], path: Path) -> None:
    """Grouped bars: a group per row, a bar per protocol, whiskers the population std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(table["rows"])
    figure, axes = plt.subplots(figsize=(1.2 * len(rows) + 2, 4))
    width = 0.8 / len(protocols)
    for k, protocol in enumerate(protocols):
        cells = [table["rows"][row].get(protocol) for row in rows]
        axes.bar([i + k * width for i in range(len(rows))], [c["mean"] if c else 0 for c in cells], width,
                 yerr=[c["std"] if c else 0 for c in cells], label=protocol, capsize=2)
    axes.set_xticks([i + width * (len(protocols) - 1) / 2 for i in range(len(rows))], rows, rotation=30, ha="right")
    axes.set_ylabel("test accuracy (%), final epoch")
    axes.set_title(f"{table['preset']}, hard labels, {len(table['seeds'])} seeds x {table['runs']} runs")
    axes.legend(title="protocol")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cifar10-ipc10-cpu")
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--out", default="benchmarks/runs/methods/cifar10")
    parser.add_argument("--rows", default="ncfm,dance,dm,random,ncfm-no-calibration,dance-no-calibration,herding,kcenter",
                        help=f"comma-separated, from {', '.join(ROWS)}; done two at a time in this order (the table keeps its own)")
    parser.add_argument("--seeds", default="0,1", help="distillation (and subset) seeds")
    parser.add_argument("--protocols", default="cpu,ncfm,dc", help="evaluation protocols (ncfm only for the ncfm and dance rows)")
    parser.add_argument("--runs", type=int, default=2, help="evaluation runs per set and protocol")
    parser.add_argument("--timing-steps", type=int, default=10, help="steps of each method for the seconds per iteration (0: none)")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="settings over the preset's for every row "
                        "(shared, or a method's own where that method has it)")
    parser.add_argument("--epochs", type=int, help="evaluation epochs instead of each protocol's (a quick look, not the table)")
    parser.add_argument("--no-wait", action="store_true", help="end when every task left is another process's (instead of waiting "
                        "for them), e.g. to go on to the next command of a list")
    parser.add_argument("--table", action="store_true", help="only write the table from what is done")
    parser.add_argument("--device", default="cpu")
    parser.set_defaults(func=lambda args: write_table(Study(args)) if args.table else Study(args).run())
    return run_main(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
