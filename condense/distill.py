"""Building a distillation (`make_method`: the registered method `config.method`) and the sets it writes.

The methods are in `condense.methods` (`ncfm`, `dance`, `dm`, and any registered one); the settings and presets in
`condense.config`; the job around a method (data, pool, the loop, soft labels, evaluation, the run folder) in `condense.run`.
"""

from __future__ import annotations

import torch

from .config import PRESETS, DistillConfig, preset
from .data import RealData
from .distributed import World
from .errors import UserError
from .formation import init_canvases
from .methods import Method, method_class
from .methods.base import canvas_set, check_class_sizes
from .pool import Pool
from .synthetic import SyntheticSet

__all__ = ["PRESETS", "DistillConfig", "Method", "canvas_set", "check_class_sizes", "initial_set", "make_method", "preset"]



def make_method(config: DistillConfig, real: RealData, pool: Pool | None, device: torch.device, classes=None,
                world: World | None = None) -> Method:
    """The distillation of `config.method` over `real` (or only `classes`), ready to `step()`; from `config.init_from`'s
    canvases where it names a set."""
    method = method_class(config.method)(config, real, pool, device, classes=classes, world=world)
    if config.init_from:
        method.start_from(canvases_of(config, real))
    return method


def canvases_of(config: DistillConfig, real: RealData) -> torch.Tensor:
    """The canvases [classes x ipc, C, H, W] (class-major) of the set `config.init_from`, checked against the run: the same
    IPC, factor, classes and image size, or one error naming what differs."""
    from .hub import load_set_source

    start = load_set_source(config.init_from)
    start.require_pixels("--init-from")
    canvases = start.canvases if start.canvases is not None else start.images if start.factor == 1 else None
    wanted = {"IPC": config.ipc, "factor": config.factor, "classes": real.num_classes, "image size": (real.channels, *real.image_size)}
    found = {"IPC": start.ipc, "factor": start.factor, "classes": start.num_classes, "image size": tuple(start.images.shape[1:])}
    differ = [f"{name} {found[name]} (the run: {wanted[name]})" for name in wanted if found[name] != wanted[name]]
    if differ:
        raise UserError(f"--init-from {config.init_from}: the set's {', '.join(differ)} differ from the run's; "
                        "start from a set of the same shape, or change the run's settings to the set's")
    per_class = start.labels.bincount(minlength=start.num_classes)
    if canvases is None or len(canvases) != config.ipc * real.num_classes or (per_class != config.ipc * config.factor**2).any() \
            or not torch.equal(start.labels, start.labels.sort().values):
        raise UserError(f"--init-from {config.init_from}: the set does not hold {config.ipc} canvases of every class in class order "
                        "(a set written by `condense distill` or `condense import` does); start from one that does")
    return canvases.clamp(0, 1)  # an imported set's pixels may overshoot [0, 1]; every step clamps the canvases to it




def initial_set(config: DistillConfig, real: RealData) -> SyntheticSet:
    """The set a run of `config` starts from (its 0-iteration set), without building a pool."""
    canvases, labels = init_canvases(real, config.ipc, config.factor, torch.Generator().manual_seed(config.seed),
                                     resize=config.init_resize, images=config.init_images)
    if config.init_from:
        canvases = canvases_of(config, real)
    return canvas_set(config, real, canvases, labels, 0)
