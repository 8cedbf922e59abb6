"""The search: its settings and presets, the proxies and the reference, and the resumable runner.

Every candidate is trained on each proxy (a condensed set, a random real subset of the same IPC, the
real data for a few epochs) and on the reference (the real training data for a stated budget), then
tested on the real test split. The result file is rewritten after every training, so a killed search
continues where it stopped, and a search rerun with another budget for one set (say, the condensed
proxy's epochs) trains only that set again.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

import torch

from condense.baseline import random_subset
from condense.data import RealData
from condense.distributed import World
from condense.errors import UserError
from condense.evaluate import check_compatible, train_runs, training_targets
from condense.flags import check_numbers
from condense.nets import current_options, seeded_net
from condense.runtime import preset_copy, read_json, write_json
from condense.train import TrainConfig

from .ranking import summarise
from .space import candidate_name, load_space, sample_candidates, split_candidate

PROXY_KINDS = ("condensed", "random", "real")
RESULT_FILE = "nas.json"
# NasConfig fields that only shape one set (its header entry shows the change): a resumed search retrains that set alone
SET_SETTINGS = ("proxies", "condensed_epochs", "random_ipc", "random_epochs", "real_epochs", "reference_epochs", "real_per_class")
# NasConfig counts that must be at least 1 when given (None: all of them, or as many steps as the condensed proxy)
COUNTS = ("candidates", "condensed_epochs", "random_ipc", "random_epochs", "real_epochs", "reference_epochs", "real_per_class",
          "test_per_class")


@dataclass
class NasConfig:
    """What to search and how to train. `None` counts mean: all of them."""

    space: str = "convnet720"  # convnet720, or a JSON file holding a list of build_net option dicts ("net" defaults to convnet)
    candidates: int | None = 24  # how many to sample (seeded) from the space
    max_mmacs: float | None = None  # sample only among candidates of at most this many million multiply-accumulates per image
    proxies: tuple[str, ...] = PROXY_KINDS
    condensed_epochs: int = 300
    random_ipc: int = 10
    random_epochs: int | None = None  # None: as many optimisation steps as the condensed proxy
    real_epochs: int = 1
    reference_epochs: int = 100
    real_per_class: int | None = None  # class-balanced subset of the training split for the real proxy and the reference
    test_per_class: int | None = None  # class-balanced subset of the test split
    seed: int = 0
    train: TrainConfig = field(default_factory=TrainConfig)  # the evaluation protocol; epochs set per set

    def to_dict(self) -> dict:
        return {**asdict(self), "proxies": list(self.proxies)}


NAS_PRESETS = {
    # CPU scale (about 2.7 hours of single-thread training, 1.9 of them the reference): 24 architectures no costlier
    # than the evaluation ConvNet (ConvNet-3 width 64, 13.6 MMACs); plain training (no DSA, no CutMix); condensed set
    # 80 epochs (80 steps for an IPC-10 set without multi-formation), random IPC-10 subset as many steps, real data
    # 1 epoch; reference = the full training split for 3 epochs; 200 test images per class.
    "cifar10-cpu": NasConfig(candidates=24, max_mmacs=15.0, condensed_epochs=80, reference_epochs=3, test_per_class=200,
                             train=TrainConfig(dsa="", cutmix_p=0.0)),
    # Paper scale (GPU): all 720 ConvNets with the evaluation protocol (DSA, CutMix); condensed set 300 epochs;
    # reference = the full training split for 100 epochs; the full test split.
    "cifar10-paper": NasConfig(candidates=None, condensed_epochs=300, reference_epochs=100),
}


def nas_preset(name: str) -> NasConfig:
    return preset_copy(NAS_PRESETS, name, "NAS")


@dataclass
class TrainingSet:
    """Images (uint8 or float in [0, 1]) with their targets and the statistics to normalise them with."""

    images: torch.Tensor
    targets: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    epochs: int
    description: str


def check_config(config: NasConfig, condensed_given: bool) -> list[dict]:
    """Refuse unknown proxies, a missing condensed set and bad counts before any data is loaded; the search space."""
    unknown = sorted(set(config.proxies) - set(PROXY_KINDS))
    if unknown or not config.proxies:
        raise UserError(f"unknown proxy {', '.join(unknown) or '(none given)'}; choose among {', '.join(PROXY_KINDS)}")
    if "condensed" in config.proxies and not condensed_given:
        raise UserError("the condensed proxy needs a condensed set; pass --condensed PATH_OR_REPO (or leave the proxy out)")
    check_numbers(config, dict.fromkeys(COUNTS, 1))
    return load_space(config.space)


def training_sets(config: NasConfig, train_data: RealData, test: RealData, condensed=None) -> dict[str, TrainingSet]:
    """The proxies in `config.proxies` and the reference, each with its epochs."""
    real_data = train_data if config.real_per_class is None else train_data.balanced_subset(config.real_per_class, config.seed)
    real_images, real_labels = real_data.images, real_data.labels
    real = f"{len(real_labels)} real images of {train_data.source} [{train_data.split}]"
    sets = {}
    steps = None
    if "condensed" in config.proxies:
        check_compatible(condensed, test)
        targets, kind = training_targets(condensed, "hard")  # stored soft labels are stale under augmentation
        sets["condensed"] = TrainingSet(condensed.images, targets, condensed.mean, condensed.std, config.condensed_epochs,
                                        f"{condensed.summary()}, {kind} labels")
        steps = config.condensed_epochs * math.ceil(len(condensed) / config.train.batch_size)
    if "random" in config.proxies:
        subset = random_subset(train_data, config.random_ipc, config.seed)
        epochs = config.random_epochs or (steps // math.ceil(len(subset) / config.train.batch_size) if steps else config.condensed_epochs)
        sets["random"] = TrainingSet(subset.images, subset.labels, subset.mean, subset.std, epochs, subset.summary())
    if "real" in config.proxies:
        sets["real"] = TrainingSet(real_images, real_labels, train_data.mean, train_data.std, config.real_epochs, real)
    sets["reference"] = TrainingSet(real_images, real_labels, train_data.mean, train_data.std, config.reference_epochs, real)
    return sets


def test_subset(test: RealData, per_class: int | None, seed: int) -> RealData:
    return test if per_class is None else test.balanced_subset(per_class, seed)


def train_candidate(candidate: dict, training: TrainingSet, test: RealData, config: NasConfig, device: torch.device,
                    progress: bool, desc: str) -> dict:
    """Train a fresh network of `candidate` on one set, test it; the same initial weights for every set."""
    start = time.perf_counter()
    net, options = split_candidate(candidate["options"])
    make_net = partial(seeded_net, net, test.channels, test.num_classes, test.image_size, **options)
    (run,) = train_runs(make_net, training.images, training.targets, replace(config.train, epochs=training.epochs), [config.seed], device,
                        mean=training.mean, std=training.std, test=test, desc=desc, progress=progress)
    result = {"accuracy": run["accuracy"], "train_seconds": run["seconds"], "images_seen": training.epochs * len(training.images),
              "final_loss": run["loss"]}
    result["seconds"] = time.perf_counter() - start
    return result


def set_header(name: str, training: TrainingSet) -> dict:
    """What identifies a set in the result file; the condensed set (a user's file) also by a hash of its contents."""
    header = {"description": training.description, "epochs": training.epochs, "images": len(training.images)}
    if name == "condensed":
        digest = hashlib.sha256(training.images.cpu().contiguous().numpy().tobytes())
        digest.update(training.targets.cpu().contiguous().numpy().tobytes())
        header["sha256"] = digest.hexdigest()
    return header


def read_previous(path: Path, header: dict) -> dict[str, dict]:
    """Finished trainings per candidate from an earlier search in `path` (empty when there is none).

    The candidates, the training protocol and the test split must be the same; trainings on a set whose
    settings changed (its epochs, its images, another condensed file) are dropped, to be trained again.
    A search written before an option's rename (`pool`) is read under the current names.
    """
    if not path.is_file():
        return {}
    previous = read_json(path, "NAS result")
    problem = "it is not a JSON object" if not isinstance(previous, dict) else _result_problem(previous)
    if problem:
        raise UserError(f"{path} holds JSON but not a NAS result of this tool ({problem}); delete it or choose another --out")
    header = json.loads(json.dumps(header))

    def shared(result: dict) -> tuple:
        config = {k: v for k, v in result.get("config", {}).items() if k not in SET_SETTINGS}
        if isinstance(config.get("space"), list):
            config["space"] = [current_options(item) for item in config["space"]]
        return config, result.get("test")

    (config_now, test_now), (config_then, test_then) = shared(header), shared(previous)
    differ = [k for k in {**config_then, **config_now} if config_now.get(k) != config_then.get(k)]
    differ += [f"test split ({test_then} then, {test_now} now)"] if test_now != test_then else []
    if differ:
        raise UserError(f"{path} holds a search with other candidates, training or test settings: {', '.join(differ)}; "
                        "choose another --out, or delete it to start over")
    kept = {name for name, settings in header["sets"].items() if previous.get("sets", {}).get(name) == settings}
    return {candidate_name(current_options(c["options"])): {name: run for name, run in c["runs"].items() if name in kept}
            for c in previous.get("candidates", [])}


def _result_problem(previous: dict) -> str | None:
    """What keeps a nas.json read back from the shape `run_search` writes (the parts a resume reads), or None."""
    config, sets, candidates = previous.get("config", {}), previous.get("sets", {}), previous.get("candidates", [])
    if not isinstance(config, dict) or not isinstance(sets, dict):
        return "its 'config' and 'sets' must be objects"
    if isinstance(config.get("space"), list) and not all(isinstance(item, dict) for item in config["space"]):
        return "its config's 'space' must be a list of option objects"
    if not isinstance(candidates, list) or not all(isinstance(c, dict) and isinstance(c.get("options"), dict) and isinstance(c.get("runs"), dict)
                                                   for c in candidates):
        return "its 'candidates' must be a list of objects with 'options' and 'runs'"
    runs = [run for c in candidates for run in c["runs"].values()]
    if not all(isinstance(run, dict) and all(isinstance(run.get(key), (int, float)) for key in ("accuracy", "seconds", "images_seen"))
               for run in runs):
        return "every run must be an object with a numeric accuracy, seconds and images_seen"
    return None


def run_search(config: NasConfig, train_data: RealData, test: RealData, out: str | Path, *, condensed=None,
               device: torch.device | None = None, progress: bool = True, world: World | None = None) -> dict:
    """Train every sampled candidate on every proxy and the reference; write `out`/nas.json after each round.

    A round is one training (one process) or one per rank under torchrun (`world`): the same set for
    neighbouring candidates, so a round's trainings cost about the same. Rank 0 writes the file.
    """
    device = device or torch.device("cpu")
    world = world or World()
    space = check_config(config, condensed is not None)
    sets = training_sets(config, train_data, test, condensed)
    test = test_subset(test, config.test_per_class, config.seed)
    candidates = sample_candidates(space, config.candidates, config.seed, config.max_mmacs,
                                   test.channels, test.num_classes, test.image_size)
    header = {
        "config": config.to_dict(),
        "sets": {name: set_header(name, s) for name, s in sets.items()},
        "test": f"{len(test)} images of {test.source} [{test.split}]",
    }
    path = Path(out) / RESULT_FILE
    previous = read_previous(path, header)
    proxies = [name for name in sets if name != "reference"]
    for candidate in candidates:
        candidate["runs"] = previous.get(candidate["name"], {})

    def save(complete: bool) -> dict:
        result = {**header, "device": str(device), "complete": complete, "candidates": candidates,
                  "summary": summarise(candidates, proxies)}
        if world.is_main:
            write_json(path, result)
        return result

    def train_one(job: list) -> dict:
        index, name = job
        return train_candidate(candidates[index], sets[name], test, config, device, progress, f"{index + 1}/{len(candidates)} {name}")

    def record(round_jobs: list, results: list[dict]) -> None:
        for (index, name), result in zip(round_jobs, results):
            candidates[index]["runs"][name] = result
        save(complete=False)

    world.map_in_rounds(pending_trainings(candidates, list(sets), world.size), train_one, record,
                        desc="trainings", unit="net", progress=progress)
    return save(complete=True)


def pending_trainings(candidates: list[dict], set_names: list[str], ranks: int) -> list[list]:
    """The [candidate index, set name] trainings not done yet, in rounds of `ranks`: candidate by candidate
    in one process; under torchrun, blocks of `ranks` candidates, one set at a time for the whole block."""
    waiting = [index for index, candidate in enumerate(candidates) if any(name not in candidate["runs"] for name in set_names)]
    jobs = []
    for start in range(0, len(waiting), ranks):
        block = waiting[start : start + ranks]
        jobs += [[index, name] for name in set_names for index in block if name not in candidates[index]["runs"]]
    return jobs
