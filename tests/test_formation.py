import pytest
import torch

from condense.errors import UserError
from condense.formation import decode, decoded_labels, init_canvases, tile

from conftest import make_real


def test_decode_cuts_canvases_into_upsampled_crops_in_row_major_order():
    canvas = torch.zeros(1, 1, 4, 4)
    canvas[0, 0, :2, :2], canvas[0, 0, :2, 2:], canvas[0, 0, 2:, :2], canvas[0, 0, 2:, 2:] = 0.1, 0.2, 0.3, 0.4
    images = decode(canvas, 2)
    assert images.shape == (4, 1, 4, 4)
    assert torch.allclose(images, torch.tensor([0.1, 0.2, 0.3, 0.4]).view(4, 1, 1, 1).expand(4, 1, 4, 4))
    assert decoded_labels(torch.tensor([3, 5]), 2).tolist() == [3, 3, 3, 3, 5, 5, 5, 5]


def test_tile_then_decode_returns_constant_images_and_factor_one_is_identity():
    flat = torch.rand(8, 3, 1, 1).expand(8, 3, 8, 8).contiguous()
    assert torch.allclose(decode(tile(flat, 2), 2), flat, atol=1e-6)
    assert torch.equal(decode(flat, 1), flat) and torch.equal(tile(flat, 1), flat)


def test_decode_is_differentiable_and_checks_the_factor():
    canvases = torch.rand(2, 3, 8, 8, requires_grad=True)
    decode(canvases, 2).sum().backward()
    assert canvases.grad.abs().sum() > 0
    with pytest.raises(UserError, match="factor 3 must divide the image size 8x8"):
        decode(canvases, 3)


def test_init_canvases_from_distinct_real_images_of_each_class():
    real = make_real()
    canvases, labels = init_canvases(real, ipc=2, factor=2, generator=torch.Generator().manual_seed(0))
    assert canvases.shape == (6, 3, 16, 16) and labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert canvases.min() >= 0 and canvases.max() <= 1
    # the dominant colour channel of every decoded image is its class
    decoded = decode(canvases, 2)
    assert decoded.mean((2, 3)).argmax(1).tolist() == decoded_labels(labels, 2).tolist()


def _blocks(values: torch.Tensor) -> torch.Tensor:
    """One 1x4x4 image whose 2x2 blocks each hold the 4 given values in reading order."""
    image = torch.zeros(1, 1, 4, 4)
    for by in range(2):
        for bx in range(2):
            image[0, 0, 2 * by : 2 * by + 2, 2 * bx : 2 * bx + 2] = values.view(2, 2)
    return image


def test_resize_modes_downsize_each_tile_as_named():
    """On 2x2 blocks [a b; c d]: area and bilinear take the block mean, nearest its top-left pixel;
    bilinear-antialias's wider filter also reaches into the neighbouring block."""
    values = torch.tensor([0.1, 0.2, 0.3, 0.6])
    images = _blocks(values).repeat(4, 1, 1, 1)  # 4 images -> one canvas of four 2x2 tiles
    area, bilinear = tile(images, 2, "area"), tile(images, 2, "bilinear")
    nearest, smooth = tile(images, 2, "nearest"), tile(images, 2, "bilinear-antialias")
    assert torch.allclose(area, torch.full_like(area, values.mean().item())) and torch.allclose(bilinear, area)
    assert torch.allclose(nearest, torch.full_like(nearest, 0.1))
    step = torch.zeros(4, 1, 8, 8)
    step[:, :, :, 4:] = 1.0  # a vertical edge on a block boundary: area keeps it sharp, the antialias filter blurs it
    assert set(tile(step, 2, "area").unique().tolist()) == {0.0, 1.0}
    assert len(tile(step, 2, "bilinear-antialias").unique()) > 2 and not torch.equal(smooth, area)
    with pytest.raises(UserError, match="unknown resize 'cubic'"):
        tile(images, 2, "cubic")


def test_first_images_take_each_class_first_in_dataset_order_random_ones_follow_the_seed():
    real = make_real(per_class=12)
    first, _ = init_canvases(real, ipc=1, factor=2, generator=torch.Generator().manual_seed(0), images="first")
    again, _ = init_canvases(real, ipc=1, factor=2, generator=torch.Generator().manual_seed(5), images="first")
    expected = tile(real.floats(torch.cat([real.by_class[c][:4] for c in range(3)])), 2)
    assert torch.equal(first, expected) and torch.equal(first, again)
    assert real.by_class[0][:4].tolist() == [0, 3, 6, 9]  # dataset order within the class
    random_a, _ = init_canvases(real, ipc=1, factor=2, generator=torch.Generator().manual_seed(0))
    random_b, _ = init_canvases(real, ipc=1, factor=2, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(random_a, first) and not torch.equal(random_a, random_b)
    with pytest.raises(UserError, match="fewer than the 16"):
        init_canvases(real, ipc=4, factor=2, generator=torch.Generator(), images="first")
    with pytest.raises(UserError, match="unknown initial images"):
        init_canvases(real, ipc=1, factor=2, generator=torch.Generator(), images="last")
