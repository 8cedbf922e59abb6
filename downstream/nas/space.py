"""The search space: the 720 ConvNets of the DC protocol or a user's list, candidate names, costs, seeded sampling."""

from __future__ import annotations

import itertools
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from condense.errors import UserError
from condense.nets import ACTIVATIONS, NORMS, POOLINGS, build_net, current_options
from condense.runtime import read_json

CONVNET_SPACE = {"depth": (1, 2, 3, 4), "width": (32, 64, 128, 256), "act": tuple(ACTIVATIONS), "norm": tuple(NORMS),
                 "pooling": tuple(POOLINGS)}


def convnet_space() -> list[dict]:
    """The 720 ConvNets of the DC protocol: depth x width x activation x normalisation x pooling."""
    return [{"net": "convnet", **dict(zip(CONVNET_SPACE, values))} for values in itertools.product(*CONVNET_SPACE.values())]


def load_space(space: str | list) -> list[dict]:
    """`convnet720`, a JSON file with a list of option dicts, or such a list; checked to be non-empty and distinct.

    Old option names (`pool`) are read under their current ones, so a space file written before the rename
    gives the same candidates.
    """
    if isinstance(space, str):
        if space == "convnet720":
            return convnet_space()
        path = Path(space)
        if not path.is_file():
            raise UserError(f"unknown search space {space!r}; use convnet720 or a JSON file with a list of build_net option dicts")
        space = read_json(path, "JSON list of build_net option dicts")
    if not isinstance(space, list) or not space or not all(isinstance(item, dict) for item in space):
        raise UserError("the search space is empty or not a list of option dicts; give at least one, e.g. [{\"depth\": 3, \"width\": 64}]")
    space = [{"net": "convnet", **current_options(item)} for item in space]
    names = [candidate_name(item) for item in space]
    if len(set(names)) != len(names):
        duplicate = next(name for name in names if names.count(name) > 1)
        raise UserError(f"the search space lists {duplicate} more than once; list every candidate once")
    return space


def candidate_name(candidate: dict) -> str:
    """A readable, unique key: `convnet(depth=3, width=64, act=relu, norm=instance, pooling=avg)`."""
    net, options = split_candidate(candidate)
    return f"{net}({', '.join(f'{key}={value}' for key, value in options.items())})"


def split_candidate(candidate: dict) -> tuple[str, dict]:
    """The network name (`convnet` when not given) and the other `build_net` options of a candidate."""
    options = dict(candidate)
    return options.pop("net", "convnet"), options


def candidate_cost(candidate: dict, channels: int = 3, num_classes: int = 10, image_size=(32, 32)) -> dict:
    """Million multiply-accumulates per image and parameter count, measured on the meta device (no memory, no time)."""
    net, options = split_candidate(candidate)
    with torch.device("meta"):
        model = build_net(net, channels, num_classes, image_size, **options)
        with FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, channels, *image_size))
    return {"mmacs": counter.get_total_flops() / 2e6, "params": sum(p.numel() for p in model.parameters())}


def sample_candidates(space: list[dict], count: int | None, seed: int, max_mmacs: float | None = None,
                      channels: int = 3, num_classes: int = 10, image_size=(32, 32)) -> list[dict]:
    """`count` candidates (all when None) in a seeded random order, each with its cost; invalid options raise.

    The space is shuffled once with the seed and walked in that order, skipping candidates above `max_mmacs`,
    so only the candidates looked at are built (on the meta device).
    """
    chosen = []
    for index in torch.randperm(len(space), generator=torch.Generator().manual_seed(seed)).tolist():
        cost = candidate_cost(space[index], channels, num_classes, image_size)
        if max_mmacs is None or cost["mmacs"] <= max_mmacs:
            chosen.append({"name": candidate_name(space[index]), "options": space[index], **cost})
            if len(chosen) == count:
                break
    if not chosen:
        raise UserError(f"no candidate of the space costs at most {max_mmacs} MMACs per image; raise --max-mmacs")
    return chosen
