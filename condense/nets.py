"""Networks used in dataset distillation: the ConvNet family, AlexNet, VGG-11 and ResNet-18.

Every network is a `Classifier`: `features(x)` gives the penultimate feature (flattened output of
the last block) and `forward(x)` the logits. Any channel count and image size work.
"""

from __future__ import annotations

import inspect
import math

import torch
from torch import nn

from .errors import UserError

NORMS = ("none", "batch", "layer", "instance", "group")
ACTIVATIONS = ("sigmoid", "relu", "leakyrelu")
POOLINGS = ("none", "max", "avg")
GROUPNORM_GROUPS = 4  # "group" normalisation as in the DC/DSA/DM ConvNet


def make_norm(kind: str, channels: int) -> nn.Module:
    """A normalisation layer for `channels` feature maps.

    instance = GroupNorm with one group per channel (affine), layer = GroupNorm with one group
    (normalises over C,H,W; size-independent), group = GroupNorm with 4 groups.
    """
    if kind == "none":
        return nn.Identity()
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.GroupNorm(channels, channels, affine=True)
    if kind == "layer":
        return nn.GroupNorm(1, channels, affine=True)
    if kind == "group":
        if channels % GROUPNORM_GROUPS:
            raise UserError(f"group norm needs a width divisible by {GROUPNORM_GROUPS}, got {channels}")
        return nn.GroupNorm(GROUPNORM_GROUPS, channels, affine=True)
    raise UserError(f"unknown normalisation {kind!r}; choose one of {', '.join(NORMS)}")


def make_activation(kind: str) -> nn.Module:
    if kind == "relu":
        return nn.ReLU(inplace=True)
    if kind == "leakyrelu":
        return nn.LeakyReLU(0.01, inplace=True)
    if kind == "sigmoid":
        return nn.Sigmoid()
    raise UserError(f"unknown activation {kind!r}; choose one of {', '.join(ACTIVATIONS)}")


def make_pool(kind: str) -> nn.Module | None:
    if kind == "none":
        return None
    if kind == "max":
        return nn.MaxPool2d(2, 2)
    if kind == "avg":
        return nn.AvgPool2d(2, 2)
    raise UserError(f"unknown pooling {kind!r}; choose one of {', '.join(POOLINGS)}")


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


def default_depth(image_size: tuple[int, int]) -> int:
    """The field's ConvNet depth for an image size: 3 at 32 px (and 28), 4 at 64, 5 at 128."""
    return max(1, round(math.log2(min(image_size) / 4)))


class ConvNet(Classifier):
    """`depth` blocks of conv3x3(width) -> norm -> activation -> 2x2 pooling; then a linear layer.

    Without a depth, the depth follows the image size (`default_depth`).
    """

    def __init__(self, channels, num_classes, image_size, depth=None, width=128, norm="instance", act="relu", pool="avg"):
        depth = default_depth(image_size) if depth is None else depth
        if depth < 1 or width < 1:
            raise UserError(f"ConvNet needs depth >= 1 and width >= 1, got depth {depth}, width {width}")
        if pool != "none" and min(image_size) >> depth == 0:
            raise UserError(f"{image_size[0]}x{image_size[1]} images are too small for {depth} pooling blocks")
        layers: list[nn.Module] = []
        for block in range(depth):
            layers += [nn.Conv2d(channels if block == 0 else width, width, 3, padding=1), make_norm(norm, width), make_activation(act)]
            pooling = make_pool(pool)
            if pooling is not None:
                layers.append(pooling)
        super().__init__(nn.Sequential(*layers, nn.Flatten()), channels, image_size, num_classes)


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


NETS: dict[str, type[Classifier]] = {"convnet": ConvNet, "alexnet": AlexNet, "vgg11": VGG11, "resnet18": ResNet18}


def build_net(name: str, channels: int, num_classes: int, image_size=(32, 32), **options) -> Classifier:
    """Build a network by name (`convnet`, `alexnet`, `vgg11`, `resnet18`) with its knobs as options.

    ConvNet knobs: depth, width, norm (none/batch/layer/instance/group), act (sigmoid/relu/leakyrelu),
    pool (none/max/avg); the others take `norm`. Options set to None keep the network's default.
    """
    key = name.lower().replace("-", "").replace("_", "")
    if key not in NETS:
        raise UserError(f"unknown network {name!r}; choose one of {', '.join(NETS)}")
    cls = NETS[key]
    options = {k: v for k, v in options.items() if v is not None}
    allowed = list(inspect.signature(cls.__init__).parameters)[4:]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise UserError(f"{name} has no option {', '.join(unknown)}; it takes: {', '.join(allowed)}")
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    return cls(channels, num_classes, tuple(image_size), **options)


def seeded_net(name: str, channels: int, num_classes: int, image_size, seed: int, **options) -> Classifier:
    """`build_net` with initial weights drawn from `seed` alone; the global random state is left as it was.

    So a run's network is the same whichever runs come before it, in one process or across ranks.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_net(name, channels, num_classes, image_size, **options)
