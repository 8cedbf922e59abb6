"""The one distillation loop: step a `Method` up to its iteration count, with callbacks around every step.

`condense distill` (`run_distillation`) logs, checkpoints and shows progress; condense-as-you-go in
continual learning shows progress and reads which real images each step drew; a time budget (benchmarks/
paper_gpu.py) stops the loop. All are this loop and its callbacks.
"""

from __future__ import annotations

import time
from pathlib import Path

from tqdm.auto import tqdm

from .methods import Method
from .runfolder import RunLog, save_checkpoint


class Callback:
    """What the loop calls: `stop` before every step (True ends the loop there; under torchrun every rank must answer
    alike, or the ranks wait on each other for ever), `on_step` after every step with its record (figures, "seconds",
    "real_indices"), `on_end` once."""

    def stop(self, distiller: Method) -> bool:
        return False

    def on_step(self, distiller: Method, record: dict) -> None:
        pass

    def on_end(self, distiller: Method) -> None:
        pass


class ProgressBar(Callback):
    def __init__(self, distiller: Method, show: bool = True, desc: str = "distilling", leave: bool = True):
        self.bar = tqdm(total=distiller.config.iterations, initial=distiller.iteration, desc=desc, disable=not show, unit="it", leave=leave)

    def on_step(self, distiller: Method, record: dict) -> None:
        self.bar.set_postfix(loss=f"{record['loss']:.2f}", calib=f"{record['calibration']:.2f}")
        self.bar.update(1)

    def on_end(self, distiller: Method) -> None:
        self.bar.close()


class LogLines(Callback):
    """A line of log.jsonl every `log_every` iterations and at the last (rank 0 alone writes)."""

    def __init__(self, distiller: Method, path: Path):
        self.log = RunLog(path, distiller.iteration) if distiller.world.is_main else None

    def on_step(self, distiller: Method, record: dict) -> None:
        last = distiller.iteration == distiller.config.iterations
        if self.log is not None and (distiller.iteration % distiller.config.log_every == 0 or last):
            self.log.write({k: v for k, v in record.items() if k != "real_indices"})


class Checkpoints(Callback):
    """A checkpoint every `checkpoint_every` iterations and at the last (collective under torchrun: every rank gathers)."""

    def __init__(self, path: Path):
        self.path = path

    def on_step(self, distiller: Method, record: dict) -> None:
        if distiller.iteration % distiller.config.checkpoint_every == 0 or distiller.iteration == distiller.config.iterations:
            save_checkpoint(distiller, self.path)


def iterate(distiller: Method, callbacks: list[Callback]) -> list[float]:
    """Step to `config.iterations` (from wherever the distiller stands); returns the seconds of every step."""
    seconds = []
    while distiller.iteration < distiller.config.iterations and not any(callback.stop(distiller) for callback in callbacks):
        start = time.perf_counter()
        record = distiller.step()
        seconds.append(time.perf_counter() - start)
        record["seconds"] = seconds[-1]
        for callback in callbacks:
            callback.on_step(distiller, record)
    for callback in callbacks:
        callback.on_end(distiller)
    return seconds


def run_distillation(distiller: Method, out: Path, progress: bool = True, callbacks: list[Callback] = ()) -> list[float]:
    """The loop of `condense distill`: log.jsonl, checkpoint.pt and a progress bar in the run folder `out`, then `callbacks`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    show = progress and distiller.world.is_main
    return iterate(distiller, [LogLines(distiller, out / "log.jsonl"), ProgressBar(distiller, show), Checkpoints(out / "checkpoint.pt"),
                               *callbacks])
