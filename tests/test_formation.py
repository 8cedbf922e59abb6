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
    assert 0 <= canvases.min() and canvases.max() <= 1
    # the dominant colour channel of every decoded image is its class
    decoded = decode(canvases, 2)
    assert decoded.mean((2, 3)).argmax(1).tolist() == decoded_labels(labels, 2).tolist()
