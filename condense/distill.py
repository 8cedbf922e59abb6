"""Building a distillation (`make_method`: the registered method `config.method`) and the sets it writes.

The methods are in `condense.methods` (`ncfm`, `dance`, `dm`, and any registered one); the settings and presets in
`condense.config`; the job around a method (data, pool, the loop, soft labels, evaluation, the run folder) in `condense.run`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .config import PRESETS, DistillConfig, preset
from .data import RealData
from .distributed import World
from .errors import UserError
from .formation import decode, decoded_labels, init_canvases
from .methods import Method, method_class
from .pool import Pool
from .synthetic import SyntheticSet, published_source

__all__ = ["PRESETS", "DistillConfig", "Method", "canvas_set", "check_class_sizes", "initial_set", "make_method", "preset"]


def check_class_sizes(config: DistillConfig, real: RealData, classes=None) -> None:
    """Every class to distil has the real images that initialisation and one real batch take."""
    smallest = min(len(real.by_class[c]) for c in (range(real.num_classes) if classes is None else classes))
    needed = config.ipc * config.factor**2
    if needed > smallest:
        raise UserError(
            f"IPC {config.ipc} with factor {config.factor} needs {needed} real images per class to initialise, "
            f"but the smallest class of {real.source} has {smallest}; lower --ipc or --factor"
        )
    if config.real_batch > smallest:
        raise UserError(f"--real-batch {config.real_batch} is larger than the smallest class ({smallest} images); lower it")


def make_method(config: DistillConfig, real: RealData, pool: Pool | None, device: torch.device, classes=None,
                world: World | None = None) -> Method:
    """The distillation of `config.method` over `real` (or only `classes`), ready to `step()`."""
    return method_class(config.method)(config, real, pool, device, classes=classes, world=world)


def canvas_set(config: DistillConfig, real: RealData, canvases: torch.Tensor, canvas_labels: torch.Tensor, iterations_done: int) -> SyntheticSet:
    """The SyntheticSet of canvases distilled from `real` under `config`."""
    return SyntheticSet(
        images=decode(canvases, config.factor), labels=decoded_labels(canvas_labels, config.factor),
        canvases=canvases, class_names=list(real.class_names), mean=real.mean, std=real.std,
        method=config.method, **published_source(real), ipc=config.ipc, factor=config.factor,
        config={**published_settings(config, real), "iterations_done": iterations_done},
    )


def published_settings(config: DistillConfig, real: RealData) -> dict:
    """`config` as a published set records it: the data, the pool folder and a teacher file by name, not by this machine's path."""
    settings = config.to_dict()
    named = {key: Path(settings[key]).name for key in ("pool_folder", "soft_labels") if settings[key] and ("/" in settings[key] or Path(settings[key]).exists())}
    return {**settings, **named, "data": real.name}


def initial_set(config: DistillConfig, real: RealData) -> SyntheticSet:
    """The set a run of `config` starts from (its 0-iteration set), without building a pool."""
    canvases, labels = init_canvases(real, config.ipc, config.factor, torch.Generator().manual_seed(config.seed),
                                     resize=config.init_resize, images=config.init_images)
    return canvas_set(config, real, canvases, labels, 0)
