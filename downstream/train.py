"""Train a network on a real dataset or a condensed set, with plain cross-entropy or DLB.

`train_model` runs `condense.train.train` (the one training loop) once per seed and tests every
run on the real test split at the final epoch. Options on top of the evaluation protocol: the DLB
objective (`downstream.dlb.DLB`), symmetric label noise on the training labels, and training on
a class-balanced subset of a real dataset (`real_subset`).
"""

from __future__ import annotations

import statistics
from dataclasses import replace

import torch

from condense.data import RealData
from condense.errors import UserError
from condense.evaluate import EvalConfig, eval_preset, evaluate_set, training_targets
from condense.source import DataSource
from condense.synthetic import SyntheticSet

from .dlb import DLB


def default_config() -> EvalConfig:
    """The CPU evaluation protocol (BENCHMARKS.md) without CutMix, which DLB cannot combine with."""
    config = eval_preset("cpu")
    config.train = replace(config.train, cutmix_p=0.0)
    return config


def real_subset(data: RealData, per_class: int, seed: int = 0) -> RealData:
    """`per_class` random images of every class of `data` (seeded), as RealData."""
    return data.balanced_subset(per_class, seed)


def check_noise_rate(rate: float, num_classes: int) -> None:
    if not 0 <= rate <= 1:
        raise UserError(f"label noise rate must be in [0, 1], got {rate}")
    if rate > 0 and num_classes < 2:
        raise UserError("label noise needs at least 2 classes")


def symmetric_label_noise(labels: torch.Tensor, rate: float, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """A copy of `labels` where round(rate * N) of them, chosen at random, get another class drawn uniformly."""
    check_noise_rate(rate, num_classes)
    noisy = labels.clone()
    flipped = torch.randperm(len(labels), generator=generator)[: round(rate * len(labels))]
    shift = torch.randint(1, max(num_classes, 2), (len(flipped),), generator=generator)
    noisy[flipped] = (labels[flipped] + shift) % num_classes
    return noisy


def train_model(
    train_set: RealData | SyntheticSet | str,
    test: RealData | None = None,
    config: EvalConfig | None = None,
    *,
    objective: DLB | None = None,
    label_noise: float = 0.0,
    device: torch.device | str = "auto",
    progress: bool = True,
    out=None,
    world=None,
) -> dict:
    """Train `config.runs` fresh networks (seeds `config.seed`, +1, ...) and test each at the final epoch.

    `train_set`: real data (`condense.data.load_real`, `real_subset`), a `SyntheticSet`, or a path or
    Hub id of a condensed set (`downstream.load.load_condensed`). `test`: default, the test split of
    the set's source dataset. `config`: network, training protocol, runs, seed, labels (hard or
    stored soft; default `default_config()`). `objective`: `DLB(...)` or None for plain cross-entropy.
    `label_noise`: rate of symmetric noise on the hard training labels, drawn per run from its seed.
    The runs are `condense.evaluate.evaluate_set`'s (shared across torchrun ranks with `world`).
    Returns the result (and writes it atomically as JSON to `out` when given).
    """
    from condense.runtime import resolve_device, write_json

    if isinstance(train_set, str):
        from .load import load_condensed

        train_set = load_condensed(train_set)
    config = config or default_config()
    if config.teacher:
        raise UserError("a teacher is not supported here; use `condense eval --teacher` for knowledge distillation")
    _, kind = training_targets(train_set, config.labels)
    if label_noise and kind != "hard":
        raise UserError("label noise applies to hard labels; drop it or use hard labels")
    check_noise_rate(label_noise, len(train_set.class_names))
    test = _default_test(train_set) if test is None else test
    device = resolve_device(device) if isinstance(device, str) else device
    classes = len(train_set.class_names)
    noisy = (lambda targets, generator: symmetric_label_noise(targets, label_noise, classes, generator)) if label_noise else None
    result = evaluate_set(train_set, test, config, device, progress, world, objective=objective, run_targets=noisy)
    for run in result["runs"]:
        run["seconds_per_epoch"] = run["seconds"] / config.train.epochs
    result.update(seconds_per_epoch=statistics.fmean(r["seconds_per_epoch"] for r in result["runs"]), label_noise=label_noise,
                  train_set=result.pop("set"))
    if out is not None:
        write_json(out, result)
    return result


def _default_test(train_set: RealData | SyntheticSet) -> RealData:
    if isinstance(train_set, SyntheticSet):
        return train_set.data_source().load("test")
    return DataSource(train_set.source, revision=train_set.revision).load("test")

