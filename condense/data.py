"""Real image-classification data: load through `datasets`, keep uint8 tensors and a per-class index.

Any Hugging Face dataset with an image column and a class-label column works, by Hub id
(`uoft-cs/cifar10`) or local folder in Hub layout (`../shared/data/cifar10`). Images are decoded
once with `Dataset.map` (so `datasets` caches the decoded arrays) and held in memory as uint8, or
left memory-mapped in that cache. A split too large to download or cache is read as a stream
(`streaming=True`) in one pass that keeps a uniform random sample of each class (per-class reservoirs).
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .arrow import ArrowImages, chunk_pixels
from .errors import UserError
from .runtime import is_local, published_name, source_identity

# The seed of the held-out images (`RealData.holdout_split`): the same for every run, so a distillation and a later
# `condense eval --holdout` hold out the same images; no other draw uses it (a random subset of seed 0 would pick them first).
HOLDOUT_SEED = 240_003

# Normalisation statistics the field uses for the well-known datasets (BENCHMARKS.md for CIFAR/MNIST).
KNOWN_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "mnist": ((0.1307,), (0.3081,)),
    "fashionmnist": ((0.2861,), (0.3530,)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


GREY_MODES = ("L", "1", "I", "I;16", "F")  # PIL modes decoded to one channel


def known_stats_key(source: str) -> str | None:
    """The KNOWN_STATS key for a Hub id or folder name (`uoft-cs/cifar10` -> `cifar10`), if any."""
    name = re.sub(r"[^a-z0-9]", "", Path(source.rstrip("/")).name.lower())
    if name in KNOWN_STATS:
        return name
    if "imagenet" in name or name.startswith(("imagenette", "imagewoof")):
        return "imagenet"
    return None


@dataclass
class RealData:
    """One split of a real dataset: uint8 images [N,C,H,W] (in memory, or `ArrowImages` memory-mapped),
    int64 labels and a per-class index."""

    images: torch.Tensor | ArrowImages
    labels: torch.Tensor
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str
    split: str
    revision: str | None = None  # as asked for (None: the default branch)
    commit: str | None = None  # the Hub commit the split was read at (None for a local folder, or offline)
    held_out: int | None = None  # images per class held out of a train split (`holdout_split`): a validation split, not a test split
    by_class: list[torch.Tensor] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.source = source_identity(self.source)
        order = torch.argsort(self.labels, stable=True)
        counts = torch.bincount(self.labels, minlength=self.num_classes).tolist()
        self.by_class = list(torch.split(order, counts))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def name(self) -> str:
        """The dataset as published sets and cards name it: its Hub id, or a local folder's name, never this machine's path."""
        return published_name(self.source)

    @functools.cached_property
    def fingerprint(self) -> str:
        """sha256 of the split's labels and pixels (its first 16 hex digits): names a local folder's data where its
        path means nothing, so two sets made from the same split can be told to share it."""
        digest = hashlib.sha256(self.labels.numpy().tobytes())
        for start in range(0, len(self.labels), 4096):
            digest.update(self.images[start : start + 4096].numpy().tobytes())
        return f"sha256:{digest.hexdigest()[:16]}"

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.images.shape[2:])

    def __len__(self) -> int:
        return len(self.labels)

    def class_indices(self, cls: int, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """`count` distinct random indices of class `cls` (without replacement)."""
        pool = self.by_class[cls]
        if count > len(pool):
            raise UserError(
                f"class {cls} ({self.class_names[cls]!r}) of {self.source} [{self.split}] has only "
                f"{len(pool)} images, but {count} were asked for; ask for at most {len(pool)} per class"
            )
        return pool[torch.randperm(len(pool), generator=generator)[:count]]

    def balanced_indices(self, per_class: int, generator: torch.Generator | None = None, classes=None) -> torch.Tensor:
        """`per_class` random indices of every class (or of `classes`), grouped by class."""
        classes = range(self.num_classes) if classes is None else classes
        return torch.cat([self.class_indices(c, per_class, generator) for c in classes])

    def balanced_subset(self, per_class: int, seed: int = 0) -> RealData:
        """`per_class` random images of every class (seeded), as RealData of its own."""
        indices = self.balanced_indices(per_class, torch.Generator().manual_seed(seed))
        return self.subset(indices, f"{self.split}[{per_class} per class, seed {seed}]")

    def subset(self, indices: torch.Tensor, split: str) -> RealData:
        """The images at `indices` as RealData of its own named `split` (memory-mapped images stay mapped)."""
        images = self.images.select(indices) if isinstance(self.images, ArrowImages) else self.images[indices]
        return RealData(images, self.labels[indices], list(self.class_names), self.mean, self.std, self.source, split, self.revision,
                        self.commit, held_out=self.held_out)

    def holdout_split(self, per_class: int) -> tuple[RealData, RealData]:
        """(the rest, `per_class` held-out images of every class): a validation split carved from this one.

        Drawn by `HOLDOUT_SEED`, so every run holds out the same images, and nested (the images held out at N are among
        those held out at any larger N). Both halves are named for what they are, so a pool pretrained on the rest has
        its own spec (and folder); the held-out half has `held_out` set, which evaluations report.
        """
        smallest = min(len(indices) for indices in self.by_class)
        if not 0 < per_class < smallest:
            raise UserError(f"--holdout takes 1 to {smallest - 1} images per class (the smallest class of {self.source} [{self.split}] "
                            f"has {smallest}, and at least one must stay to train on), got {per_class}")
        held = self.balanced_indices(per_class, torch.Generator().manual_seed(HOLDOUT_SEED))
        keep = torch.ones(len(self), dtype=torch.bool)
        keep[held] = False
        rest = self.subset(keep.nonzero().flatten(), f"{self.split}[minus {per_class} held out per class]")
        validation = self.subset(held, f"{self.split}[{per_class} held out per class]")
        validation.held_out = per_class
        return rest, validation

    def floats(self, indices: torch.Tensor | None = None) -> torch.Tensor:
        """Images as float32 in [0, 1] (all of them, or those at `indices`)."""
        images = self.images if indices is None else self.images[indices]
        return images.float().div_(255)


def _load(source: str, split: str, config: str | None, revision: str | None, streaming: bool = False):
    import datasets

    if is_local(source) and not Path(source).expanduser().exists():
        raise UserError(f"no such folder: {source}; pass an existing folder or a Hub id such as uoft-cs/cifar10")
    where = str(Path(source).expanduser()) if is_local(source) else source
    try:
        splits = datasets.get_dataset_split_names(where, config_name=config, revision=revision)
    except Exception as exc:  # datasets raises many types for "cannot find or reach this dataset"
        raise UserError(
            f"cannot load dataset {source!r}: {type(exc).__name__}: {exc}. Pass a local folder in Hub "
            "layout or a Hub id you can reach (check the spelling, your network and HF_TOKEN)"
        ) from exc
    if split not in splits:
        raise UserError(f"dataset {source!r} has no split {split!r}; it has: {', '.join(splits)}")
    ds = datasets.load_dataset(where, name=config, split=split, revision=revision, streaming=streaming)
    if ds.features is None:  # a stream of files without declared features (plain JSON or CSV rows)
        raise UserError(f"the stream of {source!r} [{split}] does not declare its columns' types; load it without streaming")
    return ds


def _pick_column(features, wanted: str | None, kind, flag: str, what: str) -> str:
    columns = ", ".join(f"{name} ({type(feat).__name__})" for name, feat in features.items())
    if wanted is not None:
        if wanted not in features:
            raise UserError(f"no column {wanted!r} in the dataset; its columns are: {columns}")
        return wanted
    found = [name for name, feat in features.items() if isinstance(feat, kind)]
    if not found:
        raise UserError(f"no {what} column found (columns: {columns}); name one with {flag} NAME")
    if len(found) > 1:
        raise UserError(f"several {what} columns ({', '.join(found)}); choose one with {flag} NAME")
    return found[0]


def _class_names(feature, label_column: str, labels: np.ndarray) -> list[str]:
    import datasets

    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names)
    if isinstance(feature, datasets.Value) and feature.dtype.startswith(("int", "uint")):
        return [str(i) for i in range(int(labels.max()) + 1)]
    raise UserError(f"column {label_column!r} is {feature}, not a class label; name an integer or ClassLabel column")


class ClassReservoirs:
    """A uniform random sample of at most `per_class` items of every class, from one pass over a stream.

    Algorithm R per class: the n-th item of a class replaces a random kept one with probability
    per_class / n, so every item of the class is kept with the same probability. `per_class=None` keeps all.
    """

    def __init__(self, per_class: int | None, seed: int = 0):
        if per_class is not None and per_class < 1:
            raise UserError(f"images kept per class must be at least 1, got {per_class}")
        self.per_class, self.random = per_class, random.Random(seed)
        self.kept: dict[int, list] = {}
        self.seen: dict[int, int] = {}

    def offer(self, label: int, make_item) -> None:
        """The next item of class `label`; `make_item()` (e.g. decoding) runs only when the item is kept."""
        seen = self.seen[label] = self.seen.get(label, 0) + 1
        kept = self.kept.setdefault(label, [])
        if self.per_class is None or len(kept) < self.per_class:
            kept.append((seen, make_item()))
            return
        slot = self.random.randrange(seen)
        if slot < self.per_class:
            kept[slot] = (seen, make_item())

    def items(self) -> list[tuple[int, object]]:
        """(label, item) of every kept item, by class and, within a class, in stream order."""
        return [(label, item) for label in sorted(self.kept) for _, item in sorted(self.kept[label], key=lambda kept: kept[0])]


def _decode_one(decoder, image_column: str, encoded: dict) -> np.ndarray:
    """One encoded image ({bytes, path}) through a `_decoder` batch function."""
    import datasets

    return decoder({image_column: [datasets.Image().decode_example(encoded)]})["pixels"][0]


def _stream_pixels(ds, image_column: str, label_column: str, size: int | None, per_class: int | None, seed: int, split: str):
    """One pass over a streamed split: per-class reservoirs of decoded uint8 images [H,W,C] and their labels."""
    import datasets
    from tqdm.auto import tqdm

    rows = ds.cast_column(image_column, datasets.Image(decode=False)).select_columns([image_column, label_column])
    reservoirs, decode = ClassReservoirs(per_class, seed), None
    total = ds.info.splits[split].num_examples if ds.info.splits and split in ds.info.splits else None
    for row in tqdm(rows, total=total, desc=f"Streaming {split} images", unit=" images", mininterval=1):
        if decode is None:  # the first image fixes the mode, as in the decoded path
            mode = "L" if datasets.Image().decode_example(row[image_column]).mode in GREY_MODES else "RGB"
            decode = functools.partial(_decode_one, _decoder(image_column, mode, size), image_column)
        reservoirs.offer(int(row[label_column]), functools.partial(decode, row[image_column]))
    kept = reservoirs.items()
    if not kept:
        raise UserError(f"the stream of split {split!r} is empty")
    return np.stack([pixels for _, pixels in kept]), np.array([label for label, _ in kept], dtype=np.int64)


def _decoder(image_column: str, mode: str, size: int | None):
    """A batched `map` function turning PIL images into fixed-shape uint8 arrays [H,W,C]."""
    first_size: list[tuple[int, int]] = []

    def decode(batch):
        arrays = []
        for image in batch[image_column]:
            image = image.convert(mode)
            if size is not None and image.size != (size, size):
                image = image.resize((size, size), resample=2)  # bilinear
            first_size[:] = first_size or [image.size]
            if image.size != first_size[0]:
                raise UserError(
                    f"images have different sizes ({first_size[0]} and {image.size}); "
                    "pass --image-size N to resize them all to N x N"
                )
            array = np.asarray(image, dtype=np.uint8)
            arrays.append(array[:, :, None] if array.ndim == 2 else array)
        return {"pixels": arrays}

    return decode


def _uint8_pixels(column, shape: tuple[int, int, int]) -> np.ndarray:
    """The fixed-shape Arrow `pixels` column (chunked) as one uint8 array [N,H,W,C], without Python objects."""
    return np.concatenate([chunk_pixels(chunk, shape) for chunk in column.chunks])


def load_real(source: str, split: str = "train", *, config: str | None = None, revision: str | None = None, image_column: str | None = None,
              label_column: str | None = None, image_size: int | None = None, stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
              memory_mapped: bool = False, streaming: bool = False, per_class: int | None = None, seed: int = 0) -> RealData:
    """Load one split of an image-classification dataset (Hub id or local folder).

    The images are decoded once into `datasets`' Arrow cache; by default they are then copied into
    memory, with `memory_mapped` they stay on disk and batches read only their own rows. With
    `streaming` nothing is downloaded or cached in full: one pass over the split keeps `per_class`
    random images of every class (all of them when None), decoded in memory, chosen by `seed`.
    """
    import datasets

    if image_size is not None and image_size < 1:
        raise UserError(f"--image-size must be at least 1 (pixels), got {image_size}")
    if memory_mapped and streaming:
        raise UserError("choose memory-mapped or streamed data, not both")
    if per_class is not None and not streaming:
        raise UserError("keeping a number of images per class is for streamed data; for a loaded split use RealData.balanced_subset")
    ds = _load(source, split, config, revision, streaming)
    image_column = _pick_column(ds.features, image_column, datasets.Image, "--image-column", "image")
    label_column = _pick_column(ds.features, label_column, datasets.ClassLabel, "--label-column", "class-label")
    if streaming:
        pixels, labels = _stream_pixels(ds, image_column, label_column, image_size, per_class, seed, split)
        images = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
        split = f"{split}[streamed{'' if per_class is None else f', {per_class} random per class, seed {seed}'}]"
    else:
        images, labels = _decoded(ds, image_column, label_column, image_size, split, memory_mapped)
    class_names = _class_names(ds.features[label_column], label_column, labels)
    if stats is None:
        stats = _stats_for(source, images)
    commit = None if is_local(source) else hub_commit(source, revision)
    return RealData(images, torch.as_tensor(labels, dtype=torch.int64), class_names, tuple(stats[0]), tuple(stats[1]), source, split, revision,
                    commit)


def hub_commit(repo_id: str, revision: str | None) -> str | None:
    """The commit a Hub dataset at `revision` resolves to, so a set records exactly which data it came from.

    None where the Hub cannot be asked (offline, or a mirror without the API): the revision asked for is then all
    that can be recorded.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    try:
        return HfApi().dataset_info(repo_id, revision=revision).sha
    except (HfHubHTTPError, OSError, ValueError):
        return None


def _decoded(ds, image_column: str, label_column: str, image_size: int | None, split: str, memory_mapped: bool):
    """The split decoded once into `datasets`' cache: uint8 images [N,C,H,W] (in memory or `ArrowImages`) and labels."""
    import datasets

    if len(ds) == 0:
        raise UserError(f"split {split!r} is empty")
    first = ds[0][image_column]
    mode = "L" if first.mode in GREY_MODES else "RGB"
    width, height = (image_size, image_size) if image_size else first.size
    features = datasets.Features(
        {"pixels": datasets.Array3D((height, width, 1 if mode == "L" else 3), "uint8"), label_column: ds.features[label_column]}
    )
    decoded = ds.map(
        _decoder(image_column, mode, image_size),
        batched=True,
        batch_size=1000,
        remove_columns=[c for c in ds.column_names if c != label_column],
        features=features,
        desc=f"Decoding {split} images",
    )
    if memory_mapped:
        images = ArrowImages(decoded, features["pixels"].shape)
    else:
        images = torch.from_numpy(_uint8_pixels(decoded.data.column("pixels"), features["pixels"].shape)).permute(0, 3, 1, 2).contiguous()
    return images, decoded.select_columns([label_column]).with_format("numpy")[:][label_column]


def _stats_for(source: str, images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The field's statistics for a known dataset, else the per-channel mean/std of these images."""
    key = known_stats_key(source)
    if key is not None and len(KNOWN_STATS[key][0]) == images.shape[1]:
        return KNOWN_STATS[key]
    mean, std = compute_stats(images)
    if min(std) == 0:  # normalising would divide by zero: every loss nan, reported as a divergence
        raise UserError(f"the images of {source} are constant in channel {std.index(0)} (std 0 over the split), so they cannot be "
                        "normalised and nothing can be learnt from them; check the image column (--image-column) or the data")
    return mean, std


def compute_stats(images: torch.Tensor | ArrowImages, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images [N,C,H,W] in [0, 1] units, in float64 chunks."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for start in range(0, len(images), chunk):
        block = images[start : start + chunk].to(torch.float64).div_(255)
        total += block.sum((0, 2, 3))
        squares += block.square().sum((0, 2, 3))
    count = len(images) * images.shape[2] * images.shape[3]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).sqrt()
    return tuple(round(v, 4) for v in mean.tolist()), tuple(round(v, 4) for v in std.tolist())


def normalise(images: torch.Tensor, mean, std) -> torch.Tensor:
    """(images - mean) / std per channel, for float images in [0, 1]."""
    shape = (1, -1, 1, 1)
    mean = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(shape)
    std = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(shape)
    return (images - mean) / std
