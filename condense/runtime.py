"""Small run-time helpers: device choice, presets, atomic JSON output."""

from __future__ import annotations

import copy
import json
import os
import tempfile
from pathlib import Path

import torch

from .errors import UserError


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA, then MPS, then CPU; any other name must be available here."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked for but CUDA is not available here; use --device auto or cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"device {name!r} asked for but MPS is not available here; use --device auto or cpu")
    return device


def preset_copy(table: dict, name: str, what: str):
    """A deep copy of preset `name` of `table` (so a caller's changes never reach the table), or one clear error."""
    if name not in table:
        raise UserError(f"unknown {what} preset {name!r}; choose one of {', '.join(table)}")
    return copy.deepcopy(table[name])


def write_json(path: str | os.PathLike, payload: dict) -> Path:
    """Write JSON atomically: a temporary file in the same folder, then a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, indent=2)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
