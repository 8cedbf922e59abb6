"""The comparison end to end (REFERENCE.md §3): memories by name, one run (the DM protocol or experience replay), every memory under every seed.

Avalanche's own metrics are kept in the result; `summarise` adds the mean ± std per step.
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from functools import partial

import torch
from avalanche.evaluation.metrics import accuracy_metrics, forgetting_metrics
from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin
from avalanche.training.supervised import Naive
from tqdm.auto import tqdm

from condense.config import preset
from condense.data import RealData
from condense.errors import UserError
from condense.nets import build_net, seeded_net

from ..load import load_condensed
from .benchmark import condensed_benchmark
from .config import STRATEGIES, CLConfig, MemorySpec
from .memories import CondensedMemory, CondensingMemory, HerdingMemory, RandomMemory
from .plugins import FreshModelPlugin


def _check_set(synthetic, benchmark) -> None:
    """A condensed set fits a benchmark: same classes, image shape and normalisation."""
    if synthetic.class_names != benchmark.class_names:
        raise UserError(f"the condensed set has classes {synthetic.class_names[:5]}... but {benchmark.source} has "
                        f"{benchmark.class_names[:5]}...; use a set made from this dataset")
    if tuple(synthetic.images.shape[1:]) != (benchmark.channels, *benchmark.image_size):
        raise UserError(f"the condensed set's images are {list(synthetic.images.shape[1:])} but the stream's are "
                        f"{[benchmark.channels, *benchmark.image_size]}; use a set made from this dataset")
    if not torch.allclose(torch.tensor(synthetic.mean + synthetic.std), torch.tensor(tuple(benchmark.mean) + tuple(benchmark.std)), atol=1e-4):
        raise UserError(f"the condensed set is normalised with mean {synthetic.mean}, std {synthetic.std} but the stream with "
                        f"{benchmark.mean}, {benchmark.std}; use a set made from this dataset")
    missing = sorted(set(range(len(benchmark.class_names))) - set(synthetic.labels.tolist()))
    if missing:
        raise UserError(f"the condensed set has no images of class {', '.join(f'{c} ({benchmark.class_names[c]!r})' for c in missing)}; "
                        "use a set with images of every class")


def make_memory(spec: MemorySpec, benchmark, config: CLConfig, seed: int, device: torch.device, progress: bool = True, loaded: dict | None = None):
    """The `ExemplarsBuffer` of a spec for one run."""
    mem_size = config.mem_size or config.ipc * len(benchmark.class_names)
    count = spec.count or config.condensed_count
    if spec.kind == "random":
        return RandomMemory(mem_size, config.ipc, seed=seed)
    if spec.kind == "herding":
        return HerdingMemory(mem_size, config.ipc)
    if spec.path is not None:
        synthetic = (loaded or {}).get(spec.path) or load_condensed(spec.path)
        _check_set(synthetic, benchmark)
        return CondensedMemory(mem_size, synthetic, config.ipc, count=count)
    base = preset(config.condense_preset, config.condense.get("method"))
    unknown = set(config.condense) - set(base.flat())
    if unknown:
        raise UserError(f"condense-as-you-go has no setting {', '.join(sorted(unknown))}; see `condense distill --method {base.method} -h`")
    condense = base.changed(**{**config.condense, "ipc": config.ipc, "seed": seed})
    return CondensingMemory(mem_size, benchmark, condense, device, config.ipc, count=count, progress=progress)


def _plain(value):
    """Avalanche metric values (floats, tensors, dicts) as JSON values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return value


def _check_strategy(config: CLConfig, objective) -> None:
    if config.strategy not in STRATEGIES:
        raise UserError(f"unknown strategy {config.strategy!r}; use {' or '.join(STRATEGIES)}")
    if config.strategy == "replay" and objective is not None and objective.scheme != "official":
        raise UserError("the replay strategy trains with DLB through DLBPlugin, which takes the official scheme; "
                        "use --scheme official (the paper scheme is for the fresh model's own batches)")


def _strategy_plugins(memory, config: CLConfig, net: tuple, benchmark, seed: int, objective, progress: bool) -> tuple[list, object | None, int]:
    """The plugins of `config.strategy` (besides the replay memory), the fresh-model plugin or None, and the stream epochs.

    fresh (the DM protocol): `FreshModelPlugin` trains a fresh model on the memory (with `objective`), the one
    tested; the continual model trains on the stream only when the memory reads it (herding).
    replay (Avalanche's experience replay): the continual model trains `stream_epochs` on every experience
    and is the one tested; DLB enters as `DLBPlugin` (its official scheme).
    """
    _check_strategy(config, objective)
    if config.strategy == "replay":
        if objective is None:
            return [], None, config.stream_epochs
        from ..dlb_plugin import DLBPlugin

        return [DLBPlugin(tau=objective.tau, alpha=objective.alpha)], None, config.stream_epochs
    fresh = FreshModelPlugin(memory, partial(seeded_net, *net, stream="fresh", **config.net_options), config.train, benchmark.mean, benchmark.std,
                             seed=seed, objective=objective, progress=progress)
    return [fresh], fresh, config.stream_epochs if memory.uses_model else 0


def run_continual(benchmark, memory, config: CLConfig, seed: int, device: torch.device, *,
                  plugins: Sequence = (), objective=None, progress: bool = True) -> dict:
    """One run with one memory: Naive on the stream + ReplayPlugin(memory) + the plugins of `config.strategy`.

    Replayed mini-batches: `stream_batch` new images plus a quarter as many from the memory.
    Returns per step the accuracy (%) on the test images of all seen classes (Avalanche's accuracy on
    trained experiences), the memory, and all of Avalanche's metrics (per-experience accuracy, forgetting).
    """
    net = ("convnet", benchmark.channels, len(benchmark.class_names), benchmark.image_size)
    torch.manual_seed(seed)  # Avalanche's data loaders shuffle with the global generator
    model = build_net(*net, **config.net_options)
    own, fresh, stream_epochs = _strategy_plugins(memory, config, net, benchmark, seed, objective, progress)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No loggers specified")  # the figures are returned, not logged
        evaluator = EvaluationPlugin(
            accuracy_metrics(experience=True, stream=True, trained_experience=True), forgetting_metrics(experience=True, stream=True),
            loggers=[],
        )
    strategy = Naive(
        model=model, optimizer=torch.optim.SGD(model.parameters(), lr=config.stream_lr, momentum=0.9, weight_decay=5e-4),
        train_mb_size=config.stream_batch, train_epochs=stream_epochs,
        eval_mb_size=config.eval_batch, device=device, evaluator=evaluator,
        plugins=[ReplayPlugin(memory.max_size, batch_size_mem=max(1, config.stream_batch // 4), storage_policy=memory), *own, *plugins],
    )
    steps = []
    for k, experience in enumerate(benchmark.train_stream):
        start = time.perf_counter()
        strategy.train(experience, eval_streams=[])
        seconds = time.perf_counter() - start
        metrics = strategy.eval(benchmark.test_stream[: k + 1])
        memory_figures = ({key: fresh.history[-1][key] for key in ("memory_images", "stored_per_class", "seconds", "images_per_second")}
                          if fresh is not None else
                          {"memory_images": len(memory.buffer), "stored_per_class": memory.stored_per_class(), "seconds": seconds})
        steps.append({
            "step": k, "classes_seen": sum(len(group) for group in benchmark.experience_classes[: k + 1]),
            "accuracy": 100 * metrics["Accuracy_On_Trained_Experiences/eval_phase/test_stream"], **memory_figures,
        })
    return {"seed": seed, "class_order": benchmark.class_order, "steps": steps, "avalanche": _plain(evaluator.get_all_metrics())}


def run_comparison(train_data: RealData, test: RealData, memories: Sequence[MemorySpec], config: CLConfig, device: torch.device,
                   objective=None, progress: bool = True) -> dict:
    """Every memory under every seed (class order from the seed unless `config.order`); mean ± std per step.

    `objective` (e.g. `downstream.dlb.DLB`) trains the tested model instead of plain cross-entropy: the fresh
    model, or under the replay strategy the continual model (through `DLBPlugin`).
    """
    _check_strategy(config, objective)
    config.check(train_data)
    loaded = {spec.path: load_condensed(spec.path) for spec in memories if spec.path is not None}
    results: dict[str, dict] = {spec.label: {"spec": asdict(spec), "runs": []} for spec in memories}
    if len(results) != len(memories):
        raise UserError("a memory is listed twice; list each once")
    runs = [(seed, spec) for seed in config.seeds for spec in memories]
    first = config.seeds[0]
    benchmarks = {first: condensed_benchmark(train_data, test, config.steps, order=config.order, seed=first)}  # one per seed, shared by the memories (they only read it)
    for spec in memories:  # every memory is built once before any training, so a bad set or setting stops the comparison at once
        make_memory(spec, benchmarks[first], config, first, device, progress, loaded)
    for seed, spec in tqdm(runs, desc="continual runs", disable=not progress, unit="run"):
        if seed not in benchmarks:
            benchmarks = {seed: condensed_benchmark(train_data, test, config.steps, order=config.order, seed=seed)}
        benchmark = benchmarks[seed]
        memory = make_memory(spec, benchmark, config, seed, device, progress, loaded)
        run = run_continual(benchmark, memory, config, seed, device, objective=objective, progress=progress)
        if hasattr(memory, "reads"):
            run["condensed_as_you_go"] = [{"experience": r["experience"], "classes": r["classes"], "pool_images": len(r["pool_rows"]),
                                           "distill_images": len(r["distill_rows"])} for r in memory.reads]
        results[spec.label]["runs"].append(run)
    for entry in results.values():
        summarise(entry)
    return {"config": config.to_dict(), "objective": objective.to_dict() if objective is not None else {"objective": "ce"},
            "device": str(device), "data": train_data.source, "memories": results, "classes_per_step": train_data.num_classes // config.steps}


def summarise(entry: dict) -> dict:
    """Set a memory's `accuracy_mean` and `accuracy_std` per step (population std) from its `runs`."""
    per_step = list(zip(*[[s["accuracy"] for s in run["steps"]] for run in entry["runs"]]))
    entry["accuracy_mean"] = [statistics.fmean(v) for v in per_step]
    entry["accuracy_std"] = [statistics.pstdev(v) for v in per_step]
    return entry
