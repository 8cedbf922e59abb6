import pytest
import torch
from torch import nn

from condense.errors import UserError
from condense.nets import ACTIVATIONS, NORMS, POOLINGS, build_net, default_depth


def _shapes(net, channels, size, batch=2):
    x = torch.randn(batch, channels, size, size)
    return tuple(net(x).shape), tuple(net.features(x).shape)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("pooling", POOLINGS)
def test_convnet_every_norm_activation_pooling(norm, act, pooling):
    net = build_net("convnet", 3, 7, 16, depth=2, width=8, norm=norm, act=act, pooling=pooling)
    side = 16 // 4 if pooling != "none" else 16
    assert _shapes(net, 3, 16) == ((2, 7), (2, 8 * side * side))
    assert net.feature_dim == 8 * side * side


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
@pytest.mark.parametrize("width", [32, 64, 128, 256])
def test_convnet_every_depth_and_width(depth, width):
    net = build_net("convnet", 3, 10, 32, depth=depth, width=width)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == depth and all(c.out_channels == width for c in convs)
    assert _shapes(net, 3, 32, batch=1) == ((1, 10), (1, width * (32 >> depth) ** 2))


@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32), (3, 64), (1, 20)])
def test_convnet_any_channels_and_size(channels, size):
    net = build_net("convnet", channels, 5, size, width=8)
    depth = default_depth((size, size))
    assert _shapes(net, channels, size) == ((2, 5), (2, 8 * (size >> depth) ** 2))


def test_default_depth_follows_the_papers():
    assert [default_depth((s, s)) for s in (28, 32, 64, 128)] == [3, 3, 4, 5]


def test_norm_layers_are_what_their_names_say():
    def norm_of(kind):
        return build_net("convnet", 3, 2, 8, depth=1, width=8, norm=kind).body[1]

    assert isinstance(norm_of("batch"), nn.BatchNorm2d)
    assert isinstance(norm_of("instance"), nn.GroupNorm) and norm_of("instance").num_groups == 8
    assert isinstance(norm_of("layer"), nn.GroupNorm) and norm_of("layer").num_groups == 1
    assert isinstance(norm_of("group"), nn.GroupNorm) and norm_of("group").num_groups == 4
    assert isinstance(norm_of("none"), nn.Identity)


@pytest.mark.parametrize("name,dim", [("alexnet", 192), ("vgg11", 512), ("resnet18", 512)])
@pytest.mark.parametrize("channels,size", [(3, 32), (1, 28)])
def test_other_networks(name, dim, channels, size):
    net = build_net(name, channels, 10, size)
    logits, features = _shapes(net, channels, size)
    assert logits == (2, 10)
    if name == "alexnet":
        dim = 192 * (-(-size // 8)) ** 2  # three ceil-mode poolings
    assert features == (2, dim)


def test_resnet18_is_the_cifar_variant_with_the_chosen_norm():
    net = build_net("ResNet-18", 3, 10, 32, norm="batch")
    assert net.body.conv1.kernel_size == (3, 3) and net.body.conv1.stride == (1, 1)
    assert isinstance(net.body.maxpool, nn.Identity)
    assert isinstance(net.body.layer1[0].bn1, nn.BatchNorm2d)
    assert isinstance(build_net("resnet18", 3, 10, 32).body.layer1[0].bn1, nn.GroupNorm)


def test_bad_names_and_options():
    with pytest.raises(UserError, match="unknown network 'lenet'; choose one of convnet, alexnet, vgg11, resnet18"):
        build_net("lenet", 3, 10)
    with pytest.raises(UserError, match="vgg11 has no option depth; it takes: norm"):
        build_net("vgg11", 3, 10, depth=3)
    with pytest.raises(UserError, match="unknown normalisation 'weird'"):
        build_net("convnet", 3, 10, norm="weird")
    with pytest.raises(UserError, match="too small for 4 pooling blocks"):
        build_net("convnet", 3, 10, 8, depth=4)


def test_the_old_name_of_the_pooling_option_builds_the_same_network():
    from condense.nets import seeded_net

    old, new = (seeded_net("convnet", 3, 4, 16, 0, depth=2, width=8, **{name: "max"}) for name in ("pool", "pooling"))
    assert [type(m) for m in old.body] == [type(m) for m in new.body] and any(isinstance(m, nn.MaxPool2d) for m in new.body)
    assert all(torch.equal(a, b) for a, b in zip(old.state_dict().values(), new.state_dict().values()))


def test_grouped_logits_of_a_block_do_not_depend_on_the_other_blocks():
    """What keeps torchrun's sets bit for bit: a rank's classes get the logits they get in one process."""
    torch.manual_seed(0)
    net = build_net("convnet", 3, 10, 16, depth=2, width=8)
    x = torch.randn(5 * 4, 3, 16, 16)
    every = net.grouped_logits(x, 5)
    shard = torch.cat([x[0:4], x[8:12], x[16:20]])  # blocks 0, 2 and 4, as rank 0 of 2 holds them
    assert torch.equal(net.grouped_logits(shard, 3), torch.cat([every[0:4], every[8:12], every[16:20]]))
    assert torch.equal(net.grouped_logits(x[4:8], 1), every[4:8])
    assert torch.allclose(every, net(x), atol=1e-5)
