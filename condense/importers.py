"""Reading the distilled sets other methods publish into `SyntheticSet`s (the layouts: ../shared/FORMATS.md).

One reader per layout turns a file into pixels, labels and (for canvases) the encoded canvases; `import_set`
checks the result against the source dataset, records where it came from, and builds the set. Every file is
read with `torch.load(weights_only=True)`: tensors and plain values only; the DC layout also needs the numpy
scalar and dtype globals its accuracies are pickled with, and only those are allowed. A pickle that would
build anything else is refused before it runs.
"""

from __future__ import annotations

import hashlib
import math
import pickle
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from .data import RealData
from .errors import UserError
from .synthetic import SyntheticSet, published_source

# The mean/std each method normalised with, by dataset (FORMATS.md §1, the DC family's `get_dataset`); IDC, NCFM and
# DD-Ranking normalise CIFAR-100 with CIFAR-10's values.
DC_STATS = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashionmnist": ((0.2861,), (0.3530,)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762)),
    "tinyimagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
DDRANKING_STATS = {**DC_STATS, "cifar100": DC_STATS["cifar10"]}


@dataclass
class Read:
    """What a reader found: pixels (unclamped where the method's values overshoot [0, 1]), labels, the canvases they
    were decoded from, and the settings the reading used (for the provenance)."""

    images: torch.Tensor
    labels: torch.Tensor
    canvases: torch.Tensor | None = None
    factor: int = 1
    method: str | None = None  # the original method where the file names it (DC, DSA or DM)
    learned_lr: float | None = None
    soft_labels: torch.Tensor | None = None
    image_space: str | None = None  # zca where the set stays whitened; else pixels01 or pixels by its values
    settings: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Layout:
    read: Callable[..., Read]
    method: str
    paper: str


def safe_load(path: Path, numpy_scalars: bool = False):
    """`torch.load(weights_only=True)` of `path`; with `numpy_scalars` also the numpy scalar and dtype globals (DC's
    accuracies), nothing else. One UserError for a file that would build anything else, or that is damaged."""
    import numpy

    scalar = (getattr(numpy, "_core", None) or numpy.core).multiarray.scalar  # numpy 2 moved numpy.core to numpy._core
    dtypes = {type(numpy.dtype(kind)) for kind in ("float64", "float32", "int64")}
    # pickles of numpy 1.x name the scalar numpy.core.multiarray.scalar: the same function under its old name (torch 2.6 and
    # later take such an alias; under 2.5 those pickles are refused)
    aliases = [(scalar, "numpy.core.multiarray.scalar")] if _torch_version() >= (2, 6) else []
    allowed = [scalar, *aliases, numpy.dtype, *dtypes] if numpy_scalars else []
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        raise UserError(f"{path} holds more than tensors and plain values{f' ({found.group(1)})' if found else ''}, which is never "
                        "loaded (it could run code); nothing was run. If you trust it, convert it to plain tensors first") from None
    except Exception as exc:  # truncated, not a torch file: RuntimeError, EOFError, zipfile errors and others
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise UserError(f"{path} is not a readable torch file ({type(exc).__name__}: {first}); it may be truncated") from None


def _torch_version() -> tuple[int, int]:
    return tuple(int(part) for part in re.findall(r"\d+", torch.__version__)[:2])


def _pair(value, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """An [images, labels] pair of tensors, or one error naming what the file holds instead."""
    if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(torch.is_tensor(v) for v in value)):
        raise UserError(f"{where} is not an [images, labels] pair of tensors (it holds {type(value).__name__}); is --format right?")
    images, labels = value
    return images.detach().float(), labels.detach().long()


def _stats(table: dict, dataset: str, mean: tuple | None, std: tuple | None) -> tuple[tuple, tuple]:
    if mean is not None and std is not None:
        return mean, std
    if dataset not in table:
        raise UserError(f"the format stores normalised images, and which mean/std the method used is known for {', '.join(table)}, "
                        f"not for {dataset!r}; pass --mean and --std")
    return table[dataset]


def read_dc(path: Path, dataset: str, experiment: int = -1, mean=None, std=None, **_) -> Read:
    """DC, DSA, DM: {'data': [[images, labels] per experiment], 'accs_all_exps': ...}, mean/std normalised."""
    saved = safe_load(path, numpy_scalars=True)
    if not (isinstance(saved, dict) and isinstance(saved.get("data"), list) and saved["data"]):
        raise UserError(f"{path} is not a DC/DSA/DM result (a dict whose 'data' lists [images, labels] per experiment); is --format right?")
    if not -len(saved["data"]) <= experiment < len(saved["data"]):
        raise UserError(f"{path} holds {len(saved['data'])} experiments; --experiment must be from 0 to {len(saved['data']) - 1} (or -1, the last)")
    images, labels = _pair(saved["data"][experiment], f"{path}: experiment {experiment}")
    mean, std = _stats(DC_STATS, dataset, mean, std)
    named = re.match(r"res_(DC|DSA|DM)_", path.name)
    return Read(_unnormalise(images, mean, std), labels, method=named.group(1) if named else None,
                settings={"experiment": experiment % len(saved["data"]), "experiments": len(saved["data"]), "mean": list(mean), "std": list(std)})


def read_datadam(path: Path, dataset: str, mean=None, std=None, **_) -> Read:
    """DataDAM's released files: {'data': [images, labels]}, normalised as DC."""
    saved = safe_load(path)
    if not (isinstance(saved, dict) and "data" in saved):
        raise UserError(f"{path} is not a DataDAM set (a dict with 'data': [images, labels]); is --format right?")
    images, labels = _pair(saved["data"], f"{path}: 'data'")
    mean, std = _stats(DC_STATS, dataset, mean, std)
    return Read(_unnormalise(images, mean, std), labels, settings={"mean": list(mean), "std": list(std)})


def read_canvases(path: Path, factor: int | None = None, **_) -> Read:
    """IDC and NCFM: [canvases, labels] in pixels, each class's canvases decoded by IDC's rule (`decode_idc`)."""
    if factor is None:
        raise UserError(f"{path}: IDC and NCFM files do not record their multi-formation factor (IDC's folder name and args.txt do; "
                        "every NCFM config uses 2); pass --factor")
    canvases, labels = _pair(safe_load(path), str(path))
    order = labels.argsort(stable=True)  # class-major, as the images are decoded (and as --init-from reads canvases)
    canvases, labels = canvases[order], labels[order]
    images, decoded_labels = [], []
    for c in labels.unique(sorted=True).tolist():  # per class, as both methods decode
        block = canvases[labels == c]
        images.append(decode_idc(block, factor))
        decoded_labels.append(torch.full((len(block) * factor**2,), c, dtype=torch.long))
    return Read(torch.cat(images), torch.cat(decoded_labels), canvases=canvases, factor=factor, settings={"factor": factor})


def decode_idc(canvases: torch.Tensor, factor: int) -> torch.Tensor:
    """IDC's multi-formation decode (FORMATS.md §2): pad right and bottom with 0.5 to a multiple of the factor, cut
    ceil(h/f)-pixel tiles, tile-major order (tile (0,0) of every canvas, then (0,1), ...), bilinear upsampling to the
    canvas size (align_corners False). Our `formation.decode` makes the same images, canvas-major, where f divides h."""
    n, c, h, w = canvases.shape
    if factor == 1:
        return canvases.clone()
    pad = (factor - h % factor) % factor
    padded = F.pad(canvases, (0, pad, 0, pad), value=0.5) if pad else canvases
    size = math.ceil(h / factor)
    tiles = [padded[:, :, i * size : (i + 1) * size, j * size : (j + 1) * size] for i in range(factor) for j in range(factor)]
    return F.interpolate(torch.cat(tiles), size=(h, w), mode="bilinear", align_corners=False)


def read_ddranking(path: Path, dataset: str, mean=None, std=None, **_) -> Read:
    """DD-Ranking's inputs: images.pt (C x ipc images, class-major, in its real data's normalised space), lr.pt if there."""
    folder = path if path.is_dir() else path.parent
    images = safe_load(folder / "images.pt") if (folder / "images.pt").is_file() else None
    if not torch.is_tensor(images) or images.dim() != 4:
        raise UserError(f"{folder} holds no images.pt with an [N, C, H, W] tensor (DD-Ranking's input); is --format right?")
    mean, std = _stats(DDRANKING_STATS, dataset, mean, std)
    learned_lr = _lr(folder / "lr.pt") if (folder / "lr.pt").is_file() else None
    return Read(_unnormalise(images.detach().float(), mean, std), torch.empty(0, dtype=torch.long), learned_lr=learned_lr,
                settings={"mean": list(mean), "std": list(std)})


def read_mtt(path: Path, dataset: str, mean=None, std=None, lr: float | None = None, zca: bool = False, real_train=None, **_) -> Read:
    """MTT: images_{it,best}.pt (mean/std normalised, CIFAR-100 with CIFAR-10's values; or in ZCA space, run with --zca) and
    the labels_ file beside it. Its learned lr is in no file (wandb only): --lr gives it."""
    labels_file = path.with_name(path.name.replace("images_", "labels_", 1))
    if not path.name.startswith("images_") or not labels_file.is_file():
        raise UserError(f"{path}: MTT writes images_<it>.pt beside labels_<it>.pt; pass the images file of such a pair")
    images, labels = safe_load(path), safe_load(labels_file)
    if not (torch.is_tensor(images) and torch.is_tensor(labels)):
        raise UserError(f"{path} and {labels_file.name} are not tensors (MTT saves bare tensors); is --format right?")
    if zca:
        read = from_zca(images.detach().float(), real_train, path)
        read.labels, read.learned_lr = labels.detach().long(), lr
        return read
    mean, std = _stats(DDRANKING_STATS, dataset, mean, std)
    return Read(_unnormalise(images.detach().float(), mean, std), labels.detach().long(), learned_lr=lr,
                settings={"mean": list(mean), "std": list(std), "labels_file": labels_file.name})


def read_datm(path: Path, real_train: RealData | None = None, **_) -> Read:
    """DATM: images_{it,best}.pt in ZCA space, labels_ (learned logits [N, C], used as softmax(logits) at T = 1) and lr_."""
    names = {kind: path.with_name(path.name.replace("images_", f"{kind}_", 1)) for kind in ("labels", "lr")}
    if not path.name.startswith("images_") or not names["labels"].is_file():
        raise UserError(f"{path}: DATM writes images_<it>.pt beside labels_<it>.pt and lr_<it>.pt; pass the images file of such a set")
    images, logits = safe_load(path), safe_load(names["labels"])
    if not (torch.is_tensor(images) and torch.is_tensor(logits) and logits.dim() == 2):
        raise UserError(f"{path}: DATM's images and [N, C] label logits are tensors; is --format right?")
    logits = logits.detach().float()
    read = from_zca(images.detach().float(), real_train, path)
    read.soft_labels = torch.softmax(logits, 1)  # the hard labels: class-major by position, as DATM lays the rows out
    read.learned_lr = _lr(names["lr"]) if names["lr"].is_file() else None
    read.settings["soft_labels"] = "softmax of DATM's learned logits, T = 1 (as its SoftCrossEntropy)"
    return read


def from_zca(images: torch.Tensor, real_train: RealData | None, path: Path) -> Read:
    """A ZCA-space set: kept whitened (image space zca; `condense eval` refits the whitening on the source's training
    pixels and whitens the test images alike), or, given `real_train` (--to-pixels), back to pixels through that refit
    (`ZCA.invert`, not clamped)."""
    if real_train is None:
        return Read(images, torch.empty(0, dtype=torch.long), image_space="zca", settings={"zca": {"eps": ZCA.EPS, "to_pixels": False}})
    zca = ZCA.fit(real_train)
    return Read(zca.invert(images), torch.empty(0, dtype=torch.long), settings={"zca": {**zca.describe(), "to_pixels": True}})


class ZCA:
    """kornia's ZCAWhitening as MTT, DATM and DD-Ranking use it (FORMATS.md §9): rows flattened in (C, H, W) order, the
    training images' per-pixel mean μ, unbiased covariance Σ = U S Uᵀ, W = U (S + eps)^(-1/2) Uᵀ, W⁻¹ = U (S + eps)^(1/2) Uᵀ;
    whiten z = (x − μ) W, invert x = z W⁻¹ + μ. Fitted in float64 here (the authors fitted in float32 on a GPU)."""

    EPS = 0.1  # MTT's, DATM's and DD-Ranking's

    def __init__(self, mean: torch.Tensor, whiten: torch.Tensor, invert: torch.Tensor, eps: float, images: int):
        self.mean, self.whiten_matrix, self.invert_matrix, self.eps, self.images = mean, whiten, invert, eps, images

    @classmethod
    def fit(cls, real: RealData, eps: float = EPS, batch: int = 5000) -> ZCA:
        """On all of `real`'s images as [0, 1] pixels (no mean/std step), in float64, a batch of rows at a time."""
        n, dim = len(real), real.channels * real.image_size[0] * real.image_size[1]
        total, gram = torch.zeros(dim, dtype=torch.float64), torch.zeros(dim, dim, dtype=torch.float64)
        for start in range(0, n, batch):
            rows = real.floats(torch.arange(start, min(n, start + batch))).reshape(-1, dim).double()
            total += rows.sum(0)
            gram += rows.T @ rows
        mean = total / n
        covariance = (gram - n * torch.outer(mean, mean)) / (n - 1)
        u, s, _ = torch.linalg.svd(covariance)
        return cls(mean, u @ torch.diag((s + eps).rsqrt()) @ u.T, u @ torch.diag((s + eps).sqrt()) @ u.T, eps, n)

    def invert(self, images: torch.Tensor) -> torch.Tensor:
        rows = images.reshape(len(images), -1).double() @ self.invert_matrix + self.mean
        return rows.reshape(images.shape).float()

    def whiten(self, images: torch.Tensor) -> torch.Tensor:
        rows = (images.reshape(len(images), -1).double() - self.mean) @ self.whiten_matrix
        return rows.reshape(images.shape).float()

    def describe(self) -> dict:
        return {"eps": self.eps, "fitted_on": f"{self.images} training images as [0, 1] pixels, no mean/std", "precision": "float64"}


def _lr(path: Path) -> float:
    """A learned lr saved as a float or a 0-d tensor."""
    value = safe_load(path)
    if isinstance(value, (int, float)) or (torch.is_tensor(value) and value.numel() == 1):
        return float(value)
    raise UserError(f"{path} holds no learning rate (a number or a one-element tensor)")


def read_imagefolder(path: Path, **_) -> Read:
    """A folder per class (SRe2L's new000/, RDED's 00000/, ...), in sorted order, of image files: pixels in [0, 1]."""
    from PIL import Image
    from torchvision.transforms.functional import pil_to_tensor

    classes = sorted(p for p in path.iterdir() if p.is_dir()) if path.is_dir() else []
    if not classes:
        raise UserError(f"{path} is not a folder of class folders of images; is --format right?")
    images, labels = [], []
    for label, folder in enumerate(classes):
        for file in sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith(".")):  # not .DS_Store and the like
            try:
                with Image.open(file) as image:
                    images.append(pil_to_tensor(image.convert("RGB" if image.mode not in ("L", "RGB") else image.mode)).float() / 255)
            except OSError as exc:  # PIL's UnidentifiedImageError is one
                raise UserError(f"{file} is not an image PIL reads ({exc}); remove it from the class folder") from None
            labels.append(label)
    if len({tuple(image.shape) for image in images}) > 1:
        raise UserError(f"the images in {path} differ in size; resize them to the source dataset's size first")
    return Read(torch.stack(images), torch.tensor(labels), settings={"class_folders": [folder.name for folder in classes]})


def _unnormalise(images: torch.Tensor, mean, std) -> torch.Tensor:
    """x * std + mean per channel: pixels again (exact up to float32 rounding, not clamped)."""
    if len(mean) != images.shape[1]:
        raise UserError(f"the images have {images.shape[1]} channels but the mean/std have {len(mean)} values")
    return images * torch.tensor(std).view(1, -1, 1, 1) + torch.tensor(mean).view(1, -1, 1, 1)


LAYOUTS = {
    "dc": Layout(read_dc, "DC/DSA/DM", "Zhao et al., Dataset Condensation with Gradient Matching (ICLR 2021); DSA (ICML 2021); "
                 "DM (WACV 2023)"),
    "datadam": Layout(read_datadam, "DataDAM", "Sajedi et al., DataDAM: Efficient Dataset Distillation with Attention Matching (ICCV 2023)"),
    "idc": Layout(read_canvases, "IDC", "Kim et al., Dataset Condensation via Efficient Synthetic-Data Parameterization (ICML 2022)"),
    "ncfm": Layout(read_canvases, "NCFM", "Wang et al., Dataset Distillation with Neural Characteristic Function (CVPR 2025)"),
    "mtt": Layout(read_mtt, "MTT", "Cazenavette et al., Dataset Distillation by Matching Training Trajectories (CVPR 2022)"),
    "datm": Layout(read_datm, "DATM", "Guo et al., Towards Lossless Dataset Distillation via Difficulty-Aligned Trajectory Matching "
                   "(ICLR 2024)"),
    "ddranking": Layout(read_ddranking, "DD-Ranking input", "Li et al., DD-Ranking: Rethinking the Evaluation of Dataset Distillation"),
    "imagefolder": Layout(read_imagefolder, "image folder", "SRe2L (NeurIPS 2023), RDED (CVPR 2024) and others that publish image folders"),
}


def detect_format(path: Path) -> str:
    """The layout of `path` where its shape says it alone (--format auto); else one error naming the candidates."""
    def ambiguous(candidates: str, why: str):
        return UserError(f"--format auto: {path} could be {candidates} ({why}); pass --format")

    if path.is_dir():
        if (path / "images.pt").is_file():
            return "ddranking"
        if any(p.is_dir() for p in path.iterdir()):
            return "imagefolder"
        raise UserError(f"--format auto: {path} is a folder without images.pt (DD-Ranking) or class folders (an image folder)")
    if path.name.startswith("images_"):
        labels = path.with_name(path.name.replace("images_", "labels_", 1))
        labels = safe_load(labels) if labels.is_file() else None
        if torch.is_tensor(labels) and labels.dim() == 2:
            return "datm"
        raise ambiguous("mtt or mtt --zca", "MTT's files do not say whether the run whitened its images")
    saved = safe_load(path, numpy_scalars=True)
    if isinstance(saved, dict) and isinstance(saved.get("data"), list) and saved["data"] and isinstance(saved["data"][0], (list, tuple)) \
            and len(saved["data"][0]) == 2 and not torch.is_tensor(saved["data"][0]):
        return "dc"
    if isinstance(saved, dict) and "data" in saved:
        return "datadam"
    if isinstance(saved, (list, tuple)) and len(saved) == 2:
        raise ambiguous("idc or ncfm", "both write [canvases, labels]; either needs --factor")
    raise UserError(f"--format auto: {path} is in none of the layouts {', '.join(LAYOUTS)}; pass --format if it is one of them")


def dataset_key(name: str) -> str:
    """The key of DC_STATS a source dataset's name means (cifar10 for uoft-cs/cifar10 or ../data/cifar10)."""
    return re.sub(r"[^a-z0-9]", "", Path(name.rstrip("/")).name.lower().replace("tiny-imagenet", "tinyimagenet"))


def import_set(path: str | Path, layout: str, real: RealData, ipc: int | None = None, to_pixels: bool = False, **options) -> SyntheticSet:
    """The set in `path`, stored in `layout` (LAYOUTS), of the dataset `real` (its classes, channels, image size; with
    `to_pixels`, a ZCA-space set is mapped back to pixels through a whitening refitted on `real`, the training split)."""
    path = Path(path)
    if layout == "auto" and path.exists():
        layout = detect_format(path)
    if layout not in LAYOUTS:
        raise UserError(f"unknown format {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if not path.exists():
        raise UserError(f"no such file or folder: {path}")
    read = LAYOUTS[layout].read(path, dataset=dataset_key(real.source), real_train=real if to_pixels else None, **options)
    if not len(read.labels):  # a layout without labels: C x ipc images, class-major
        if len(read.images) % real.num_classes:
            raise UserError(f"{len(read.images)} images do not split into {real.num_classes} classes of equal size (class-major)")
        read.labels = torch.arange(real.num_classes).repeat_interleave(len(read.images) // real.num_classes)
    _check_fits(read, real, path)
    counts = read.labels.bincount(minlength=real.num_classes)
    ipc = ipc or int(counts.min()) // read.factor**2
    sha = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    space = read.image_space or ("pixels01" if _within_01(read.images) else "pixels")
    identity = ((0.0,) * real.channels, (1.0,) * real.channels)  # whitened images take no further normalisation
    provenance = {"format": layout, "method": read.method or LAYOUTS[layout].method, "paper": LAYOUTS[layout].paper,
                  "file": path.name, "sha256": sha, "settings": read.settings}
    mean, std = identity if space == "zca" else (real.mean, real.std)
    return SyntheticSet(images=read.images.contiguous(), labels=read.labels, canvases=read.canvases, class_names=list(real.class_names),
                        mean=mean, std=std, method=layout, **published_source(real), ipc=ipc, factor=read.factor,
                        learned_lr=read.learned_lr, soft_labels=read.soft_labels, image_space=space, config={"import": provenance})


def _within_01(images: torch.Tensor) -> bool:
    return bool(images.min() >= 0 and images.max() <= 1)


def _check_fits(read: Read, real: RealData, path: Path) -> None:
    """The images are of `real`'s kind (channels, size) and the labels among its classes, or one error naming both."""
    shape, expected = tuple(read.images.shape[1:]), (real.channels, *real.image_size)
    if shape != expected:
        raise UserError(f"{path} holds {shape[0]}-channel {shape[1]}x{shape[2]} images, but {real.source} has {expected[0]}-channel "
                        f"{expected[1]}x{expected[2]} images: a set of another dataset? pass the --data it was distilled from")
    if len(read.labels) != len(read.images) or read.labels.min() < 0 or read.labels.max() >= real.num_classes:
        raise UserError(f"{path}: labels over [{int(read.labels.min())}, {int(read.labels.max())}] for {len(read.images)} images, but "
                        f"{real.source} has {real.num_classes} classes: a set of another dataset? pass the --data it was distilled from")
    if not torch.isfinite(read.images).all():
        raise UserError(f"{path} holds images that are not finite (NaN or infinite values)")
