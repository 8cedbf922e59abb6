"""Networks used in dataset distillation: the ConvNet family, AlexNet, VGG-11 and ResNet-18.

Every network is a `Classifier`: `features(x)` gives the penultimate feature (flattened output of
the last block) and `forward(x)` the logits. Any channel count and image size work.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import torch
from torch import nn

from .errors import UserError

GROUPNORM_GROUPS = 4  # "group" normalisation as in the DC/DSA/DM ConvNet


def _group_norm(channels: int) -> nn.Module:
    if channels % GROUPNORM_GROUPS:
        raise UserError(f"group norm needs a width divisible by {GROUPNORM_GROUPS}, got {channels}")
    return nn.GroupNorm(GROUPNORM_GROUPS, channels, affine=True)


# The registries of the ConvNet's knobs: every list of choices (flags, help, the NAS space) is read from them.
# instance = GroupNorm with one group per channel (affine); layer = GroupNorm with one group (over C,H,W; size-independent).
NORMS: dict[str, Callable[[int], nn.Module]] = {
    "none": lambda channels: nn.Identity(),
    "batch": nn.BatchNorm2d,
    "layer": lambda channels: nn.GroupNorm(1, channels, affine=True),
    "instance": lambda channels: nn.GroupNorm(channels, channels, affine=True),
    "group": _group_norm,
}
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "relu": lambda: nn.ReLU(inplace=True),
    "leakyrelu": lambda: nn.LeakyReLU(0.01, inplace=True),
}
POOLINGS: dict[str, Callable[[], nn.Module] | None] = {"none": None, "max": lambda: nn.MaxPool2d(2, 2), "avg": lambda: nn.AvgPool2d(2, 2)}


def _choose(registry: dict, kind: str, what: str):
    if kind not in registry:
        raise UserError(f"unknown {what} {kind!r}; choose one of {', '.join(registry)}")
    return registry[kind]


def make_norm(kind: str, channels: int) -> nn.Module:
    """A normalisation layer for `channels` feature maps (`NORMS`)."""
    return _choose(NORMS, kind, "normalisation")(channels)


def make_activation(kind: str) -> nn.Module:
    return _choose(ACTIVATIONS, kind, "activation")()


def make_pool(kind: str) -> nn.Module | None:
    factory = _choose(POOLINGS, kind, "pooling")
    return None if factory is None else factory()


NETS: dict[str, type[Classifier]] = {}  # filled by @register_net; choices and help texts are read from it
RENAMED_OPTIONS = {"pool": "pooling"}  # old option names, still read (set files, NAS results and pools written before the rename)


def register_net(name: str):
    """Class decorator: make a `Classifier` buildable by `build_net(name, ...)`."""

    def register(cls: type[Classifier]) -> type[Classifier]:
        NETS[name] = cls
        return cls

    return register


def current_options(options: dict) -> dict:
    """`options` with old option names (`RENAMED_OPTIONS`) under their current names."""
    return {RENAMED_OPTIONS.get(key, key): value for key, value in options.items()}


class Classifier(nn.Module):
    """A feature extractor `body` (ending in a flat vector) followed by one linear layer."""

    def __init__(self, body: nn.Module, channels: int, image_size: tuple[int, int], num_classes: int):
        super().__init__()
        self.body = body
        with torch.no_grad():
            self.feature_dim = body(torch.zeros(1, channels, *image_size)).shape[1]
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.body(x))

    def grouped_logits(self, x: torch.Tensor, groups: int) -> torch.Tensor:
        """`forward` of x taken as `groups` equal blocks, each block's linear layer a matrix product of its own.

        A BLAS product's last bits depend on how many rows it has, so `forward` on a batch of 3 classes and on 2 of
        them gives the shared classes' logits a bit apart; block by block (one batched product) they are the same.
        """
        features = self.body(x)
        weight, bias = self.classifier.weight, self.classifier.bias
        blocks = features.view(groups, -1, features.shape[1])
        return torch.baddbmm(bias, blocks, weight.T.expand(groups, -1, -1)).view(len(x), -1)


def default_depth(image_size: tuple[int, int]) -> int:
    """The field's ConvNet depth for an image size: 3 at 32 px (and 28), 4 at 64, 5 at 128."""
    return max(1, round(math.log2(min(image_size) / 4)))


@register_net("convnet")
class ConvNet(Classifier):
    """`depth` blocks of conv3x3(width) -> norm -> activation -> 2x2 pooling; then a linear layer.

    Without a depth, the depth follows the image size (`default_depth`).
    """

    def __init__(self, channels, num_classes, image_size, depth=None, width=128, norm="instance", act="relu", pooling="avg"):
        depth = default_depth(image_size) if depth is None else depth
        if depth < 1 or width < 1:
            raise UserError(f"ConvNet needs depth >= 1 and width >= 1, got depth {depth}, width {width}")
        if pooling != "none" and min(image_size) >> depth == 0:
            raise UserError(f"{image_size[0]}x{image_size[1]} images are too small for {depth} pooling blocks")
        layers: list[nn.Module] = []
        for block in range(depth):
            layers += [nn.Conv2d(channels if block == 0 else width, width, 3, padding=1), make_norm(norm, width), make_activation(act)]
            pool = make_pool(pooling)
            if pool is not None:
                layers.append(pool)
        super().__init__(nn.Sequential(*layers, nn.Flatten()), channels, image_size, num_classes)


@register_net("alexnet")
class AlexNet(Classifier):
    """The 5-conv AlexNet of the dataset-distillation literature (no norm by default)."""

    def __init__(self, channels, num_classes, image_size, norm="none"):
        spec = [(128, 5, True), (192, 5, True), (256, 3, False), (192, 3, False), (192, 3, True)]
        layers: list[nn.Module] = []
        in_channels = channels
        for out_channels, kernel, pool in spec:
            layers += [nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2), make_norm(norm, out_channels), nn.ReLU(inplace=True)]
            if pool:
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            in_channels = out_channels
        super().__init__(nn.Sequential(*layers, nn.Flatten()), channels, image_size, num_classes)


@register_net("vgg11")
class VGG11(Classifier):
    """VGG-11 with one linear classifier, as in dataset distillation (instance norm by default)."""

    CONFIG = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")

    def __init__(self, channels, num_classes, image_size, norm="instance"):
        layers: list[nn.Module] = []
        in_channels = channels
        for item in self.CONFIG:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))  # ceil: 28 px inputs still reach 1x1
                continue
            layers += [nn.Conv2d(in_channels, item, 3, padding=1), make_norm(norm, item), nn.ReLU(inplace=True)]
            in_channels = item
        super().__init__(nn.Sequential(*layers, nn.Flatten()), channels, image_size, num_classes)


@register_net("resnet18")
class ResNet18(Classifier):
    """CIFAR-style ResNet-18 (3x3 stem, no max-pool) built on torchvision's ResNet; instance norm by default."""

    def __init__(self, channels, num_classes, image_size, norm="instance"):
        from torchvision.models.resnet import BasicBlock, ResNet

        make_norm(norm, 64)  # validate the name before torchvision builds anything
        body = ResNet(BasicBlock, [2, 2, 2, 2], norm_layer=lambda width: make_norm(norm, width))
        body.conv1 = nn.Conv2d(channels, 64, 3, stride=1, padding=1, bias=False)
        body.maxpool = nn.Identity()
        body.fc = nn.Identity()
        super().__init__(body, channels, image_size, num_classes)


def net_class(name: str) -> type[Classifier]:
    """The registered network `name` names (case, - and _ aside); settings check it before any data is read."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in NETS:
        raise UserError(f"unknown network {name!r}; choose one of {', '.join(NETS)}")
    return NETS[key]


def build_net(name: str, channels: int, num_classes: int, image_size=(32, 32), **options) -> Classifier:
    """Build a network by name (`convnet`, `alexnet`, `vgg11`, `resnet18`) with its knobs as options.

    ConvNet knobs: depth, width, norm (none/batch/layer/instance/group), act (sigmoid/relu/leakyrelu),
    pooling (none/max/avg; `pool`, its old name, still works); the others take `norm`. Options set to None keep the
    network's default.
    """
    cls = net_class(name)
    options = {k: v for k, v in current_options(options).items() if v is not None}
    allowed = list(inspect.signature(cls.__init__).parameters)[4:]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise UserError(f"{name} has no option {', '.join(unknown)}; it takes: {', '.join(allowed)}")
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    return cls(channels, num_classes, tuple(image_size), **options)


# The purposes a network is initialised for, each its own stream of initial weights (`init_seed`).
INIT_STREAMS = {"pool": 0, "evaluation": 1, "fresh": 2, "teacher": 3, "matcher": 4}  # matcher: DM's network of each iteration
POOL_STREAM_INDICES = 1000  # pool member i of seed s is seeded s * 1000 + i (the seeds every pool so far was trained with)
MAX_SEED = 2**53  # seeds from 0 up to this keep the pool stream below 2**63, under every other stream


def init_seed(stream: str, seed: int, index: int = 0) -> int:
    """The torch seed of the initial weights of network `index` drawn for `stream` under `seed`.

    Why: an evaluation run (or a continual fresh model, or a teacher) that started at the initial weights of a pool
    member the images were matched on would not be an independent test of the images. The pool stream keeps the seeds
    its members always had (`seed * 1000 + index`, below 2**63, so existing pool folders stay valid); every
    other stream sets the top bit, carries its number in the next 7 bits and a hash of (stream, seed, index) in
    the low 56, so no two streams ever share a seed, whatever the seeds and indices.
    """
    if stream not in INIT_STREAMS:
        raise ValueError(f"unknown initialisation stream {stream!r}; one of {', '.join(INIT_STREAMS)}")
    if not (0 <= seed < MAX_SEED and index >= 0 and (stream != "pool" or index < POOL_STREAM_INDICES)):
        raise UserError(f"seeds must be whole numbers from 0 to 2**53 and network indices below {POOL_STREAM_INDICES}, "
                        f"got seed {seed} and index {index}; pass a --seed of at least 0 (and a pool of at most {POOL_STREAM_INDICES})")
    if stream == "pool":
        return seed * POOL_STREAM_INDICES + index
    import hashlib

    low = int.from_bytes(hashlib.sha256(f"{stream}:{seed}:{index}".encode()).digest()[:7], "big")
    return (1 << 63) | (INIT_STREAMS[stream] << 56) | low


def seeded_net(name: str, channels: int, num_classes: int, image_size, seed: int, *, stream: str = "evaluation", index: int = 0,
               **options) -> Classifier:
    """`build_net` with initial weights drawn from `init_seed(stream, seed, index)` alone; the global random state is left as it was.

    So a run's network is the same whichever runs come before it, in one process or across ranks, and never
    starts where a pool member did (the default stream is the evaluation runs').
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed(stream, seed, index))
        return build_net(name, channels, num_classes, image_size, **options)
