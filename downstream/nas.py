"""Architecture search with condensed proxies: rank candidate networks by training them on a small set.

Every candidate is trained on each proxy (a condensed set, a random real subset of the same IPC, the
real data for a few epochs) and on the reference (the real training data for a stated budget), then
tested on the real test split. How well a proxy ranks is the Spearman correlation of its accuracies
with the reference accuracies (REFERENCE.md section 4), over all candidates and over the top k by
reference accuracy; how useful it is, the reference accuracy of the candidate it picks and its time.
The result file is rewritten after every training, so a killed search continues where it stopped, and a
search rerun with another budget for one set (say, the condensed proxy's epochs) trains only that set again.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from condense.data import RealData
from condense.distributed import World
from condense.errors import UserError
from condense.nets import ACTIVATIONS, NORMS, POOLINGS, build_net
from condense.runtime import preset_copy, write_json
from condense.train import TrainConfig, accuracy, train

CONVNET_SPACE = {"depth": (1, 2, 3, 4), "width": (32, 64, 128, 256), "act": ACTIVATIONS, "norm": NORMS, "pool": POOLINGS}
PROXY_KINDS = ("condensed", "random", "real")
TOP_K = (5, 10, 20)
RESULT_FILE, PLOT_FILE = "nas.json", "nas.png"
# NasConfig fields that only shape one set (its header entry shows the change): a resumed search retrains that set alone
SET_SETTINGS = ("proxies", "condensed_epochs", "random_ipc", "random_epochs", "real_epochs", "reference_epochs", "real_per_class")


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


def convnet_space() -> list[dict]:
    """The 720 ConvNets of the DC protocol: depth x width x activation x normalisation x pooling."""
    return [{"net": "convnet", **dict(zip(CONVNET_SPACE, values))} for values in itertools.product(*CONVNET_SPACE.values())]


def load_space(space: str | list) -> list[dict]:
    """`convnet720`, a JSON file with a list of option dicts, or such a list; checked to be non-empty and distinct."""
    if isinstance(space, str):
        if space == "convnet720":
            return convnet_space()
        path = Path(space)
        if not path.is_file():
            raise UserError(f"unknown search space {space!r}; use convnet720 or a JSON file with a list of build_net option dicts")
        try:
            space = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            raise UserError(f"{path} is not UTF-8 JSON ({exc}); it must hold a list of build_net option dicts") from exc
    if not isinstance(space, list) or not space or not all(isinstance(item, dict) for item in space):
        raise UserError("the search space is empty or not a list of option dicts; give at least one, e.g. [{\"depth\": 3, \"width\": 64}]")
    space = [{"net": "convnet", **item} for item in space]
    names = [candidate_name(item) for item in space]
    if len(set(names)) != len(names):
        duplicate = next(name for name in names if names.count(name) > 1)
        raise UserError(f"the search space lists {duplicate} more than once; list every candidate once")
    return space


def candidate_name(candidate: dict) -> str:
    """A readable, unique key: `convnet(depth=3, width=64, act=relu, norm=instance, pool=avg)`."""
    options = ", ".join(f"{key}={value}" for key, value in candidate.items() if key != "net")
    return f"{candidate.get('net', 'convnet')}({options})"


def build_candidate(candidate: dict, channels: int, num_classes: int, image_size) -> torch.nn.Module:
    options = {key: value for key, value in candidate.items() if key != "net"}
    return build_net(candidate.get("net", "convnet"), channels, num_classes, image_size, **options)


def candidate_cost(candidate: dict, channels: int = 3, num_classes: int = 10, image_size=(32, 32)) -> dict:
    """Million multiply-accumulates per image and parameter count, measured on the meta device (no memory, no time)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        net = build_candidate(candidate, channels, num_classes, image_size)
        with FlopCounterMode(display=False) as counter:
            net(torch.zeros(1, channels, *image_size))
    return {"mmacs": counter.get_total_flops() / 2e6, "params": sum(p.numel() for p in net.parameters())}


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


def spearman(x, y) -> float | None:
    """Spearman's rank correlation (average ranks for ties); None when undefined (fewer than 2 points, a constant side)."""
    from scipy.stats import spearmanr

    if len(x) != len(y):
        raise ValueError(f"{len(x)} and {len(y)} values")
    if len(x) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on constant input and returns nan
        rho = float(spearmanr(x, y).statistic)
    return rho if math.isfinite(rho) else None


def rank_report(proxy: list[float], reference: list[float], names: list[str], top_k=TOP_K) -> dict:
    """Spearman over all and over the top k by reference accuracy; the reference accuracy of the proxy's pick vs the best."""
    by_reference = sorted(range(len(reference)), key=lambda i: -reference[i])
    report = {"spearman": {"all": spearman(proxy, reference)}}
    for k in top_k:
        top = by_reference[:k]
        report["spearman"][f"top{k}"] = spearman([proxy[i] for i in top], [reference[i] for i in top]) if len(reference) >= k else None
    pick = max(range(len(proxy)), key=lambda i: proxy[i])
    best = by_reference[0]
    report.update(pick=names[pick], pick_reference_accuracy=reference[pick], best=names[best],
                  best_reference_accuracy=reference[best], pick_rank=1 + by_reference.index(pick))
    return report


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
    if config.candidates is not None and config.candidates < 1:
        raise UserError(f"--candidates must be at least 1, got {config.candidates}")
    return load_space(config.space)


def training_sets(config: NasConfig, train_data: RealData, test: RealData, condensed=None) -> dict[str, TrainingSet]:
    """The proxies in `config.proxies` and the reference, each with its epochs."""
    from condense.baseline import random_subset
    from condense.evaluate import check_compatible, training_targets

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
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        net = build_candidate(candidate["options"], test.channels, test.num_classes, test.image_size)
    stats = train(net, training.images, training.targets, replace(config.train, epochs=training.epochs),
                  mean=training.mean, std=training.std, generator=torch.Generator().manual_seed(config.seed),
                  device=device, desc=desc, progress=progress)
    result = {"accuracy": accuracy(net, test, training.mean, training.std, device), "train_seconds": stats["seconds"],
              "images_seen": training.epochs * len(training.images), "final_loss": stats["loss"]}
    result["seconds"] = time.perf_counter() - start
    return result


def summarise(candidates: list[dict], proxies) -> dict:
    """Per proxy: rank report over the candidates finished so far, its search time and the reference's."""
    done = [c for c in candidates if "reference" in c["runs"] and all(p in c["runs"] for p in proxies)]
    summary = {"finished": len(done), "reference_search_seconds": sum(c["runs"]["reference"]["seconds"] for c in done),
               "reference_images_seen": sum(c["runs"]["reference"]["images_seen"] for c in done), "proxies": {}}
    if not done:
        return summary
    names = [c["name"] for c in done]
    reference = [c["runs"]["reference"]["accuracy"] for c in done]
    for proxy in proxies:
        seconds = sum(c["runs"][proxy]["seconds"] for c in done)
        images = sum(c["runs"][proxy]["images_seen"] for c in done)
        summary["proxies"][proxy] = {
            **rank_report([c["runs"][proxy]["accuracy"] for c in done], reference, names),
            "search_seconds": seconds,
            "images_seen": images,
            "reference_time_ratio": summary["reference_search_seconds"] / seconds if seconds else None,
            "reference_images_ratio": summary["reference_images_seen"] / images,
        }
    return summary


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
    """
    if not path.is_file():
        return {}
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise UserError(f"{path} is not UTF-8 JSON, so not a NAS result of this tool ({exc}); delete it or choose another --out") from exc
    if not isinstance(previous, dict):
        raise UserError(f"{path} holds JSON but not a NAS result of this tool; delete it or choose another --out")
    header = json.loads(json.dumps(header))

    def shared(result: dict) -> tuple:
        return {k: v for k, v in result.get("config", {}).items() if k not in SET_SETTINGS}, result.get("test")

    (config_now, test_now), (config_then, test_then) = shared(header), shared(previous)
    differ = [k for k in {**config_then, **config_now} if config_now.get(k) != config_then.get(k)]
    differ += [f"test split ({test_then} then, {test_now} now)"] if test_now != test_then else []
    if differ:
        raise UserError(f"{path} holds a search with other candidates, training or test settings: {', '.join(differ)}; "
                        "choose another --out, or delete it to start over")
    kept = {name for name, settings in header["sets"].items() if previous.get("sets", {}).get(name) == settings}
    return {c["name"]: {name: run for name, run in c["runs"].items() if name in kept} for c in previous.get("candidates", [])}


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
    result = save(complete=True)
    if world.is_main:
        plot_search(result, Path(out) / PLOT_FILE)
    return result


def pending_trainings(candidates: list[dict], set_names: list[str], ranks: int) -> list[list]:
    """The [candidate index, set name] trainings not done yet, in rounds of `ranks`: candidate by candidate
    in one process; under torchrun, blocks of `ranks` candidates, one set at a time for the whole block."""
    waiting = [index for index, candidate in enumerate(candidates) if any(name not in candidate["runs"] for name in set_names)]
    jobs = []
    for start in range(0, len(waiting), ranks):
        block = waiting[start : start + ranks]
        jobs += [[index, name] for name in set_names for index in block if name not in candidates[index]["runs"]]
    return jobs


def plot_search(result: dict, path: Path) -> Path:
    """Scatter of proxy accuracy against reference accuracy, one colour per proxy (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [c for c in result["candidates"] if len(c["runs"]) == len(result["sets"])]
    figure, axes = plt.subplots(figsize=(6, 5))
    reference = [c["runs"]["reference"]["accuracy"] for c in done]
    for proxy, report in result["summary"]["proxies"].items():
        rho = report["spearman"]["all"]
        label = f"{proxy} (ρ = {rho:.2f})" if rho is not None else proxy
        axes.scatter(reference, [c["runs"][proxy]["accuracy"] for c in done], label=label, s=22, alpha=0.8)
    axes.set_xlabel(f"reference accuracy (%), {result['sets']['reference']['epochs']} epochs on "
                    f"{result['sets']['reference']['images']} real images")
    axes.set_ylabel("proxy accuracy (%)")
    axes.set_title(f"{len(done)} candidates, tested on {result['test']}", fontsize=8)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    figure.savefig(tmp, dpi=120)
    plt.close(figure)
    tmp.replace(path)
    return path


def format_summary(result: dict) -> str:
    """A plain-text table: Spearman over all and the top k, the pick against the best, search times."""
    summary = result["summary"]
    reference = result["sets"]["reference"]
    lines = [
        f"{summary['finished']} candidates; reference: {reference['epochs']} epochs on {reference['description']}; test: {result['test']}",
        f"{'proxy':<10} {'rho all':>7} {'top5':>6} {'top10':>6} {'top20':>6}  {'pick ref acc':>12} {'best':>6}  {'search min':>10} {'ref/proxy time':>14} {'images':>7}",
    ]

    def figure(value):
        return "  n/a" if value is None else f"{value:.2f}"

    for proxy, report in summary["proxies"].items():
        rho = report["spearman"]
        ratio = report["reference_time_ratio"]
        lines.append(
            f"{proxy:<10} {figure(rho['all']):>7} {figure(rho['top5']):>6} {figure(rho['top10']):>6} {figure(rho['top20']):>6}  "
            f"{report['pick_reference_accuracy']:>11.2f}% {report['best_reference_accuracy']:>5.2f}%  "
            f"{report['search_seconds'] / 60:>10.1f} {figure(ratio):>13}x {report['reference_images_ratio']:>6.1f}x"
        )
    lines.append(f"{'reference':<10} {'':>7} {'':>6} {'':>6} {'':>6}  {'':>12} {'':>6}  {summary['reference_search_seconds'] / 60:>10.1f}")
    for proxy, report in summary["proxies"].items():
        lines.append(f"{proxy} picks {report['pick']} (reference rank {report['pick_rank']}); best: {report['best']}")
    return "\n".join(lines)
