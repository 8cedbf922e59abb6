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
from condense.evaluate import (
    LABEL_PROTOCOLS,
    EvalConfig,
    check_compatible,
    eval_preset,
    training_targets,
)
from condense.nets import build_net
from condense.synthetic import SyntheticSet
from condense.train import accuracy, train

from .dlb import DLB


def default_config() -> EvalConfig:
    """The CPU evaluation protocol (BENCHMARKS.md) without CutMix, which DLB cannot combine with."""
    config = eval_preset("cpu")
    config.train = replace(config.train, cutmix_p=0.0)
    return config


def real_subset(data: RealData, per_class: int, seed: int = 0) -> RealData:
    """`per_class` random images of every class of `data` (seeded), as RealData."""
    return data.balanced_subset(per_class, seed)


def symmetric_label_noise(labels: torch.Tensor, rate: float, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """A copy of `labels` where round(rate * N) of them, chosen at random, get another class drawn uniformly."""
    if not 0 <= rate <= 1:
        raise UserError(f"label noise rate must be in [0, 1], got {rate}")
    if rate > 0 and num_classes < 2:
        raise UserError("label noise needs at least 2 classes")
    noisy = labels.clone()
    flipped = torch.randperm(len(labels), generator=generator)[: round(rate * len(labels))]
    shift = torch.randint(1, max(num_classes, 2), (len(flipped),), generator=generator)
    noisy[flipped] = (labels[flipped] + shift) % num_classes
    return noisy


def describe(train_set: RealData | SyntheticSet) -> str:
    if isinstance(train_set, SyntheticSet):
        return train_set.summary()
    return f"{train_set.source} [{train_set.split}], {len(train_set)} images"


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
) -> dict:
    """Train `config.runs` fresh networks (seeds `config.seed`, +1, ...) and test each at the final epoch.

    `train_set`: real data (`condense.data.load_real`, `real_subset`), a `SyntheticSet`, or a path or
    Hub id of a condensed set (`downstream.load.load_condensed`). `test`: default, the test split of
    the set's source dataset. `config`: network, training protocol, runs, seed, labels (hard or
    stored soft; default `default_config()`). `objective`: `DLB(...)` or None for plain cross-entropy.
    `label_noise`: rate of symmetric noise on the hard training labels, drawn per run from its seed.
    Returns the result (and writes it atomically as JSON to `out` when given).
    """
    from condense.runtime import resolve_device, write_json

    if isinstance(train_set, str):
        from .load import load_condensed

        train_set = load_condensed(train_set)
    config = config or default_config()
    if config.teacher:
        raise UserError("a teacher is not supported here; use `condense eval --teacher` for knowledge distillation")
    images, (targets, kind) = train_set.images, training_targets(train_set, config.labels)
    if label_noise and kind != "hard":
        raise UserError("label noise applies to hard labels; drop it or use hard labels")
    if test is None:
        test = _default_test(train_set)
    check_compatible(train_set, test)  # reads only the image shape and class names, which RealData has too
    if config.runs < 1:
        raise UserError(f"runs must be at least 1, got {config.runs}")
    device = resolve_device(device) if isinstance(device, str) else device
    channels, size = images.shape[1], tuple(images.shape[2:])
    runs = []
    for run in range(config.runs):
        seed = config.seed + run
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = build_net(config.net, channels, len(train_set.class_names), size, **config.net_options)
        generator = torch.Generator().manual_seed(seed)
        run_targets = symmetric_label_noise(targets, label_noise, len(train_set.class_names), generator) if label_noise else targets
        stats = train(
            net, images, run_targets, config.train, mean=train_set.mean, std=train_set.std, generator=generator,
            device=device, desc=f"run {run + 1}/{config.runs}", progress=progress, objective=objective,
        )
        runs.append({"seed": seed, "accuracy": accuracy(net, test, train_set.mean, train_set.std, device),
                     "seconds_per_epoch": stats["seconds"] / config.train.epochs, **stats})
    accuracies = [r["accuracy"] for r in runs]
    result = {
        "accuracy_mean": statistics.fmean(accuracies),
        "accuracy_std": statistics.pstdev(accuracies),
        "seconds_per_epoch": statistics.fmean(r["seconds_per_epoch"] for r in runs),
        "runs": runs,
        "objective": objective.to_dict() if objective is not None else {"objective": "ce"},
        "label_noise": label_noise,
        "labels": kind,
        "label_protocol": LABEL_PROTOCOLS[kind],
        "train_set": describe(train_set),
        "test": f"{test.source} [{test.split}], {len(test)} images",
        "device": str(device),
        "protocol": config.to_dict(),
    }
    if out is not None:
        write_json(out, result)
    return result


def _default_test(train_set: RealData | SyntheticSet) -> RealData:
    from condense.cli import load_data

    if isinstance(train_set, SyntheticSet):
        return load_data(train_set.source_dataset, "test", train_set.source_options())
    return load_data(train_set.source, "test", {"revision": train_set.revision} if train_set.revision else {})

