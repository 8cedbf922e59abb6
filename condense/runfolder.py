"""The run folder of `condense distill`: its lock, its settings check on resume, its log and its checkpoints.

A run folder holds config.json (the resolved settings), log.jsonl, checkpoint.pt and, once the run has
finished, synthetic.safetensors, preview.png and eval.json. Checkpoints are read without unpickling
anything but tensors and plain values.
"""

from __future__ import annotations

import dataclasses
import json
from contextlib import contextmanager
from pathlib import Path

import torch

from .config import RENAMED_SETTINGS, DistillConfig
from .distributed import World
from .errors import UserError
from .methods import Method, method_class
from .runtime import atomic_leftovers, atomic_path, source_identity


def read_log(path: Path) -> list[dict]:
    """The records of a log.jsonl; a torn last line (what a kill during a write leaves, past the checkpoint) is dropped."""
    problem = f"{path} is damaged; delete it to resume without the earlier log lines, or start the run again"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise UserError(f"{problem} (not UTF-8: {exc})") from exc
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise UserError(f"{problem} (line {number} is not JSON)") from None
        if not isinstance(record, dict) or not isinstance(record.get("iteration"), int):
            raise UserError(f"{problem} (line {number} has no iteration)")
        records.append(record)
    return records


class RunLog:
    """The JSONL log of a run; on resume, lines past the checkpoint are dropped."""

    def __init__(self, path: Path, keep_until: int):
        self.path = path
        records = read_log(path) if path.exists() and keep_until > 0 else []
        kept = [json.dumps(record) for record in records if record["iteration"] <= keep_until]
        with atomic_path(path) as tmp:  # a kill during the rewrite keeps the old log, lines of done iterations included
            tmp.write_text("".join(line + "\n" for line in kept))

    def write(self, record: dict) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")


CHECKPOINT_KEYS = {"iteration", "canvases", "optimizer", "plateau", "generator"}


def save_checkpoint(distiller: Method, path: Path) -> None:
    """Write the resumable state atomically (collective under torchrun: every rank gathers, rank 0 writes)."""
    state = distiller.state_dict()
    if distiller.world.is_main:
        with atomic_path(path) as tmp:
            torch.save(state, tmp)


def read_checkpoint(path: Path) -> dict:
    """A checkpoint's state, read without unpickling anything but tensors and plain values."""
    import pickle

    if not path.is_file():
        raise UserError(f"--resume: no checkpoint at {path}; start without --resume")
    refusal = f"--resume: cannot resume from {path}: {{}}; delete it to start the run again without --resume"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UserError(refusal.format("it holds something other than tensors and plain values, which is never loaded")) from exc
    except Exception as exc:  # a truncated or damaged file: torch raises RuntimeError, EOFError and others
        first_line = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise UserError(refusal.format(f"it is damaged ({type(exc).__name__}: {first_line})")) from exc
    if not (isinstance(state, dict) and set(state) >= CHECKPOINT_KEYS):
        raise UserError(refusal.format("it is not a checkpoint of `condense distill`"))
    return state


def load_checkpoint(distiller: Method, path: Path, state: dict | None = None) -> None:
    """Continue from the checkpoint at `path` (`state`: its content, if already read by `read_checkpoint`)."""
    try:
        distiller.load_state_dict(read_checkpoint(path) if state is None else state)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # tensors or optimiser state of another run's shape
        raise UserError(f"--resume: {path} does not fit this run ({type(exc).__name__}: {str(exc)[:200]}); "
                        "delete it to start the run again without --resume") from exc


# A resume may change these: run longer, hold the data another way, fix the teacher of the soft labels, train the
# pool's missing members at once or one by one (the same draws, other rounding: equally good members).
RESUMABLE_CHANGES = ("iterations", "memory_mapped", "soft_labels", "batched_pool")
RUN_LOCK = ".lock"
RUN_FILES = ("config.json", "log.jsonl", "checkpoint.pt", "synthetic.safetensors", "preview.png", "eval.json")


def check_run_folder(out: Path, config: DistillConfig, resume: bool | str) -> bool:
    """Whether the run continues the one in `out`: `resume` True, or "auto" when `out` holds a checkpoint (what torchrun's
    restarts need: the same command starts the run, then resumes it). Refuses settings that differ from the run's."""
    saved = out / "config.json"
    if resume == "auto":
        resume = (out / "checkpoint.pt").is_file()
    if resume:
        if not saved.is_file():
            raise UserError(f"--resume: {out} holds no run (no config.json); start without --resume")
        try:
            previous = json.loads(saved.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserError(f"--resume: {saved} is damaged ({exc}); restore it, or start the run again in another --out") from exc
        if not isinstance(previous, dict):
            raise UserError(f"--resume: {saved} is not the settings of a run; restore it, or start the run again in another --out")
        now = {**config.flat(), "data": source_identity(config.data)}  # ../data and /abs/data are one folder
        previous = {**previous, **previous.get("method_settings", {}), "data": previous.get("resolved_data", previous.get("data"))}
        previous = {RENAMED_SETTINGS.get(k, k): v for k, v in previous.items()}  # a run from before a setting's rename
        defaults = {**{f.name: f.default for f in dataclasses.fields(DistillConfig)}, "method": "ncfm",  # a setting added since
                    **dataclasses.asdict(method_class(config.method).Settings())}  # the run: its default then (runs before methods: ncfm)
        changed = sorted(k for k, v in now.items() if previous.get(k, defaults[k]) != v and k not in RESUMABLE_CHANGES)
        if changed:
            raise UserError(f"--resume: settings differ from the run in {out} ({', '.join(changed)}); resume with the same settings")
    elif (out / "checkpoint.pt").exists() or (out / "synthetic.safetensors").exists():
        raise UserError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    return bool(resume)


@contextmanager
def claim_run_folder(out: Path, world: World):
    """Hold an exclusive lock on the run folder for the whole run (rank 0 holds it under torchrun).

    A second run into the same folder is refused at once; the lock dies with its process, so a killed run can be resumed.
    The hidden temporaries of writes a kill interrupted (`atomic_leftovers`) are deleted once the lock is held.
    """
    from filelock import FileLock, Timeout

    lock = None
    if world.is_main:
        out.mkdir(parents=True, exist_ok=True)
        lock = FileLock(out / RUN_LOCK, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            lock = None
        else:
            for name in RUN_FILES:
                for leftover in atomic_leftovers(out / name):
                    leftover.unlink(missing_ok=True)
    if not world.gather_json(lock is not None)[0]:  # every rank learns whether rank 0 holds it
        raise UserError(f"another run is writing into {out} (it holds {out / RUN_LOCK}); wait for it to end or choose another --out")
    try:
        yield
    finally:
        if lock is not None:
            lock.release()
