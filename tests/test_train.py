"""The one training loop (condense/train.py): the step's cross-entropy over parts, and the lr schedule by step."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from condense.train import TrainConfig, train

CPU = torch.device("cpu")
STATS = {"mean": (0.5,) * 3, "std": (0.25,) * 3}


class TwoParts:
    """An objective whose one step forwards the first `split` samples and the rest as two parts, adding nothing."""

    def __init__(self, split: int):
        self.split = split

    def start(self) -> None:
        pass

    def steps_per_epoch(self, count: int, batch_size: int) -> int:
        return 1

    def steps(self, order, batch_size):
        yield [order[: self.split], order[self.split :]]

    mixable_parts = ()

    def extra_loss(self, logits, mixed):
        return torch.zeros(())


def linear_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 3))


def test_step_cross_entropy_is_the_mean_over_every_sample_of_the_step():
    """Parts of 3 and 1 samples: the loss is one mean CE over the 4 (as DLB's official code), not CE(3) + CE(1)."""
    images, labels = torch.rand(4, 3, 4, 4, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1, 2, 0])
    net = linear_net()
    order = torch.randperm(4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # the one step's loss is taken before its update
        expected = F.cross_entropy(net((images[order] - 0.5) / 0.25), labels[order]).item()
    config = TrainConfig(epochs=1, batch_size=4, lr=1.0, weight_decay=0.0, dsa="", cutmix_p=0.0)
    stats = train(net, images, labels, config, **STATS, generator=torch.Generator().manual_seed(0), device=CPU, progress=False,
                  objective=TwoParts(3))
    assert stats["loss"] == pytest.approx(expected, rel=1e-6)  # the sum of the two parts' means would be 2.5x this here


def lrs_used(monkeypatch, epochs: int, count: int, batch_size: int, **config) -> list[float]:
    """The learning rate of every optimiser step of a training run, in order."""
    used = []
    step = torch.optim.AdamW.step

    def recording_step(self, *args, **kwargs):
        used.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", recording_step)
    train(linear_net(), torch.rand(count, 3, 4, 4), torch.arange(count) % 3,
          TrainConfig(epochs=epochs, batch_size=batch_size, lr=1.0, dsa="", cutmix_p=0.0, **config), **STATS,
          generator=torch.Generator().manual_seed(0), device=CPU, progress=False)
    return used


def test_one_epoch_gets_all_four_halvings(monkeypatch):
    # 10 steps: the lr halves at steps 2, 4, 6 and 8 (fifths of training), inside the only epoch
    assert lrs_used(monkeypatch, epochs=1, count=10, batch_size=1) == [1, 1, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125, 0.0625, 0.0625]


def test_three_epochs_get_all_four_halvings(monkeypatch):
    # 3 epochs of 4 steps: milestones round(12 * 0.2, 0.4, 0.6, 0.8) = 2, 5, 7, 10 (epoch milestones would halve twice)
    used = lrs_used(monkeypatch, epochs=3, count=8, batch_size=2)
    assert used == [1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125, 0.125, 0.0625, 0.0625]


def test_runs_whose_epochs_divide_by_five_decay_at_epoch_boundaries_as_before(monkeypatch):
    """300 epochs of 2 steps: the lr of epoch e is halved once per milestone epoch 60, 120, 180, 240 <= e."""
    used = lrs_used(monkeypatch, epochs=300, count=4, batch_size=2)
    expected = [0.5 ** sum(epoch >= m for m in (60, 120, 180, 240)) for epoch in range(300) for _ in range(2)]
    assert used == expected


def test_repeated_milestones_each_halve(monkeypatch):
    """2 steps in all: milestones round(2 * 0.2, 0.4, 0.6) all land on step 1 (0 is moved to 1), so step 1 halves three times."""
    assert lrs_used(monkeypatch, epochs=1, count=2, batch_size=1) == [1, 0.125]
