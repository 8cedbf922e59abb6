import itertools

import pytest
import torch

from condense.ncfd import amplitude_phase, characteristic_function, discrepancy_from_cf, ncfd


def _features(n=256, d=16, seed=0, dtype=torch.float32):
    return torch.nn.functional.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=dtype), dim=1)


def _frequencies(k=512, d=16, seed=1, dtype=torch.float32):
    return torch.randn(k, d, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _paper_form(real, synthetic, t, alpha):
    amplitude, phase = amplitude_phase(characteristic_function(real, t), characteristic_function(synthetic, t))
    return (alpha * amplitude + (1 - alpha) * phase).sqrt().mean(-1)


def test_zero_for_identical_sets_and_growing_with_a_shift():
    x, t = _features(), _frequencies()
    assert ncfd(x, x, t).item() < 1e-5
    direction = torch.nn.functional.normalize(torch.ones(16), dim=0)
    values = [ncfd(x, x + shift * direction, t).item() for shift in (0.01, 0.05, 0.2, 0.5)]
    assert all(a < b for a, b in itertools.pairwise(values)), values
    assert values[0] > 1e-3


@pytest.mark.parametrize("alpha", [0.25, 0.5, 0.75, 1.0])
def test_stable_form_equals_amplitude_phase_form_on_separated_sets(alpha):
    real, synthetic, t = _features(seed=0), _features(n=40, seed=2) * 0.5 + 0.3, _frequencies()
    stable = ncfd(real, synthetic, t, alpha)
    assert stable.item() > 0.1
    assert torch.allclose(stable, _paper_form(real, synthetic, t, alpha), rtol=1e-4)


def test_amplitude_plus_phase_is_the_squared_complex_difference():
    real_cf = characteristic_function(_features(dtype=torch.float64), _frequencies(dtype=torch.float64))
    synth_cf = characteristic_function(_features(n=30, seed=5, dtype=torch.float64), _frequencies(dtype=torch.float64))
    amplitude, phase = amplitude_phase(real_cf, synth_cf)
    difference = (real_cf[0] - synth_cf[0]) ** 2 + (real_cf[1] - synth_cf[1]) ** 2
    assert torch.allclose(amplitude + phase, difference, atol=1e-12)


def test_alpha_one_ignores_phase():
    """A constant translation of the features changes every CF's phase, never its modulus."""
    x, t = _features(), _frequencies()
    moved = x + 0.7
    assert ncfd(x, moved, t, alpha=1.0).item() < 1e-3
    assert ncfd(x, moved, t, alpha=0.5).item() > 0.1


def test_no_false_floor_for_nearly_equal_sets():
    """The amplitude/phase form computes 1 - cos of nearly equal angles in fp32 and stalls; ours tracks float64."""
    x = _features()
    y = x + 1e-5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(9))
    t = _frequencies()
    exact = ncfd(x.double(), y.double(), t.double()).item()
    ours = ncfd(x, y, t).item()
    published = _paper_form(x, y, t, 0.5).item()
    assert abs(ours - exact) < 0.05 * exact
    assert abs(published - exact) > 0.5 * exact


def test_grouped_features_give_one_value_per_group():
    real = torch.stack([_features(seed=s) for s in range(3)])
    synthetic = torch.stack([_features(n=8, seed=10 + s) for s in range(3)])
    t = _frequencies()
    grouped = ncfd(real, synthetic, t)
    assert grouped.shape == (3,)
    assert torch.allclose(grouped[1], ncfd(real[1], synthetic[1], t))
    cf = discrepancy_from_cf(characteristic_function(real, t), characteristic_function(synthetic, t))
    assert torch.equal(cf, grouped)


def test_decoupled_phase_is_the_paper_form_with_unit_moduli_in_the_phase_term():
    real, synthetic, t = _features(seed=0), _features(n=40, seed=2) * 0.5 + 0.3, _frequencies()
    real_cf, synthetic_cf = characteristic_function(real, t), characteristic_function(synthetic, t)
    amplitude, coupled_phase = amplitude_phase(real_cf, synthetic_cf)
    modulus = lambda cf: torch.hypot(*cf)  # noqa: E731
    angle_cos = coupled_phase / (2 * modulus(real_cf) * modulus(synthetic_cf))  # = 1 - cos(angle difference)
    expected = (0.5 * amplitude + 0.5 * 2 * angle_cos).sqrt().mean(-1)
    decoupled = ncfd(real, synthetic, t, 0.5, "decoupled")
    assert torch.allclose(decoupled, expected, rtol=1e-4)
    assert decoupled.item() > ncfd(real, synthetic, t, 0.5).item()  # the moduli (< 1) no longer shrink the phase term
    assert ncfd(real, real, t, 0.5, "decoupled").item() < 1e-5


def test_decoupled_phase_keeps_the_gradient_of_a_phase_error_where_the_moduli_are_small():
    """A pure rotation of a low-modulus CF: the coupled phase gradient scales with the moduli, the decoupled one does not."""
    real = (torch.tensor([[0.02]]), torch.tensor([[0.0]]))
    gradients = {}
    for phase in ("coupled", "decoupled"):
        angle = torch.tensor(0.5, requires_grad=True)
        synthetic = (0.02 * torch.cos(angle).view(1, 1), 0.02 * torch.sin(angle).view(1, 1))
        discrepancy_from_cf(real, synthetic, 0.5, phase).sum().backward()
        gradients[phase] = angle.grad.abs().item()
    assert gradients["decoupled"] > 10 * gradients["coupled"]
    with pytest.raises(Exception, match="unknown phase term"):
        discrepancy_from_cf(real, real, 0.5, "split")
