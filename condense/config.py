"""The settings of a distillation run (`DistillConfig`, one help line per field) and its presets (BENCHMARKS.md).

The command line is built from these fields (`condense.flags`): a field's flag is its name with dashes,
its help the field's `metadata["help"]`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

from .augment import DSA, MATCHING_STRATEGY, MODES
from .errors import UserError
from .evaluate import EVAL_PRESETS
from .flags import TYPES, check_numbers, flag, setting
from .formation import DEFAULT_RESIZE, INIT_IMAGES, RESIZE_MODES
from .methods import method_class
from .nets import ACTIVATIONS, NETS, NORMS, POOLINGS, current_options, net_class
from .pool import POOL_TRAINING, SOFT_LABEL_SOURCES
from .runtime import preset_copy
from .source import RENAMED_SOURCE_SETTINGS, DataSource, check_revision

# Old names of settings, still read from run folders (resume) and set files written before the rename.
RENAMED_SETTINGS = {**RENAMED_SOURCE_SETTINGS, "pool": "pooling"}


def source_setting(name: str, default=None):
    """A data-source setting, with the help text of `DataSource`'s field."""
    return setting(default, {f.name: f for f in dataclasses.fields(DataSource)}[name].metadata["help"])


def choices(registry) -> str:
    return ", ".join(registry)


@dataclass
class DistillConfig:
    """Every setting of a distillation run (presets fill it; any field can be overridden)."""

    data: str = source_setting("path", "uoft-cs/cifar10")
    dataset_config: str | None = source_setting("dataset_config")
    revision: str | None = source_setting("revision")
    label_column: str | None = source_setting("label_column")
    image_column: str | None = source_setting("image_column")
    image_size: int | None = source_setting("image_size")
    split: str = setting("train", "split to condense")
    test_split: str = setting("test", "split to evaluate on")
    holdout: int = setting(0, "images per class held out of the train split (the same ones every run; never distilled or pretrained on); "
                              "the evaluation then tests on them, a validation split, instead of the test split")
    memory_mapped: bool = setting(False, "leave the decoded train split in the Arrow cache on disk; batches read only their rows")
    stream_per_class: int | None = setting(None, "stream the splits (nothing downloaded or cached in full) and keep N random train images per class")
    ipc: int = setting(10, "stored images (canvases) per class")
    factor: int = setting(2, "multi-formation: each canvas decodes into factor x factor images")
    init_images: str = setting("random", "real images that initialise the canvases: random or first (each class's first, as the published code)")
    init_from: str | None = setting(None, "start from the canvases of this set instead of real images (a .safetensors file, a run "
                                          "folder or a Hub folder: our own or one `condense import` wrote; its IPC, factor, classes and "
                                          "image size must be the run's)")
    init_resize: str = setting(DEFAULT_RESIZE, f"how a real image is downsized into its canvas tile: {choices(RESIZE_MODES)} (the published code: nearest)")

    net: str = setting("convnet", f"matcher network: {choices(NETS)}")
    depth: int | None = setting(None, "ConvNet depth (default: 3 at 32 px, 4 at 64, 5 at 128)")
    width: int = setting(128, "ConvNet width")
    norm: str = setting("instance", f"normalisation: {choices(NORMS)}")
    act: str = setting("relu", f"ConvNet activation: {choices(ACTIVATIONS)}")
    pooling: str = setting("avg", f"ConvNet pooling: {choices(POOLINGS)}")
    pool_size: int = setting(20, "pretrained matchers in the pool")
    pool_epochs: int = setting(60, "epochs of each matcher's pretraining")
    pool_folder: str | None = setting(None, "where the pool is kept and reused (default pools/<data>-<net>-<size>x<epochs>ep-<hash>)")
    pool_dsa: str = setting(POOL_TRAINING.dsa, "per-sample DSA operations joined by _ in the pool's pretraining")
    pool_dsa_mode: str = setting(POOL_TRAINING.dsa_mode, f"DSA mode of the pool's pretraining: {choices(MODES)}")
    # measured slower on CPU; unmeasured on CUDA (benchmarks/paper_gpu.py turns it on)
    batched_pool: bool = setting(False, "train the pool's missing members at once (stacked weights, one vectorised forward): as good "
                                        "members, not the same bits (their rounding differs and training amplifies it: after the CPU "
                                        "preset's one epoch a weight differs by up to 0.036, a member's accuracy by up to 0.7 points)")

    real_batch: int = setting(1024, "real images per class drawn every iteration (at most the smallest class; CIFAR-100 presets: 500, the whole class)")
    dsa: str = setting(MATCHING_STRATEGY, "DSA operations joined by _ applied to real and synthetic images alike")
    dsa_mode: str = setting("one", "one (one random operation per class and iteration, DSA's convention) or all (every operation, as the published code's matching)")
    method: str = setting("ncfm", "distillation method: ncfm, dance, dm or another registered one (condense.methods); "
                                  "--method NAME --help lists its own settings")
    # The chosen method's own settings (its Settings dataclass; a dict of them is read into it): set by field or flag name
    # through `DistillConfig.changed`, so `frequencies=64` reaches NCFM's settings.
    method_settings: object = dataclasses.field(default=None, metadata={"help": "the method's own settings", "nested": True})

    optimizer: str = setting("adamw", "optimiser of the images: adamw or sgd")
    lr: float = setting(1e-3, "learning rate of the images (the presets: 1e-2 x sqrt(classes / 10) under AdamW, see README)")
    weight_decay: float = setting(5e-4, "weight decay of the images' optimiser")
    momentum: float = setting(0.5, "momentum (sgd)")
    iterations: int = setting(20000, "iterations in all (a resumed run continues up to this)")
    plateau_patience: int = setting(500, "iterations without a lower loss before the image learning rate is halved")

    seed: int = setting(0, "seed of every random draw")
    checkpoint_every: int = setting(100, "iterations between checkpoints (what --resume continues from)")
    log_every: int = setting(10, "iterations between lines of log.jsonl")
    soft_labels: str = setting("none", "none, pool (the first trained pool member), ensemble (all the pool's trained members), "
                                       "teacher (a network trained as the members are, from an initialisation of its own: no member's) "
                                       "or a network file of any pool: the teacher")
    eval_preset: str = setting("paper", f"evaluation after distillation: {choices(EVAL_PRESETS)} (BENCHMARKS.md; paper: ncfm at paper scale, "
                                        "the others at CPU scale)")
    eval_runs: int | None = setting(None, "evaluation runs (0: no evaluation; default: the preset's)")
    amp: bool = setting(False, "bf16 autocast for the real-image forward passes (GPU)")
    channels_last: bool = setting(False, "channels-last memory format (GPU)")
    compile: bool = setting(False, "torch.compile the matcher's feature extractor (GPU)")

    def __post_init__(self) -> None:
        """Refuse an impossible setting at once, before any data is loaded (from the command line or Python)."""
        check_numbers(self, AT_LEAST, POSITIVE, NOT_NEGATIVE)
        if self.init_images not in INIT_IMAGES or self.init_resize not in RESIZE_MODES:
            raise UserError(f"--init-images takes {' or '.join(INIT_IMAGES)} and --init-resize {', '.join(RESIZE_MODES)}; "
                            f"got {self.init_images!r} and {self.init_resize!r}")
        DSA(self.dsa, mode=self.dsa_mode)  # unknown operations or modes: refused here, before any data is loaded
        net_class(self.net)
        check_revision(self.data, self.revision)
        if self.soft_labels not in SOFT_LABEL_SOURCES and Path(self.soft_labels).is_dir():
            raise UserError(f"--soft-labels {self.soft_labels} is a folder; pass one network file in it (member-XXX-trained.safetensors), "
                            "or pool / ensemble / teacher for the run's own pool")
        if self.pool_dsa:
            DSA(self.pool_dsa, mode=self.pool_dsa_mode)
        method = method_of(self.method)
        self.method_settings = own_settings(method, self.method_settings)
        method.check(self)

    @property
    def source(self) -> DataSource:
        """Where the real images come from, as the one typed object every loader takes."""
        return DataSource(self.data, self.dataset_config, self.revision, self.image_column, self.label_column, self.image_size)

    def net_options(self) -> dict:
        options = {"depth": self.depth, "width": self.width, "norm": self.norm, "act": self.act, "pooling": self.pooling}
        return {k: v for k, v in options.items() if v is not None} if self.net == "convnet" else {"norm": self.norm}

    def to_dict(self) -> dict:
        """The settings as plain values, the method's own nested under `method_settings`."""
        return dataclasses.asdict(self)

    def flat(self) -> dict:
        """The settings as plain values, the method's own beside the shared ones (each named as its flag is)."""
        return {**{k: v for k, v in self.to_dict().items() if k != "method_settings"}, **dataclasses.asdict(self.method_settings)}

    def changed(self, **changes) -> DistillConfig:
        """This config with settings changed by name, the method's own included (`frequencies=64` reaches NCFM's);
        a new `method` starts from that method's defaults."""
        shared = {k: v for k, v in changes.items() if k in SHARED_SETTINGS}
        own = {k: v for k, v in changes.items() if k not in shared}
        method = method_class(shared.get("method", self.method))
        known = {f.name for f in dataclasses.fields(method.Settings)}
        unknown = sorted(set(own) - known)
        if unknown:
            raise UserError(f"{', '.join(flag(name) for name in unknown)}: not a setting of method {method.name} "
                            f"(its own: {', '.join(flag(name) for name in sorted(known)) or 'none'}); drop it or choose the method it belongs to")
        if "method_settings" not in shared:
            base = self.method_settings if method.name == self.method else method.Settings()
            shared["method_settings"] = dataclasses.replace(base, **own)
        return dataclasses.replace(self, **shared)

    @classmethod
    def from_dict(cls, record: dict) -> DistillConfig:
        """The settings a run folder or a set file recorded (old setting names included, and a method's own settings
        recorded beside the shared ones, as before methods had their own; unknown keys dropped)."""
        record = current_options({RENAMED_SETTINGS.get(k, k): v for k, v in record.items()})
        method = method_class(record.get("method", "ncfm"))
        own = {f.name: record[f.name] for f in dataclasses.fields(method.Settings) if f.name in record}
        own.update(record.get("method_settings") or {})
        shared = {f.name: record[f.name] for f in dataclasses.fields(cls) if f.name in record and f.name != "method_settings"}
        return cls(**shared, method_settings=own)


def method_of(name: str):
    """The registered method `name` (`method_class`), its own settings checked: flags of their own (no shared setting's
    name) of a type the flags read; one clear error otherwise."""
    cls = method_class(name)
    shared = {f.name for f in dataclasses.fields(DistillConfig)}
    for item in dataclasses.fields(cls.Settings):
        kind = getattr(item.type, "__name__", str(item.type)).replace(" | None", "")
        problem = ("is also a shared setting's name" if item.name in shared else
                   None if kind in (*TYPES, "bool") and "help" in item.metadata else "is not a plain setting")
        if problem:
            raise UserError(f"method {cls.name}: its setting {item.name!r} {problem}; each is made with condense.flags.setting, "
                            "of type int, float, str or bool (or None), under a name of its own")
    return cls


def parse_setting(item: str, option: str = "--set") -> tuple[str, object]:
    """FIELD=VALUE (given to the benchmarks' `option`) as the shared or a method's setting's type (a bool takes true or
    false: bool("False") would be True); a UserError for an unknown setting or a value of another type."""
    from .methods import METHODS

    kinds = {field.name: getattr(field.type, "__name__", str(field.type)).replace(" | None", "")
             for cls in (DistillConfig, *(method.Settings for method in METHODS.values())) for field in dataclasses.fields(cls)}
    key, _, text = item.partition("=")
    if key not in kinds or key == "method_settings":
        raise UserError(f"{option} {item!r}: no setting {key!r}; see `condense distill --method NAME -h`")
    if kinds[key] == "bool":
        if text.lower() not in ("true", "false"):
            raise UserError(f"{option} {item!r}: {key} takes true or false")
        return key, text.lower() == "true"
    try:
        return key, {"int": int, "float": float}.get(kinds[key], str)(text)
    except ValueError:
        raise UserError(f"{option} {item!r}: {key} takes a number ({kinds[key]})") from None


def own_settings(method, settings):
    """`settings` as the method's Settings: None gives its defaults, a dict its fields (an unknown one is refused)."""
    if settings is None:
        return method.Settings()
    if isinstance(settings, dict):
        known = {f.name for f in dataclasses.fields(method.Settings)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise UserError(f"{', '.join(flag(name) for name in unknown)}: not a setting of method {method.name}; drop it")
        return method.Settings(**settings)
    if not isinstance(settings, method.Settings):
        raise UserError(f"method {method.name} takes settings of type {method.Settings.__name__}, got {type(settings).__name__}")
    return settings


SHARED_SETTINGS = {f.name for f in dataclasses.fields(DistillConfig)}


# The smallest value of every counted setting (None, where a setting allows it, means its default).
AT_LEAST = {"ipc": 1, "factor": 1, "depth": 1, "width": 1, "image_size": 1, "stream_per_class": 1, "pool_size": 1, "pool_epochs": 1,
            "real_batch": 1, "iterations": 0, "plateau_patience": 0, "checkpoint_every": 1, "log_every": 1, "eval_runs": 0,
            "holdout": 0, "seed": 0}
POSITIVE = ("lr",)
NOT_NEGATIVE = ("weight_decay", "momentum")


def image_lr(classes: int) -> float:
    """The AdamW image lr of the presets: 1e-2 at 10 classes, times sqrt(C / 10) for C classes.

    The published code takes 2C AdamW steps per iteration on the image tensor, about 2 sqrt(C) times as far as
    one summed step moves (README); on CIFAR-10 at CPU scale lr 1e-2 gave 56.0 % against 52.1 % at 1e-3 (the best
    of 1e-3, 3e-3, 5e-3 and 1e-2). The sqrt(C) scaling to 100 classes follows the same argument, untested (no
    CIFAR-100 pixels were at hand); so are the paper presets' 20,000 iterations at this lr.
    """
    return round(1e-2 * math.sqrt(classes / 10), 4)


# BENCHMARKS.md: the CPU presets (the shared settings; each method's own are its `preset_settings`, NCFM's 1024 Gaussian
# frequencies at CPU scale and 4096 at paper scale, Gaussian since issue 15).
_CPU = {"width": 64, "pool_size": 2, "pool_epochs": 1, "real_batch": 128, "iterations": 200,
        "eval_preset": "cpu", "checkpoint_every": 50, "lr": image_lr(10)}
PRESETS: dict[str, DistillConfig] = {
    "cifar10-ipc10-cpu": DistillConfig(data="uoft-cs/cifar10", ipc=10, **_CPU),
    "mnist-ipc10-cpu": DistillConfig(data="ylecun/mnist", ipc=10, **_CPU),
    **{f"cifar10-ipc{ipc}": DistillConfig(data="uoft-cs/cifar10", ipc=ipc, lr=image_lr(10)) for ipc in (1, 10, 50)},
    **{
        # a CIFAR-100 class has 500 training images: the real side is all of them, as in the published code;
        # ipc 10 keeps the published SGD (a summed SGD step moves as far as the per-class steps: no rescaling), which has
        # no weight decay (the published code's SGD for the images takes none; its weight_decay reaches AdamW only)
        f"cifar100-ipc{ipc}": DistillConfig(
            data="uoft-cs/cifar100", label_column="fine_label", ipc=ipc, real_batch=500,
            **({"optimizer": "sgd", "lr": 0.01, "momentum": 0.5, "weight_decay": 0.0} if ipc == 10 else {"lr": image_lr(100)}),
        )
        for ipc in (1, 10, 50)
    },
}


for _name, _config in PRESETS.items():
    _config.method_settings = method_class(_config.method).preset_settings(_name)


def preset(name: str, method: str | None = None) -> DistillConfig:
    """The preset `name`, with `method` (by default the preset's, ncfm) and that method's settings in the preset."""
    config = preset_copy(PRESETS, name, "distillation")
    if method is not None and method != config.method:
        config = dataclasses.replace(config, method=method, method_settings=method_class(method).preset_settings(name))
    return config
