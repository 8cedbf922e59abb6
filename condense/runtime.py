"""Small run-time helpers: device choice, presets, atomic writes (JSON, figures), JSON reading."""

from __future__ import annotations

import copy
import json
import os
import tempfile
from contextlib import contextmanager
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


def is_local(path: str) -> bool:
    """Whether `path` means a local folder rather than a Hub id: it exists, starts as a path does (., /, ~), its first
    component exists here (work/x beside a folder work), or it is no valid Hub id (a/b/c); so a missing folder is
    said to be missing at once instead of being looked up on the Hub."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    local = Path(path).expanduser()
    if local.exists() or path.startswith((".", "/", "~")) or (len(local.parts) > 1 and Path(local.parts[0]).exists()):
        return True
    try:
        validate_repo_id(path)
    except HFValidationError:
        return True
    return False


def published_name(source: str) -> str:
    """`source` as a published set names it: a Hub id as it is, a local folder by its name alone."""
    return Path(source.rstrip("/")).name if is_local(source) else source


def source_identity(source: str) -> str:
    """One name for a dataset however it is written: a local folder's resolved path (./x, x, /abs/x), else the Hub id.

    Pools and resume checks compare it.
    """
    return str(Path(source).expanduser().resolve()) if is_local(source) else source


def preset_copy(table: dict, name: str, what: str):
    """A deep copy of preset `name` of `table` (so a caller's changes never reach the table), or one clear error."""
    if name not in table:
        raise UserError(f"unknown {what} preset {name!r}; choose one of {', '.join(table)}")
    return copy.deepcopy(table[name])


@contextmanager
def atomic_path(path: str | os.PathLike):
    """A temporary name in `path`'s folder to write to; renamed to `path` only if the block succeeds.

    So a reader never sees a half-written file, and a failed write leaves nothing behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    mask = os.umask(0)
    os.umask(mask)
    try:
        yield Path(tmp)
        # mkstemp makes 0600 (and a writer may re-create the file, as safetensors does): a result is meant to be read,
        # as any file the user's umask allows
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_leftovers(path: str | os.PathLike) -> list[Path]:
    """The temporaries `atomic_path(path)` leaves when its process is killed mid-write (no `except` runs then).

    Only a caller that alone writes `path` (e.g. under the folder's lock) may delete them.
    """
    path = Path(path)
    return sorted(path.parent.glob(f".{path.stem}.*.tmp{path.suffix}"))


def write_json(path: str | os.PathLike, payload: dict) -> Path:
    """Write JSON atomically (`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
    return Path(path)


def read_json(path: str | os.PathLike, what: str = "JSON file"):
    """The JSON value in `path`, or one UserError that names the file and what is wrong with it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such {what}") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:  # json.loads recurses once per level of nesting
        raise UserError(f"{path} is not a readable {what} ({exc}); restore it or delete it") from exc


def save_figure(figure, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save a matplotlib figure atomically and close it (so long runs do not accumulate open figures)."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=dpi)
    plt.close(figure)
    return Path(path)
