import pytest
import torch

from condense.augment import DSA, OPERATIONS, DSAStrengths, cutmix
from condense.errors import UserError

ALL = "_".join(OPERATIONS)


def _images(n=6, seed=0):
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("strategy", [*OPERATIONS, ALL])
def test_siamese_draw_is_shared_and_per_sample_draws_differ(strategy):
    same = _images(1).expand(8, -1, -1, -1).clone()
    siamese = DSA(strategy)(same, _gen(), siamese=True)
    assert torch.equal(siamese, siamese[:1].expand_as(siamese))
    per_sample = DSA(strategy)(same, _gen(), siamese=False)
    assert not torch.equal(per_sample, per_sample[:1].expand_as(per_sample))


def test_siamese_draw_applies_one_transformation_to_different_images():
    a, b = _images(1, 1), _images(1, 2)
    together = DSA(ALL)(torch.cat([a, b]), _gen(5), siamese=True)
    alone_a = DSA(ALL)(a, _gen(5), siamese=True)
    # one draw, applied image by image: an image comes out the same alone or in the batch
    assert torch.allclose(together[:1], alone_a, atol=1e-6)


@pytest.mark.parametrize("strategy", [*OPERATIONS, ALL])
def test_gradients_reach_the_input(strategy):
    x = _images().requires_grad_(True)
    DSA(strategy)(x, _gen()).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_zero_strength_is_the_identity():
    off = DSAStrengths(brightness=0, saturation=0, contrast=0, crop=0, cutout=0, flip=0, scale=0, rotate=0)
    x = _images()
    assert torch.equal(DSA(ALL, off)(x, _gen()), x)
    assert torch.equal(DSA(ALL, off)(x, _gen(), siamese=True), x)


def test_same_seed_same_draw():
    x = _images()
    assert torch.equal(DSA(ALL)(x, _gen(3)), DSA(ALL)(x, _gen(3)))
    assert not torch.equal(DSA(ALL)(x, _gen(3)), DSA(ALL)(x, _gen(4)))


def test_brightness_adds_a_constant_within_its_range():
    only = DSAStrengths(saturation=0, contrast=0)
    x = _images()
    shift = DSA("color", only)(x, _gen()) - x
    per_image = shift.flatten(1)
    assert torch.allclose(per_image, per_image[:, :1].expand_as(per_image), atol=1e-6)
    assert per_image.abs().max() <= 0.5


def test_flip_with_probability_one_mirrors_exactly():
    x = _images()
    out = DSA("flip", DSAStrengths(flip=1.0))(x, _gen())
    assert torch.allclose(out, x.flip(3), atol=1e-5)


def test_crop_translates_by_whole_pixels_with_zero_fill():
    x = _images(1)
    out = DSA("crop")(x, _gen(7))[0]
    matches = []
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            shifted = torch.zeros_like(x[0])
            src = x[0][:, max(dy, 0) : 16 + min(dy, 0), max(dx, 0) : 16 + min(dx, 0)]
            shifted[:, max(-dy, 0) : 16 + min(-dy, 0), max(-dx, 0) : 16 + min(-dx, 0)] = src
            matches.append(torch.allclose(out, shifted, atol=1e-5))
    assert sum(matches) == 1


def test_cutout_zeroes_one_square_and_keeps_the_rest():
    x = _images(4) + 1  # no zero pixels before cutout
    out = DSA("cutout")(x, _gen())
    erased = out == 0
    assert torch.equal(out[~erased], x[~erased])
    for mask in erased[:, 0]:
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        assert 0 < mask.sum() <= 64 and mask.sum() == len(rows) * len(cols)  # a rectangle, at most 8x8


def test_unknown_operation():
    with pytest.raises(UserError, match="unknown DSA operation\\(s\\) blur"):
        DSA("color_blur")


def test_cutmix_pastes_a_box_from_the_permuted_batch():
    x = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 3, 16, 16).clone()
    mixed, perm, lam = cutmix(x, _gen(2))
    for i in range(4):
        from_other = (mixed[i] == x[perm[i]]) & (x[perm[i]] != x[i])
        if perm[i] != i:
            assert abs(from_other.float().mean().item() - (1 - lam)) < 1e-6
    assert 0 <= lam <= 1
    assert torch.equal(cutmix(x, _gen(2))[0], mixed)


def test_one_draw_per_class_applies_alike_to_real_and_synthetic_batches():
    """Matching: real and synthetic images of a class share the class's draw, wherever they sit."""
    dsa = DSA("color_crop_cutout")
    draw = dsa.draw(3, 16, 16, _gen(1))
    real, synthetic = _images(6, 1), _images(3, 2)
    real_groups, synthetic_groups = torch.tensor([0, 0, 1, 1, 2, 2]), torch.tensor([0, 1, 2])
    together = dsa.apply(torch.cat([real, synthetic]), draw, torch.cat([real_groups, synthetic_groups]))
    assert torch.equal(together[:6], dsa.apply(real, draw, real_groups))
    assert torch.equal(together[6:], dsa.apply(synthetic, draw, synthetic_groups))
    same = _images(1).expand(6, -1, -1, -1)
    out = dsa.apply(same, draw, real_groups)
    assert torch.equal(out[0], out[1]) and not torch.equal(out[1], out[2])


def test_mode_one_applies_exactly_one_operation_per_draw():
    strengths = DSAStrengths(flip=1.0)
    x = _images(64) + 1  # no zeros before cutout
    out = DSA("flip_cutout", strengths, mode="one")(x, _gen())
    flipped = torch.tensor([torch.allclose(o, i.flip(2), atol=1e-5) for o, i in zip(out, x)])
    cut = (out == 0).flatten(1).any(1)
    assert torch.equal(flipped, ~cut)  # every image got a flip or a cutout, never both
    assert 10 < flipped.sum() < 54
    both = DSA("flip_cutout", strengths, mode="all")(x, _gen())
    assert all(torch.allclose(o[m], i.flip(2)[m]) for o, i, m in zip(both, x, both != 0))
    assert (both == 0).flatten(1).any(1).all()
    with pytest.raises(UserError, match="DSA mode must be one"):
        DSA("flip", mode="some")


def test_mode_batch_applies_one_operation_to_the_whole_batch_with_parameters_per_image():
    strengths = DSAStrengths(flip=1.0)
    x = _images(16) + 1  # no zeros before cutout
    picked = set()
    for seed in range(8):
        out = DSA("flip_cutout", strengths, mode="batch")(x, _gen(seed))
        flipped = torch.tensor([torch.allclose(o, i.flip(2), atol=1e-5) for o, i in zip(out, x)])
        cut = (out == 0).flatten(1).any(1)
        assert (flipped.all() and not cut.any()) or (cut.all() and not flipped.any())  # one operation, for every image
        if cut.all():
            assert len({tuple((o == 0).nonzero()[0].tolist()) for o in out}) > 1  # each image its own square
        picked.add("flip" if flipped.all() else "cutout")
    assert picked == {"flip", "cutout"}


def test_mode_batch_geometry_applies_flip_and_cutout_to_every_image_and_one_geometric_operation_per_batch():
    dsa = DSA("flip_cutout_crop_rotate", DSAStrengths(flip=1.0), mode="batch-geometry")
    picked = set()
    for seed in range(8):
        active = dsa._active(10, _gen(seed))
        assert active["flip"].all() and active["cutout"].all()
        (geometric,) = [name for name in ("crop", "rotate") if active[name].any()]
        assert active[geometric].all()
        picked.add(geometric)
    assert picked == {"crop", "rotate"}
    x = _images(4) + 1
    out = dsa(x, _gen(0))
    assert (out == 0).flatten(1).any(1).all()  # every image cut out
