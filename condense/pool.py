"""Extractor pool: P networks, each kept as its random init and its trained weights (safetensors).

A pool folder holds `manifest.json` (dataset, network, training settings, one entry per member with
its test accuracy) and `member-XXX-init.safetensors` / `member-XXX-trained.safetensors`. A pool is
reused when its manifest matches what is asked for (missing members are trained and added, so an
interrupted pretraining continues); a pool built for something else is refused with a clear error.
Weights are loaded into memory once; each iteration draws one member and a blend
θ = l·θ_init + (1 − l)·θ_trained, l ~ U(0, 1), written in place into a frozen matcher network.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .data import RealData
from .distributed import World
from .errors import UserError
from .nets import RENAMED_OPTIONS, Classifier, build_net, current_options, init_seed
from .runtime import atomic_path, write_json
from .train import TrainConfig, accuracy, train

MANIFEST = "manifest.json"
TEACHER_FILE = "teacher-trained.safetensors"  # `--soft-labels teacher`: trained as the members are, from its own initialisation
SOFT_LABEL_SOURCES = ("none", "pool", "ensemble", "teacher")  # the --soft-labels values that name no file
MEMBER_FILE = re.compile(r"member-\d{3,}-(init|trained)\.safetensors")  # the names `build_or_load_pool` writes

# BENCHMARKS.md: SGD lr 0.01, momentum 0.9, weight decay 5e-4, batch 128, DSA colour+crop, CutMix 0.5, constant lr.
POOL_TRAINING = TrainConfig(epochs=1, optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4, lr_decay_at=(), dsa="color_crop", cutmix_p=0.5)


@dataclass
class PoolSpec:
    """What a pool is: which data and network, trained how. Two pools match when their specs are equal."""

    dataset: str
    split: str
    num_classes: int
    channels: int
    image_size: tuple[int, int]
    net: str
    net_options: dict
    training: dict
    seed: int = 0

    def __post_init__(self) -> None:
        self.net_options = current_options(self.net_options)  # a spec written before an option's rename reads the same

    def to_dict(self) -> dict:
        """JSON-shaped (tuples as lists), so it compares equal to a manifest read back from disk."""
        return json.loads(json.dumps(self.__dict__))

    def digest(self) -> str:
        """A short hash of the spec, for default folder names; computed under the options' old names (`RENAMED_OPTIONS`),
        so a pool built before a rename keeps its folder."""
        import hashlib

        old_names = {new: old for old, new in RENAMED_OPTIONS.items()}
        spec = {**self.to_dict(), "net_options": {old_names.get(k, k): v for k, v in self.net_options.items()}}
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]

    def build(self) -> Classifier:
        return build_net(self.net, self.channels, self.num_classes, self.image_size, **self.net_options)


def _save_weights(net: torch.nn.Module, path: Path, spec: PoolSpec) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"pool_spec": json.dumps(spec.to_dict())})


def _load_weights(path: Path, net: torch.nn.Module, what_to_do: str) -> dict[str, torch.Tensor]:
    """The weights in `path`, checked to be `net`'s (same names and shapes); `what_to_do` ends every error."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise UserError(f"pool member file {path} is missing; {what_to_do}")
    try:
        weights = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types (and OSError) for a damaged file
        raise UserError(f"pool member file {path} is damaged ({type(exc).__name__}: {str(exc)[:200]}); {what_to_do}") from exc
    expected = {name: value.shape for name, value in net.state_dict().items()}
    if {name: value.shape for name, value in weights.items()} != expected:
        raise UserError(f"{path} does not hold the weights of its pool's network ({len(weights)} tensors, "
                        f"{len(expected)} expected, or other shapes); {what_to_do}")
    return weights


def member_spec(path: str | Path) -> PoolSpec:
    """The pool spec recorded in a pool member file (what data and network it was trained for)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such network file: {path}; pass a member-XXX-trained.safetensors file of a pool")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        spec = json.loads(metadata["pool_spec"])
        return PoolSpec(**{**spec, "image_size": tuple(spec["image_size"])})
    except Exception as exc:  # not safetensors, no or malformed pool_spec metadata
        raise UserError(f"{path} is not a pool member file ({type(exc).__name__}: {str(exc)[:200]}); "
                        "pass a member-XXX-trained.safetensors file written by `condense pretrain`") from exc


def load_member(path: str | Path, device: torch.device) -> Classifier:
    """A frozen network from one pool member file (its pool spec is in the file's metadata)."""
    net = member_spec(path).build()
    net.load_state_dict(_load_weights(Path(path), net, "pass another member-XXX-trained.safetensors file of a pool"))
    return net.to(device).eval().requires_grad_(False)


class Pool:
    """Pretrained members held in memory, and the frozen matcher they are blended into."""

    def __init__(self, spec: PoolSpec, members: list[tuple[dict, dict]], device: torch.device):
        if not members:
            raise UserError("the pool has no members; use a pool size of at least 1")
        self.spec = spec
        self.members = [({k: v.to(device) for k, v in init.items()}, {k: v.to(device) for k, v in trained.items()}) for init, trained in members]
        self.matcher = self.frozen_net(device)
        self.trained_net = self.frozen_net(device)

    def frozen_net(self, device: torch.device) -> Classifier:
        net = self.spec.build().to(device)
        net.requires_grad_(False)
        return net.eval()

    def draw(self, generator: torch.Generator) -> tuple[int, float]:
        """Pick a member and a blend l at random; load the blend into `matcher` and the trained weights into `trained_net`."""
        member = int(torch.randint(len(self.members), (1,), generator=generator))
        blend = float(torch.rand(1, generator=generator))
        init, trained = self.members[member]
        with torch.no_grad():
            for name, value in self.matcher.state_dict().items():
                if value.is_floating_point():
                    torch.lerp(trained[name], init[name], blend, out=value)  # l*init + (1-l)*trained
                else:
                    value.copy_(trained[name])
            self.trained_net.load_state_dict(trained)
        return member, blend


def _read_manifest(folder: Path) -> dict | None:
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not valid UTF-8 JSON ({exc}); delete the pool folder to rebuild it") from exc
    if not (isinstance(manifest, dict) and isinstance(manifest.get("spec"), dict) and isinstance(manifest.get("members"), list)):
        raise UserError(f"{path} is not a pool manifest (no spec and members); delete the pool folder to rebuild it")
    for member in manifest["members"]:  # a copied pool folder's manifest must not name files outside it
        names = [member.get(key) for key in ("init", "trained")] if isinstance(member, dict) else [None]
        if not all(isinstance(name, str) and MEMBER_FILE.fullmatch(name) for name in names):
            raise UserError(f"{path} names member files outside the pool folder or of another shape ({member!r}); delete the pool folder to rebuild it")
    if isinstance(manifest["spec"].get("net_options"), dict):  # old option names read as the current ones
        manifest["spec"]["net_options"] = current_options(manifest["spec"]["net_options"])
    return manifest


def _read_progress(path: Path, spec: PoolSpec, indices: list[int]) -> dict | None:
    """The training of members `indices` saved mid-way in `path`, or None (no file, or one of another pool or members)."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated or damaged (torch raises several types); a pickle of anything else is never loaded
        raise UserError(f"{path} (pool training saved mid-way) cannot be read ({type(exc).__name__}); "
                        f"delete it to train members {indices[0]}-{indices[-1]} from their start") from exc
    return state if isinstance(state, dict) and state.get("spec") == spec.to_dict() and state.get("indices") == indices else None


def _pretrain_members(spec: PoolSpec, indices: list[int], real: RealData, device: torch.device, progress: bool,
                      progress_file: Path | None = None, on_saved: Callable[[str], None] | None = None,
                      stream: str = "pool") -> list[tuple[Classifier, Classifier, dict]]:
    """Members `indices`, trained at once (`train` on a list): each one's trained network, a copy of its
    random init, and its training figures (with its seed). Each member is seeded by its index alone (the pool's
    stream of `init_seed`, which no evaluation run shares), so it draws the same alone or with others; only the
    rounding differs, which training amplifies (`train`).

    With `progress_file`, every epoch but the last (whose weights go into the member files) is saved there and
    `on_saved(where)` runs after each save; a training of these members saved there continues to the same weights."""
    seeds = [init_seed(stream, spec.seed, index) for index in indices]
    nets = []
    for seed in seeds:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            nets.append(spec.build())
    inits = [copy.deepcopy(net) for net in nets]
    training = replace(POOL_TRAINING, **{k: (tuple(v) if isinstance(v, list) else v) for k, v in spec.training.items()})
    members = f"member{'s' if len(indices) > 1 else ''} {', '.join(map(str, indices))}"

    def save(done: int, state: Callable[[], dict]) -> None:
        if progress_file is not None and done < training.epochs:
            with atomic_path(progress_file) as tmp:
                torch.save({"spec": spec.to_dict(), "indices": indices, **state()}, tmp)
            if on_saved is not None:
                on_saved(f"after epoch {done} of {training.epochs} of {members}")

    stats = train(nets, real.images, real.labels, training, mean=real.mean, std=real.std,
                  generator=[torch.Generator().manual_seed(seed) for seed in seeds], device=device, desc=members, progress=progress,
                  state=_read_progress(progress_file, spec, indices) if progress_file is not None else None, after_epoch=save)
    return [(net, init, {**figures, "seed": seed}) for net, init, figures, seed in zip(nets, inits, stats, seeds)]


def build_or_load_teacher(folder: str | Path, spec: PoolSpec, real: RealData, device: torch.device, progress: bool = True) -> Path:
    """The pool's teacher file (`TEACHER_FILE`), trained on the first call: a network trained as the members are but
    initialised from the teacher's stream of `init_seed`, so that soft labels come from a network whose initial weights
    are no member's (member 0, `--soft-labels pool`, is among the networks the images were matched on)."""
    path = Path(folder) / TEACHER_FILE
    if not path.is_file():
        ((net, _, _),) = _pretrain_members(spec, [0], real, device, progress, stream="teacher")
        _save_weights(net, path, spec)
    return path


def pretrain_pool(spec: PoolSpec, size: int, real: RealData, device: torch.device, progress: bool = True, batched: bool = False) -> Pool:
    """A pool of `size` members pretrained on `real` and kept in memory only (nothing is written).

    The members are the ones `build_or_load_pool` would train for the same spec and data; used where
    the data is itself ephemeral (condense-as-you-go trains matchers on the classes seen so far).
    `batched` trains all members at once instead of one after the other.
    """
    members = []
    for group in tqdm(World().groups(list(range(size)), batched), desc="pretraining pool", disable=not progress, unit="group" if batched else "net", leave=False):
        members += [(init.state_dict(), net.state_dict()) for net, init, _ in _pretrain_members(spec, group, real, device, progress)]
    return Pool(spec, members, device)


def build_or_load_pool(folder: str | Path, spec: PoolSpec, size: int, real: RealData, test: RealData | None,
                       device: torch.device, progress: bool = True, world: World | None = None, batched: bool = False,
                       on_saved: Callable[[str], None] | None = None) -> Pool:
    """Reuse the pool in `folder` if it matches `spec`, training any missing members up to `size`.

    Under torchrun (`world`) the missing members are trained in parallel, one per rank and round;
    each rank writes its members' files and rank 0 adds every round to the manifest, so an
    interrupted pretraining keeps its finished rounds. Several machines need `folder` on a shared filesystem.
    `batched` trains each rank's missing members at once (one round; the files and manifest are the same).
    Every epoch of a group's training (but its last) is saved in `progress-members-F-L.pt`, so a kill loses at most one
    epoch; `on_saved(where)` runs after each such save (`benchmarks/paper_gpu.py` stops there when its time is spent).
    """
    world = world or World()
    folder = Path(folder)
    manifest = _read_manifest(folder)
    if manifest is not None and manifest["spec"] != spec.to_dict():
        theirs = manifest["spec"]
        differences = [f"{key}: {theirs.get(key)!r} there, {value!r} here" for key, value in spec.to_dict().items() if theirs.get(key) != value]
        raise UserError(f"the pool in {folder} was built for something else ({'; '.join(differences)}); pass another --pool-folder or delete it")
    manifest = manifest or {"spec": spec.to_dict(), "members": []}
    net, rebuild = spec.build(), "delete the pool folder to rebuild it"  # a network that cannot be built is refused before the folder exists
    folder.mkdir(parents=True, exist_ok=True)

    def train_group(indices: list[int]) -> list[dict]:
        entries = []
        progress_file = folder / f"progress-members-{indices[0]:03d}-{indices[-1]:03d}.pt"
        for index, (net, init, stats) in zip(indices, _pretrain_members(spec, indices, real, device, progress, progress_file, on_saved)):
            names = {"init": f"member-{index:03d}-init.safetensors", "trained": f"member-{index:03d}-trained.safetensors"}
            _save_weights(init, folder / names["init"], spec)
            _save_weights(net, folder / names["trained"], spec)
            entry = {"index": index, **names, "seed": stats["seed"], "train_loss": stats["loss"], "seconds": stats["seconds"]}
            if test is not None:
                entry["test_accuracy"] = accuracy(net, test, real.mean, real.std, device)
            entries.append(entry)
        return entries

    def record(_, groups: list[list[dict]]) -> None:
        manifest["members"].extend(entry for entries in groups for entry in entries)
        if world.is_main:
            write_json(folder / MANIFEST, manifest)

    groups = world.groups(list(range(len(manifest["members"]), size)), batched)
    world.map_in_rounds(groups, train_group, record, desc="pretraining pool", unit="group" if batched else "net", progress=progress)
    if world.is_main:  # every round is in the manifest now: the epochs saved mid-way are done with
        for finished in folder.glob("progress-members-*.pt"):
            finished.unlink()
    members = [(_load_weights(folder / m["init"], net, rebuild), _load_weights(folder / m["trained"], net, rebuild)) for m in manifest["members"][:size]]
    return Pool(spec, members, device)
