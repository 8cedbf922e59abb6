"""`SyntheticSet`: a condensed (or baseline) image set, and its safetensors file.

File contract (DESIGN.md): tensors `images` [N,C,H,W] float32 in [0, 1] (`image_space` pixels01; `pixels`: an imported
set's pixels as the method left them, which may overshoot [0, 1]), `labels` [N] int64,
optional `soft_labels` [N,K] float32 and `canvases` [M,C,H,W] float32; string metadata with the
method, source dataset and revision, ipc, factor, mean, std, class names, the full config, the
evaluation figures and the package version (JSON for structured values).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import reprlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import UserError
from .flags import TYPES
from .runtime import atomic_path, is_local
from .source import RENAMED_SOURCE_SETTINGS, DataSource

FORMAT = "condensed-set/1"
JSON_KEYS = ("mean", "std", "class_names", "config", "evaluation")
JSON_TYPES = {"mean": "list of numbers", "std": "list of positive numbers", "class_names": "list of strings", "config": "object",
              "evaluation": "object"}
# A non-empty evaluation (`condense.evaluate.evaluation_summary`): the types of its entries, those the card needs, and
# the parts of the protocol it shows.
EVALUATION_TYPES = {"accuracy_mean": "percentage", "accuracy_std": "percentage", "run_accuracies": "list of percentages", "labels": "string",
                    "test": "string", "label_protocol": "string", "evaluated_on": "string", "protocol": "object"}
EVALUATION_REQUIRED = ("accuracy_mean", "accuracy_std", "run_accuracies", "labels", "test")
PROTOCOL_TYPES = {"name": "string", "net": "string", "net_options": "object", "train": "object"}
IMAGE_SPACES = {"pixels01": "pixels in [0, 1]", "pixels": "pixels, not clamped: an imported method's values may overshoot [0, 1]",
                "zca": "ZCA-whitened as MTT, DATM and DD-Ranking whiten (fitted on the source's training pixels, eps in the import "
                       "settings); mean 0 and std 1 stored, so no normalisation; `condense eval` whitens the test images alike"}
MAX_DEPTH = 32  # how deep config and evaluation may nest: deeper than any set writes, shallow enough for recursive readers
SOFT_LABEL_TOLERANCE = 1e-3  # how far a row of soft labels may sum from 1 (float32 softmax is within 1e-6)


@dataclass
class SyntheticSet:
    """Training images with their labels, plus everything needed to use and describe them."""

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    method: str
    source_dataset: str
    ipc: int
    factor: int = 1
    soft_labels: torch.Tensor | None = None
    canvases: torch.Tensor | None = None
    source_revision: str | None = None
    source_fingerprint: str | None = None  # for a local folder, named by its name alone: `RealData.fingerprint` of the split
    config: dict = field(default_factory=dict)
    evaluation: dict = field(default_factory=dict)
    image_space: str = "pixels01"  # IMAGE_SPACES; saved only where it is not pixels01, so older files and readers are unchanged
    learned_lr: float | None = None  # the training lr a method learned with its images (MTT, DATM: for SGD); saved only where set
    local_source: str | None = field(default=None, repr=False, compare=False)  # this machine's path of the source; never saved

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise unless the set is consistent; run at construction and again before saving, since a run
        assigns its teacher's soft labels after construction."""
        problem = _problem(self.images, self.labels, self.soft_labels, self.canvases, self.__dict__)
        if problem:
            raise UserError(f"invalid synthetic set: {problem}")

    def require_pixels(self, use: str) -> None:
        """Refuse a ZCA-whitened set where `use` takes images as pixels (everything but `condense eval`, which whitens
        the test images alike)."""
        if self.image_space == "zca":
            raise UserError(f"{use} takes images as pixels, and this set is ZCA-whitened: only `condense eval` trains on it as it is; "
                            "`condense import --to-pixels` maps it to pixels for every other use")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.labels)

    def data_source(self, path: str | None = None) -> DataSource:
        """The dataset the set was made from, read as its config recorded it (config, revision, columns, size), from
        `path` where given. A set made from a local folder records only the folder's name, so it needs `path`."""
        path = path or self.local_source
        if path is None and self.source_fingerprint is not None:
            raise UserError(f"the set was made from a local folder named {self.source_dataset!r} (split {self.source_fingerprint}), "
                            "whose path sets do not record; pass that folder with --data")
        return DataSource.from_record(path or self.source_dataset, {**self.config, "revision": self.source_revision or self.config.get("revision")})

    def summary(self) -> str:
        n, c, h, w = self.images.shape
        soft = ", soft labels" if self.soft_labels is not None else ""
        return (
            f"{self.method} set from {self.source_dataset}: {n} images {c}x{h}x{w}, {self.num_classes} classes, "
            f"ipc {self.ipc}, factor {self.factor}{soft}"
        )

    def save_preview(self, path: str | os.PathLike, per_class: int = 20) -> Path:
        """A PNG grid of the images, one row per class (the first `per_class` of each)."""
        from torchvision.utils import save_image

        rows = [self.images[self.labels == c][:per_class] for c in range(self.num_classes)]
        width = max(len(r) for r in rows)
        padded = [torch.cat([r, torch.ones(width - len(r), *self.images.shape[1:])]) for r in rows]
        with atomic_path(path) as tmp:
            save_image(torch.cat(padded), str(tmp), nrow=width, padding=1, pad_value=1.0)
        return Path(path)

    def tensors(self) -> dict[str, torch.Tensor]:
        """The tensors of the file contract, by name (optional ones only when present)."""
        tensors = {"images": self.images, "labels": self.labels}
        if self.soft_labels is not None:
            tensors["soft_labels"] = self.soft_labels
        if self.canvases is not None:
            tensors["canvases"] = self.canvases
        return tensors

    def metadata(self) -> dict[str, str]:
        """The string metadata of the file contract (canonical JSON for structured values, so equal sets give equal bytes)."""
        from . import __version__

        metadata = {
            "format": FORMAT,
            "method": self.method,
            "source_dataset": self.source_dataset,
            "source_revision": self.source_revision or "",
            **({"source_fingerprint": self.source_fingerprint} if self.source_fingerprint else {}),  # absent: files stay as before
            **({"image_space": self.image_space} if self.image_space != "pixels01" else {}),
            **({"learned_lr": repr(float(self.learned_lr))} if self.learned_lr is not None else {}),
            "ipc": str(self.ipc),
            "factor": str(self.factor),
            "version": __version__,
        }
        metadata.update({key: canonical_json(getattr(self, key)) for key in JSON_KEYS})
        return dict(sorted(metadata.items()))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the safetensors file atomically (temporary name in the same folder, then rename), byte for byte
        the same for the same set, so that its sha256 identifies the content."""
        self.check()
        with atomic_path(path) as tmp:
            tmp.write_bytes(_canonical_safetensors(_unshared(self.tensors()), self.metadata()))
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> SyntheticSet:
        """Read and check a file written by `save`; a corrupt or foreign file gets a precise error."""
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if not path.is_file():
            raise UserError(f"no such file: {path}; pass a .safetensors file written by `condense`")
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (a safetensors handle, not a dict)
        except (SafetensorError, OSError, ValueError) as exc:
            raise UserError(f"{path} is not a readable safetensors file ({exc}); it may be truncated or not a condensed set") from exc
        return cls.from_parts(tensors, metadata, origin=str(path))

    @classmethod
    def from_parts(cls, tensors: dict[str, torch.Tensor], metadata: dict[str, str], origin: str) -> SyntheticSet:
        """Rebuild a set from `tensors()` and `metadata()` as read back from a file; `origin` names it in errors."""
        if not isinstance(metadata, dict) or not all(isinstance(value, str) for value in metadata.values()):
            raise UserError(f"{origin} is not a condensed set (its metadata is not a map of strings)")
        if metadata.get("format") != FORMAT:
            raise UserError(f"{origin} is not a condensed set (metadata 'format' is {metadata.get('format')!r}, expected {FORMAT!r})")
        missing = [key for key in ("images", "labels") if key not in tensors]
        missing += [key for key in ("method", "source_dataset", "ipc", "factor", *JSON_KEYS) if key not in metadata]
        if missing:
            raise UserError(f"{origin} lacks {', '.join(missing)}; the file is incomplete or was written by another tool")
        try:
            decoded = {key: json.loads(metadata[key]) for key in JSON_KEYS}
            decoded.update(ipc=int(metadata["ipc"]), factor=int(metadata["factor"]), image_space=metadata.get("image_space", "pixels01"),
                           learned_lr=float(metadata["learned_lr"]) if "learned_lr" in metadata else None)
        except (ValueError, RecursionError) as exc:  # json.loads recurses once per level: a deeply nested value exhausts the stack
            raise UserError(f"{origin} has malformed metadata ({str(exc)[:200]}); "
                            "the file was edited or written by another tool: write it again with `condense`") from exc
        problem = _problem(tensors["images"], tensors["labels"], tensors.get("soft_labels"), tensors.get("canvases"), decoded)
        if problem:
            raise UserError(f"{origin}: {problem}; the file was edited or written by another tool: write it again with `condense`")
        return cls(
            images=tensors["images"],
            labels=tensors["labels"],
            soft_labels=tensors.get("soft_labels"),
            canvases=tensors.get("canvases"),
            class_names=decoded["class_names"],
            mean=tuple(decoded["mean"]),
            std=tuple(decoded["std"]),
            method=metadata["method"],
            source_dataset=metadata["source_dataset"],
            source_revision=metadata.get("source_revision") or None,
            source_fingerprint=metadata.get("source_fingerprint") or None,
            ipc=decoded["ipc"],
            factor=decoded["factor"],
            image_space=decoded["image_space"],
            learned_lr=decoded["learned_lr"],
            config=decoded["config"],
            evaluation=decoded["evaluation"],
        )


def published_source(real) -> dict:
    """The `SyntheticSet` fields that name the `RealData` a set was made from: a Hub id with the commit it was read at,
    or a local folder's name with the split's fingerprint (a published set never records a path of this machine)."""
    local = is_local(real.source)
    return {"source_dataset": real.name, "source_revision": None if local else real.commit or real.revision,
            "source_fingerprint": real.fingerprint if local else None, "local_source": real.source if local else None}


def canonical_json(value) -> str:
    """JSON with sorted keys and fixed separators: one text per value, whatever order its dicts were built in."""
    return json.dumps(value, sort_keys=True, separators=(", ", ": "))


def _has_json_type(value, kind: str) -> bool:
    """Whether a metadata value is of the JSON type `kind` names (`JSON_TYPES`, `EVALUATION_TYPES`): object, string, number
    (finite), positive number, percentage (a number in [0, 100]), or a list of one of these."""
    if kind.startswith("list of "):
        return isinstance(value, (list, tuple)) and all(_has_json_type(v, kind[len("list of ") : -1]) for v in value)
    if kind in ("object", "string"):
        return isinstance(value, dict if kind == "object" else str)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or (isinstance(value, float) and not math.isfinite(value)):
        return False
    return {"number": True, "positive number": value > 0, "percentage": 0 <= value <= 100}[kind]


def _problem(images, labels, soft_labels, canvases, values: dict) -> str | None:
    """What is wrong with a set, or None: the one check of its tensors and its whole metadata tree (`values`: class_names,
    mean, std, ipc, factor, config and evaluation by name), run on load, at construction and before saving."""
    wrong = next((key for key in JSON_KEYS if not _has_json_type(values[key], JSON_TYPES[key])), None)
    if wrong:
        return f"{wrong!r} must be a JSON {JSON_TYPES[wrong]}, got {reprlib.repr(values[wrong])}"
    names, ipc, factor = values["class_names"], values["ipc"], values["factor"]
    learned_lr = values.get("learned_lr")
    if learned_lr is not None and not (isinstance(learned_lr, (int, float)) and math.isfinite(learned_lr) and learned_lr > 0):
        return f"the learned lr must be a finite number above 0, got {learned_lr!r}"
    if values["image_space"] not in IMAGE_SPACES:
        return f"image space {values['image_space']!r} is not one of {', '.join(IMAGE_SPACES)}"
    problem = _check_tensors(images, labels, soft_labels, canvases, len(names), within_01=values["image_space"] == "pixels01")
    if problem:
        return problem
    if not len(images):
        return "the set holds no images; a set has at least one image per class"
    if len(set(names)) != len(names):
        return f"class names {sorted({name for name in names if names.count(name) > 1})[:5]} are duplicated; each class needs its own name"
    if (len(values["mean"]), len(values["std"])) != (images.shape[1],) * 2:
        return f"mean/std have {len(values['mean'])}/{len(values['std'])} values for {images.shape[1]} channels"
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in (ipc, factor)) or ipc * factor**2 > len(images):
        return (f"ipc {ipc!r} and factor {factor!r} must be whole numbers of at least 1 whose class share (ipc x factor^2 images) "
                f"fits in the set's {len(images)} images")
    for key in ("config", "evaluation"):
        problem = _nesting_problem(values[key], key)
        if problem:
            return problem
    return _source_problem(values["config"]) or _evaluation_problem(values["evaluation"])


def _nesting_problem(value, name: str) -> str | None:
    """What keeps `value` from being plain JSON of at most MAX_DEPTH levels, or None; walked without recursion, since a
    crafted file may nest 100,000 levels and every recursive reader (json, the card's renderer) would fail on it."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"{name!r} nests deeper than {MAX_DEPTH} levels"
        if isinstance(item, dict):
            if not all(isinstance(key, str) for key in item):
                return f"{name!r} has a key that is not a string"
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend((v, depth + 1) for v in item)
        elif item is not None and not isinstance(item, (str, int, float)):
            return f"{name!r} holds a {type(item).__name__}, which is not JSON"
    return None


def _source_problem(config: dict) -> str | None:
    """What keeps the source settings in a set's config (what `data_source` reads back, old names included) from being
    the types `DataSource` takes, or None."""
    kinds = {f.name: TYPES[str(f.type).replace(" | None", "")] for f in dataclasses.fields(DataSource)[1:]}
    for key, value in config.items():
        kind = kinds.get(RENAMED_SOURCE_SETTINGS.get(key, key))
        if kind is None or value is None:
            continue
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is int and value < 1):
            return f"config {key!r} must be {'a whole number of at least 1' if kind is int else 'a string'} or null, got {reprlib.repr(value)}"
    return None


def _evaluation_problem(evaluation: dict) -> str | None:
    """What keeps a set's evaluation from the shape `condense.evaluate.evaluation_summary` writes and the card shows, or
    None (an empty evaluation: not evaluated)."""
    if not evaluation:
        return None
    missing = [key for key in EVALUATION_REQUIRED if key not in evaluation]
    if missing:
        return f"'evaluation' lacks {', '.join(missing)}; it is a summary of `condense eval`'s result, or empty"
    protocol = evaluation.get("protocol", {})
    checks = [(evaluation, key, kind, "evaluation") for key, kind in EVALUATION_TYPES.items()]
    if _has_json_type(protocol, "object"):
        checks += [(protocol, key, kind, "evaluation protocol") for key, kind in PROTOCOL_TYPES.items()]
    for values, key, kind, what in checks:
        if key in values and not _has_json_type(values[key], kind):
            return f"{what} {key!r} must be a JSON {kind}, got {reprlib.repr(values[key])}"
    return None


def _canonical_safetensors(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """safetensors bytes with the header rewritten as sorted, compact JSON: the library writes its metadata map
    in a random (hash) order, so the same set would otherwise give different bytes on every save."""
    from safetensors.torch import save

    raw = save(tensors, metadata=metadata)
    length = int.from_bytes(raw[:8], "little")
    header = json.dumps(json.loads(raw[8 : 8 + length]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # the format allows trailing spaces; 8-byte alignment keeps the data aligned
    return len(header).to_bytes(8, "little") + header + raw[8 + length :]


def _unshared(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors, each with its own memory: safetensors refuses aliases (at factor 1 the decoded
    images are the canvases themselves)."""
    seen: set[int] = set()
    result = {}
    for name, tensor in tensors.items():
        tensor = tensor.detach().cpu().contiguous()
        if tensor.untyped_storage().data_ptr() in seen:
            tensor = tensor.clone()
        seen.add(tensor.untyped_storage().data_ptr())
        result[name] = tensor
    return result


def _check_tensors(images, labels, soft_labels, canvases, num_classes: int, within_01: bool = True) -> str | None:
    """What is wrong with these tensors as a synthetic set, or None."""
    if images.dtype != torch.float32 or images.dim() != 4:
        return f"'images' must be float32 [N,C,H,W], got {images.dtype} {list(images.shape)}"
    if labels.dtype != torch.int64 or labels.dim() != 1 or len(labels) != len(images):
        return f"'labels' must be int64 [{len(images)}], got {labels.dtype} {list(labels.shape)}"
    if num_classes < 1:
        return "there are no class names"
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        return f"labels range over [{labels.min()}, {labels.max()}] but there are {num_classes} classes"
    if not torch.isfinite(images).all() or (within_01 and len(images) and (images.min() < 0 or images.max() > 1)):
        return "'images' must be finite and within [0, 1]" if within_01 else "'images' must be finite"
    if soft_labels is not None and (soft_labels.dtype != torch.float32 or list(soft_labels.shape) != [len(images), num_classes]):
        return f"'soft_labels' must be float32 [{len(images)}, {num_classes}], got {soft_labels.dtype} {list(soft_labels.shape)}"
    if soft_labels is not None and len(soft_labels):
        problem = _soft_label_problem(soft_labels)
        if problem:
            return f"'soft_labels' must be finite, non-negative and sum to 1 per row (class probabilities): {problem}"
    if canvases is not None and (canvases.dtype != torch.float32 or canvases.dim() != 4 or canvases.shape[1] != images.shape[1]):
        return f"'canvases' must be float32 [M,{images.shape[1]},H,W], got {canvases.dtype} {list(canvases.shape)}"
    return None


def _soft_label_problem(soft_labels: torch.Tensor) -> str | None:
    """The first row of soft labels that is not a probability vector, described, or None."""
    sums = soft_labels.double().sum(1)
    checks = (
        (~torch.isfinite(soft_labels).all(1), "has a NaN or infinite value"),
        ((soft_labels < 0).any(1), "has a negative value"),
        ((sums - 1).abs() > SOFT_LABEL_TOLERANCE, None),
    )
    for bad, what in checks:
        if bad.any():
            row = int(bad.nonzero()[0])
            return f"row {row} {what or f'sums to {sums[row]:.4g}'}"
    return None
