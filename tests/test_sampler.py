import torch

from condense.ncfd import ncfd
from condense.sampler import GaussianSampler, ScaleMixtureSampler


def _sets(d=32):
    g = torch.Generator().manual_seed(0)
    real = torch.nn.functional.normalize(torch.randn(200, d, generator=g), dim=1)
    synthetic = torch.nn.functional.normalize(torch.randn(20, d, generator=g) + 0.3, dim=1)
    return real, synthetic


def test_gaussian_sampler_is_seeded_standard_normal():
    sampler = GaussianSampler(8, 4096)
    t = sampler(torch.Generator().manual_seed(1))
    assert t.shape == (4096, 8) and torch.equal(t, sampler(torch.Generator().manual_seed(1)))
    assert abs(t.mean().item()) < 0.02 and abs(t.std().item() - 1) < 0.02


def test_scale_mixture_shape_bounds_and_start_at_unit_scale():
    torch.manual_seed(0)
    sampler = ScaleMixtureSampler(dim=8, num_frequencies=64, sigma_min=0.1, sigma_max=10.0)
    assert sampler.components == 4  # K / 16
    t = sampler(torch.Generator().manual_seed(0))
    assert t.shape == (64, 8)
    stats = sampler.stats()
    assert abs(stats["sigma_mean"] - 1) < 0.01
    z = 100 * torch.randn(50, sampler.noise_dim)
    with torch.no_grad():
        sampler.net[-1].weight.mul_(1e4)
        sigma = sampler.sigma(z)
    assert sigma.min() >= 0.1 - 1e-6 and sigma.max() <= 10.0 + 1e-4


def test_frequencies_of_one_component_share_their_scales():
    torch.manual_seed(0)
    sampler = ScaleMixtureSampler(dim=4, num_frequencies=32, components=2)
    with torch.no_grad():
        sampler.net[-1].weight.normal_()  # make components differ
    generator = torch.Generator().manual_seed(3)
    state = generator.get_state()
    t = sampler(generator)
    generator.set_state(state)
    z = torch.randn(2, sampler.noise_dim, generator=generator)
    eps = torch.randn(32, 4, generator=generator)
    sigma = sampler.sigma(z)
    assert torch.allclose(t[:16], sigma[0] * eps[:16]) and torch.allclose(t[16:], sigma[1] * eps[16:])


def _loss(sampler, real, synthetic, state):
    generator = torch.Generator()
    generator.set_state(state)
    return ncfd(real, synthetic, sampler(generator)).sum()


def test_one_psi_step_increases_the_discrepancy_it_was_given():
    torch.manual_seed(0)
    real, synthetic = _sets()
    sampler = ScaleMixtureSampler(dim=32, num_frequencies=256)
    optimizer = torch.optim.Adam(sampler.parameters(), lr=1e-2)
    state = torch.Generator().manual_seed(5).get_state()
    before = _loss(sampler, real, synthetic, state)
    before.backward()  # the images' descent pass: one backward of the shared loss
    sampler.ascend()
    optimizer.step()
    after = _loss(sampler, real, synthetic, state)
    assert after.item() > before.item() + 1e-4


def test_the_published_double_backward_cancels_and_would_fail_the_check_above():
    """Backward of the loss, then of the negated loss, adds exactly -grad: ψ's step is a no-op."""
    torch.manual_seed(0)
    real, synthetic = _sets()
    sampler = ScaleMixtureSampler(dim=32, num_frequencies=256)
    optimizer = torch.optim.SGD(sampler.parameters(), lr=1e-2)
    state = torch.Generator().manual_seed(5).get_state()
    loss = _loss(sampler, real, synthetic, state)
    loss.backward(retain_graph=True)
    (-loss).backward()
    optimizer.step()
    assert _loss(sampler, real, synthetic, state).item() == loss.item()


def test_a_frequency_count_psi_cannot_split_is_a_user_error():
    import pytest

    from condense.errors import UserError

    with pytest.raises(UserError, match=r"--frequencies 100 does not split into psi's 6 mixture components .* multiple of 16, or --sampler gaussian"):
        ScaleMixtureSampler(dim=8, num_frequencies=100)
    assert ScaleMixtureSampler(dim=8, num_frequencies=96).components == 6


def test_log_scale_penalty_is_zero_at_unit_scale_and_its_descent_pulls_sigma_back_to_one():
    torch.manual_seed(0)
    sampler = ScaleMixtureSampler(dim=8, num_frequencies=64)
    sampler(torch.Generator().manual_seed(0))
    assert sampler.log_scale_penalty().item() < 1e-4
    with torch.no_grad():
        sampler.net[-1].bias.add_(1.0)  # every σ above 1
    optimizer = torch.optim.SGD(sampler.parameters(), lr=0.1)
    penalties = []
    for _ in range(3):
        sampler(torch.Generator().manual_seed(0))
        penalty = sampler.log_scale_penalty()
        assert torch.allclose(penalty, torch.log(sampler._last_sigma).square().mean())
        penalties.append(penalty.item())
        optimizer.zero_grad()
        penalty.backward()
        optimizer.step()
    assert penalties[0] > 0.1 and penalties[2] < penalties[1] < penalties[0]
