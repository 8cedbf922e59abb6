"""DLB (downstream/dlb.py): both batch schemes through the one training loop, the hand-written-loop
component, the Avalanche plugin inside real strategies, label noise, `train_model` and `downstream train`."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from itertools import pairwise

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from condense.nets import build_net
from condense.train import TrainConfig, train
from downstream.dlb import DLB, LastBatchDistillation, crop_flip, distillation_term
from downstream.train import (
    default_config,
    real_subset,
    symmetric_label_noise,
    train_model,
)

from conftest import assert_one_error, make_real, write_image_folder

CPU = torch.device("cpu")


class RecordingDLB(DLB):
    """DLB that records every step's parts and every term it adds."""

    def start(self) -> None:
        super().start()
        self.parts, self.terms = [], []

    def steps(self, order, batch_size):
        for parts in super().steps(order, batch_size):
            self.parts.append([p.clone() for p in parts])
            yield parts

    def extra_loss(self, logits, mixed):
        term = super().extra_loss(logits, mixed)
        self.terms.append(term.item())
        return term


def tiny_run(objective, *, count=16, batch_size=8, epochs=1, lr=1e-2, dsa="", seed=0):
    """Train a small ConvNet on `count` random 8x8 images; returns its parameters as one vector."""
    generator = torch.Generator().manual_seed(100)
    images, labels = torch.rand(count, 3, 8, 8, generator=generator), torch.arange(count) % 2
    torch.manual_seed(seed)
    net = build_net("convnet", 3, 2, (8, 8), depth=1, width=4)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=0.0, dsa=dsa, cutmix_p=0.0)
    train(net, images, labels, config, mean=(0.5,) * 3, std=(0.25,) * 3, generator=torch.Generator().manual_seed(seed),
          device=CPU, progress=False, objective=objective)
    return torch.cat([p.detach().flatten() for p in net.parameters()])


@pytest.mark.parametrize("scheme", ["official", "paper"])
def test_first_step_is_plain_cross_entropy(scheme):
    dlb = RecordingDLB(scheme=scheme)
    # official: one step of the whole set; paper: the first step holds n/2 = 8 new samples only
    with_dlb = tiny_run(dlb, count=16 if scheme == "official" else 8, batch_size=16)
    plain = tiny_run(None, count=16 if scheme == "official" else 8, batch_size=16)
    assert dlb.terms == [0.0] and len(dlb.parts) == 1 and len(dlb.parts[0]) == 1
    assert torch.equal(with_dlb, plain)  # bit for bit the same network as one CE step
    dlb_two_steps = RecordingDLB(scheme=scheme)
    tiny_run(dlb_two_steps, count=16, batch_size=8)
    assert dlb_two_steps.terms[0] == 0.0 and dlb_two_steps.terms[1] > 1e-6  # from the second step on, a real term


def test_cached_logits_get_no_gradient():
    previous = torch.randn(4, 3, requires_grad=True)
    now = torch.randn(4, 3, requires_grad=True)
    term = distillation_term(now, previous, tau=3.0)
    term.backward()
    assert previous.grad is None and now.grad.abs().sum() > 0
    expected = 9 * (F.softmax(previous / 3, 1) * (F.log_softmax(previous / 3, 1) - F.log_softmax(now / 3, 1))).sum(1).mean()
    assert term.item() == pytest.approx(expected.item(), rel=1e-5)
    dlb = RecordingDLB()
    tiny_run(dlb, count=16, batch_size=8, epochs=2)
    assert not dlb.previous_logits.requires_grad and dlb.previous_logits.grad_fn is None


FROZEN = 1e-30  # an lr whose AdamW steps (about lr each) are below a float32 weight's resolution: the weights never move


@pytest.mark.parametrize("scheme", ["official", "paper"])
def test_frozen_model_without_augmentation_gives_zero_kl(scheme):
    frozen = RecordingDLB(scheme=scheme)
    tiny_run(frozen, count=16, batch_size=8, epochs=2, lr=FROZEN, dsa="")
    assert frozen.terms[0] == 0.0 and len(frozen.terms) >= 3
    assert max(frozen.terms) < 1e-6, frozen.terms
    learning = RecordingDLB(scheme=scheme)  # control: a model that learns, or a second augmented view, moves the term off 0
    tiny_run(learning, count=16, batch_size=8, epochs=2, lr=FROZEN, dsa="color_crop_flip_scale_rotate")
    assert min(learning.terms[1:]) > 1e-4


def official_loss(logits, targets, previous_logits, now, previous_targets, tau, alpha):
    """The official DLB step loss written out: one mean CE over new and repeated samples + alpha tau^2 KL on the repeated."""
    log_p = torch.cat([logits, now]).log_softmax(1)
    labels = torch.cat([targets, previous_targets])
    cross_entropy = -log_p[torch.arange(len(labels)), labels].sum() / len(labels)
    p_old = (previous_logits / tau).softmax(1)
    kl = (p_old * (p_old.log() - (now / tau).log_softmax(1))).sum(1).mean()
    return cross_entropy + alpha * tau**2 * kl


def test_hand_written_loop_step_loss_is_the_official_loss():
    """Three batches of 5 and a model that moves between steps: each step's loss is the hand computation's."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    batches = [(torch.randn(5, 12), torch.randint(0, 3, (5,))) for _ in range(3)]
    dlb = LastBatchDistillation(tau=2.0, alpha=0.7)
    previous = None
    for step, (x, y) in enumerate(batches):
        logits = model(x)
        loss = dlb.step_loss(model, x, y, logits)
        with torch.no_grad():
            if previous is None:
                expected = F.cross_entropy(logits, y)
            else:
                expected = official_loss(logits, y, previous[2], model(previous[0]), previous[1], 2.0, 0.7)
                kl_part = expected - F.cross_entropy(torch.cat([logits, model(previous[0])]), torch.cat([y, previous[1]]))
                assert kl_part > 1e-3, step  # the model moved: the KL term is a real part of the figure
        assert loss.item() == pytest.approx(expected.item(), rel=1e-6), step
        previous = (x, y, logits.detach())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_official_objective_in_train_is_the_official_loss():
    """Two steps of the official scheme through `train` (plain SGD, no augmentation) against the same steps by hand."""
    tau, alpha, lr = 3.0, 1.0, 0.5
    images, labels = torch.rand(8, 3, 4, 4, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(48, 3))
    by_hand = copy.deepcopy(net)
    config = TrainConfig(epochs=1, batch_size=4, optimizer="sgd", lr=lr, momentum=0.0, weight_decay=0.0, lr_decay_at=(), dsa="", cutmix_p=0.0)
    stats = train(net, images, labels, config, mean=(0.5,) * 3, std=(0.25,) * 3, generator=torch.Generator().manual_seed(0),
                  device=CPU, progress=False, objective=DLB(tau, alpha))
    order = torch.randperm(8, generator=torch.Generator().manual_seed(0))
    x, y = (images[order] - 0.5) / 0.25, labels[order]
    optimizer = torch.optim.SGD(by_hand.parameters(), lr=lr)
    first_logits = by_hand(x[:4])
    first = F.cross_entropy(first_logits, y[:4])
    optimizer.zero_grad()
    first.backward()
    optimizer.step()
    second = official_loss(by_hand(x[4:]), y[4:], first_logits.detach(), by_hand(x[:4]), y[:4], tau, alpha)
    optimizer.zero_grad()
    second.backward()
    optimizer.step()
    # the epoch's loss weights each step by its samples: 4 for the first, 8 for the second
    assert stats["loss"] == pytest.approx((4 * first.item() + 8 * second.item()) / 12, rel=1e-6)
    for trained, expected in zip(net.parameters(), by_hand.parameters()):
        assert torch.allclose(trained, expected, atol=1e-6)


@pytest.mark.parametrize("cutmix_p", [1.0, 0.5])
def test_official_scheme_with_cutmix_mixes_only_new_parts_and_distils_only_from_unmixed_ones(cutmix_p, monkeypatch):
    from condense import train as loop

    calls, terms = [], []
    take_input = loop._Training._input

    def recorded_input(self, batch, generator, may_mix=True):
        x, mix = take_input(self, batch, generator, may_mix)
        calls.append((may_mix, mix is not None))
        return x, mix

    monkeypatch.setattr(loop._Training, "_input", recorded_input)
    objective = DLB()
    extra_loss = objective.extra_loss
    objective.extra_loss = lambda logits, mixed: (term := extra_loss(logits, mixed), terms.append((list(mixed), term.item())))[0]
    images, labels = torch.rand(10, 3, 8, 8, generator=torch.Generator().manual_seed(1)), torch.arange(10) % 2
    net = build_net("convnet", 3, 2, (8, 8), depth=1, width=4)
    train(net, images, labels, TrainConfig(epochs=3, batch_size=4, dsa="", cutmix_p=cutmix_p), mean=(0.5,) * 3, std=(0.25,) * 3,
          generator=torch.Generator().manual_seed(0), device=CPU, progress=False, objective=objective)
    assert len(terms) == 3 * 3 and [len(mixed) for mixed, _ in terms] == [1] + [2] * 8  # every step after the first repeats one part
    assert not any(mixed for may_mix, mixed in calls if not may_mix)  # the repeated part is never mixed
    new_mixed = [mixed[0] for mixed, _ in terms]
    if cutmix_p == 1.0:
        assert all(new_mixed) and all(term == 0 for _, term in terms)  # every cached batch was mixed: no KL term at all
    else:
        assert 0 < sum(new_mixed) < len(new_mixed)
        for step in range(1, len(terms)):  # a KL term exactly where the previous step's new part was not mixed
            assert (terms[step][1] > 0) == (not new_mixed[step - 1]), step


def crops_and_flips(image: torch.Tensor, reach: int) -> list[torch.Tensor]:
    """Every shift by up to `reach` pixels each way (zero fill) of `image` [C,H,W], flipped or not."""
    _, height, width = image.shape
    padded = F.pad(image, (reach,) * 4)
    views = [padded[:, reach + dy : reach + dy + height, reach + dx : reach + dx + width] for dy in range(-reach, reach + 1)
             for dx in range(-reach, reach + 1)]
    return views + [view.flip(2) for view in views]


def test_crop_flip_is_a_crop_and_flip_of_image_batches_only():
    torch.manual_seed(0)
    images = torch.rand(16, 3, 32, 32)
    view = crop_flip(images)
    assert view.shape == images.shape
    assert sum(not torch.equal(a, b) for a, b in zip(view, images)) >= 14  # 1 in 162 draws is the identity
    for image, seen in zip(images, view):  # each view is one of the 9 x 9 shifts of RandomCrop(32, padding=4), flipped or not
        assert any(torch.allclose(seen, candidate, atol=1e-5) for candidate in crops_and_flips(image, 4))
    features, pixels = torch.randn(16, 6), (images * 255).to(torch.uint8)
    assert crop_flip(features) is features and crop_flip(pixels) is pixels  # not a float image batch: as they are


def shift(x: torch.Tensor) -> torch.Tensor:
    """A deterministic augmentation whose output tells how often it was applied: + 1 per application."""
    return x + 1


@pytest.mark.parametrize("augment", [None, shift])
def test_hand_written_loop_draws_the_second_view_from_the_source(augment):
    """The repeated samples are augment(previous source), never augment(previous view); no augment: the inputs as they were."""
    seen = []

    def model(x):
        seen.append(x.clone())
        return x.mean(dim=(2, 3))

    from condense.errors import UserError

    dlb = LastBatchDistillation() if augment is None else LastBatchDistillation(augment=augment)  # no augment by default
    torch.manual_seed(0)
    first, second = torch.rand(4, 3, 8, 8), torch.rand(4, 3, 8, 8)
    for source in (first, second):
        x = source if augment is None else augment(source)
        dlb.step_loss(model, x, torch.tensor([0, 1, 2, 0]), model(x), source=None if augment is None else source)
    assert len(seen) == 3 and torch.equal(seen[-1], first if augment is None else first + 1)  # one fresh view of the first batch
    with pytest.raises(UserError, match="source"):
        LastBatchDistillation(augment=shift).step_loss(model, x, torch.tensor([0, 1, 2, 0]), model(x))  # a view of a view otherwise


def image_benchmark(count: int, test: int, shape: tuple[int, ...]):
    """Two Avalanche experiences (classes 0-1, 2-3) of random inputs of `shape` with task label 0."""
    from avalanche.benchmarks.scenarios.supervised import class_incremental_benchmark
    from avalanche.benchmarks.utils import DataAttribute, make_avalanche_dataset
    from torch.utils.data import TensorDataset

    generator = torch.Generator().manual_seed(0)

    def dataset(size):
        x, y = torch.randn(size, *shape, generator=generator), torch.arange(size) % 4
        return make_avalanche_dataset(TensorDataset(x, y), data_attributes=[
            DataAttribute(y.tolist(), "targets"), DataAttribute([0] * size, "targets_task_labels", use_in_getitem=True)])

    train_set = dataset(count)
    return class_incremental_benchmark({"train": train_set, "test": dataset(test)}, class_order=[0, 1, 2, 3], num_experiences=2), train_set


@pytest.mark.parametrize("augment", [None, shift])
def test_plugin_trains_on_views_drawn_from_the_stream_images(augment):
    """Every training forward, new or repeated, sees augment(stream image) once: never the image un-augmented beside
    augmented repeats, never a view of a view; without an augment, the stream's images as the loader gave them."""
    from avalanche.training.plugins import EvaluationPlugin
    from avalanche.training.supervised import Naive

    from downstream.dlb_plugin import DLBPlugin

    benchmark, train_set = image_benchmark(12, 4, (1, 8, 8))
    images = torch.stack([train_set[i][0] for i in range(len(train_set))]).flatten(1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 4))
    seen = []
    model.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0].detach().flatten(1).clone()) if module.training else None)
    strategy = Naive(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), train_mb_size=4, train_epochs=1, device=CPU,
                     plugins=[DLBPlugin() if augment is None else DLBPlugin(augment=augment)], evaluator=EvaluationPlugin(loggers=[]))
    for experience in benchmark.train_stream:
        strategy.train(experience, eval_streams=[])
    rows = torch.cat(seen)
    assert len(seen) == 2 * 3  # per experience 6 images: mini-batches of 4 and 2, the first repeated at the second step
    expected = images if augment is None else augment(images)
    assert all((row == expected).all(1).any() for row in rows)


def test_paper_batches_overlap_by_half_and_every_sample_is_new_once_per_epoch():
    count, n = 24, 8
    dlb = RecordingDLB(scheme="paper")
    dlb.start()
    epochs = []
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        steps = []
        for parts in dlb.steps(torch.randperm(count, generator=generator), n):
            dlb.extra_loss([torch.zeros(len(parts[0]), 2)], [False])
            steps.append(parts[0])
        epochs.append(steps)
    batches = [batch for steps in epochs for batch in steps]
    assert len(batches[0]) == n // 2 and all(len(b) == n for b in batches[1:])  # a fixed batch of n after the first step
    for previous, batch in pairwise(batches):
        assert torch.equal(batch[: n // 2], previous[-(n // 2):])  # first n/2 = the previous batch's last n/2
    for steps in epochs:  # batches made of one epoch's samples share exactly n/2 distinct samples with the one before
        assert all(len(set(b.tolist()) & set(a.tolist())) == n // 2 for a, b in pairwise(steps[1:]))
        assert len(steps) == 2 * count // n  # twice the steps of plain training
        new = torch.cat([batch[-(n // 2):] for batch in steps])
        assert sorted(new.tolist()) == list(range(count))  # every sample new exactly once per epoch
    assert torch.equal(epochs[1][0][: n // 2], epochs[0][-1][-(n // 2):])  # the cache crosses the epoch boundary


def test_official_steps_repeat_the_previous_new_batch_across_epochs():
    dlb = RecordingDLB(scheme="official")
    tiny_run(dlb, count=20, batch_size=8, epochs=2)
    parts = dlb.parts
    assert [len(p) for p in parts] == [1, 2, 2, 2, 2, 2]  # 3 steps per epoch (8, 8, 4); the first alone
    for previous, step in pairwise(parts):
        assert torch.equal(step[1], previous[0])  # the repeated part is the previous step's new batch
    new_first_epoch = torch.cat([p[0] for p in parts[:3]])
    assert sorted(new_first_epoch.tolist()) == list(range(20))


def test_objective_refuses_cutmix_and_bad_settings():
    from condense.errors import UserError

    net = build_net("convnet", 3, 2, (8, 8), depth=1, width=4)
    with pytest.raises(UserError, match="cutmix_p"):  # the paper scheme's one part holds new and repeated samples: nothing to mix apart
        train(net, torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 0, 1]), TrainConfig(epochs=1, cutmix_p=0.5), mean=(0.5,) * 3,
              std=(0.25,) * 3, generator=torch.Generator(), device=CPU, progress=False, objective=DLB(scheme="paper"))
    with pytest.raises(UserError, match="scheme"):
        DLB(scheme="both")
    with pytest.raises(UserError, match="tau"):
        DLB(tau=0)


@pytest.mark.parametrize("rate, count, classes", [(0.2, 100, 10), (0.4, 1000, 10), (0.25, 30, 3), (1.0, 50, 2), (0.37, 7, 5)])
def test_symmetric_label_noise_flips_exactly_the_rate_never_to_the_true_class(rate, count, classes):
    labels = torch.arange(count) % classes
    noisy = symmetric_label_noise(labels, rate, classes, torch.Generator().manual_seed(0))
    changed = noisy != labels
    # round(rate * N) labels are drawn to flip, and each flip goes to another class: exactly that many differ
    assert changed.sum().item() == round(rate * count) and noisy.min() >= 0 and noisy.max() < classes
    assert torch.equal(noisy, symmetric_label_noise(labels, rate, classes, torch.Generator().manual_seed(0)))  # seeded
    other_seed = symmetric_label_noise(labels, rate, classes, torch.Generator().manual_seed(1))
    if classes == 2 and rate == 1.0:  # every label flips, and the only other class is the one it goes to
        assert torch.equal(noisy, 1 - labels) and torch.equal(other_seed, noisy)
    else:
        assert not torch.equal(noisy, other_seed)
    assert torch.equal(symmetric_label_noise(labels, 0.0, classes, torch.Generator()), labels)


def test_symmetric_label_noise_spreads_over_every_other_class():
    labels = torch.arange(10).repeat(400)
    noisy = symmetric_label_noise(labels, 0.5, 10, torch.Generator().manual_seed(0))
    pairs = torch.zeros(10, 10, dtype=torch.long).index_put_((labels, noisy), torch.tensor(1), accumulate=True)
    flips = pairs - torch.diag(pairs.diagonal())
    assert flips.sum() == 2000 and flips.diagonal().sum() == 0
    # uniform over the 9 other classes: 2000 / 90 = 22.2 expected per (true, noisy) pair, every pair drawn
    assert flips[~torch.eye(10, dtype=torch.bool)].min() >= 5 and flips.sum(0).min() > 150 and flips.sum(0).max() < 300


class CountingNet(nn.Module):
    """Wraps a network and records, per optimiser step, the size of every forward and of every backward through it."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net, self.steps, self.forwards, self.backwards = net, [], [], []
        next(net.parameters()).register_post_accumulate_grad_hook(self.end_of_backward)  # once per backward() call

    def end_of_backward(self, parameter) -> None:
        self.steps.append((self.forwards, self.backwards))
        self.forwards, self.backwards = [], []

    def forward(self, x):
        self.forwards.append(len(x))
        out = self.net(x)
        out.register_hook(lambda grad: self.backwards.append(len(grad)))  # the gradient flowing back into this forward
        return out


@pytest.mark.parametrize("objective, forwards, backwards, steps", [
    (None, [8], [8], 4),                               # CE: 32 samples in 4 steps of 8
    (DLB(scheme="paper"), [8], [8], 8),                # (b): a CE step's one forward and backward of 8, twice the steps
    (DLB(scheme="official"), [8, 8], [8, 8], 4),       # (a): two forwards of 8 and one backward through both
])
def test_per_step_cost_counts_forwards_and_backwards(objective, forwards, backwards, steps):
    torch.manual_seed(0)
    net = CountingNet(build_net("convnet", 3, 2, (8, 8), depth=1, width=4))
    config = TrainConfig(epochs=2, batch_size=8, lr=1e-2, dsa="", cutmix_p=0.0)
    train(net, torch.rand(32, 3, 8, 8), torch.arange(32) % 2, config, mean=(0.5,) * 3, std=(0.25,) * 3,
          generator=torch.Generator().manual_seed(0), device=CPU, progress=False, objective=objective)
    assert len(net.steps) == 2 * steps  # one backward() per step
    first, *rest = net.steps
    if objective is not None:  # nothing cached at the first step: the new samples alone
        assert first == ([8 if objective.scheme == "official" else 4],) * 2
    else:
        rest = net.steps
    assert all(step == (forwards, sorted(backwards)) for step in rest), rest  # every later step, across the epoch boundary
    per_epoch = sum(sum(f) for f, _ in rest[-steps:])
    assert per_epoch == (32 if objective is None else 64)  # DLB forwards every sample twice per epoch


def test_import_does_not_load_avalanche():
    code = "import sys, downstream.continual, downstream.dlb, downstream.train; print('avalanche' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


@pytest.mark.parametrize("replay", [False, True])
def test_plugin_adds_exactly_the_dlb_term_inside_a_real_strategy(replay):
    from avalanche.core import SupervisedPlugin
    from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin
    from avalanche.training.supervised import Naive

    from downstream.dlb_plugin import DLBPlugin

    tau, alpha = 2.0, 0.5
    benchmark, _ = image_benchmark(24, 8, (6,))

    class Before(SupervisedPlugin):
        def before_backward(self, strategy, **kwargs):
            self.loss = strategy.loss.item()

    class After(SupervisedPlugin):
        """Measures the change of strategy.loss and recomputes the DLB term independently."""

        def __init__(self, before):
            super().__init__()
            self.reference, self.previous, self.checks = before, None, []

        def before_training_exp(self, strategy, **kwargs):
            self.previous = None

        def before_backward(self, strategy, **kwargs):
            total, added = strategy.loss.item(), strategy.loss.item() - self.reference.loss
            with torch.no_grad():
                if self.previous is None:
                    expected, kl = F.cross_entropy(strategy.mb_output, strategy.mb_y).item(), 0.0
                else:
                    x, y, old = self.previous  # no augment (the default): the cached mini-batch is re-forwarded as it was
                    now = strategy.model(x)
                    expected = official_loss(strategy.mb_output, strategy.mb_y, old, now, y, tau, alpha).item()
                    kl = expected - official_loss(strategy.mb_output, strategy.mb_y, old, now, y, tau, 0.0).item()
            self.checks.append((total, added, expected, kl))
            self.previous = (strategy.mb_x.clone(), strategy.mb_y.clone(), strategy.mb_output.detach().clone())

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 4))
    before = Before()
    after = After(before)
    plugins = [before, DLBPlugin(tau=tau, alpha=alpha), after]
    if replay:
        plugins.insert(0, ReplayPlugin(mem_size=8))
    strategy = Naive(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), train_mb_size=5, train_epochs=2,
                     device=CPU, plugins=plugins, evaluator=EvaluationPlugin(loggers=[]))
    for experience in benchmark.train_stream:
        strategy.train(experience)
    total, added, expected, kl = zip(*after.checks)
    # 12 new samples per experience, batch 5: 3 steps per epoch, 2 epochs; the cache is cleared at the new experience
    assert len(total) == 12 and added[0] == added[6] == 0.0  # nothing cached at the first step of an experience
    assert total == pytest.approx(expected, rel=1e-6)  # strategy.loss is the official step loss of the hand computation
    assert max(kl) > 1e-3 and min(k for i, k in enumerate(kl) if i % 6) > 2e-5  # ... whose KL part is above that tolerance


def test_train_model_on_real_subset_and_condensed_file(tmp_path, tiny_set, tiny_test_data):
    real, test = make_real(per_class=12, size=8), make_real(per_class=6, size=8, seed=1, split="test")
    config = default_config()
    config.net_options, config.train.epochs, config.train.batch_size, config.runs = {"depth": 1, "width": 8}, 3, 8, 2
    subset = real_subset(real, 8, seed=0)
    assert len(subset) == 24 and subset.labels.bincount().tolist() == [8, 8, 8]
    out = tmp_path / "result.json"
    result = train_model(subset, test, config, objective=DLB(scheme="paper"), label_noise=0.25, device="cpu", progress=False, out=out)
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    accuracies = [r["accuracy"] for r in result["runs"]]
    assert [r["seed"] for r in result["runs"]] == [0, 1] and result["accuracy_mean"] == pytest.approx(sum(accuracies) / 2)
    assert all(a * 18 / 100 == pytest.approx(round(a * 18 / 100)) for a in accuracies)  # whole images of the 18 test images
    assert result["accuracy_mean"] > 100 / 3  # above chance on 3 colour classes (44.4 % here), even with 25 % noise
    assert result["objective"] == {"objective": "dlb", "tau": 3.0, "alpha": 1.0, "scheme": "paper"} and result["label_noise"] == 0.25
    again = train_model(subset, test, config, objective=DLB(scheme="paper"), label_noise=0.25, device="cpu", progress=False)
    assert [r["accuracy"] for r in again["runs"]] == [r["accuracy"] for r in result["runs"]]  # seeded
    path = tiny_set.save(tmp_path / "tiny.safetensors")
    config.runs = 1
    on_file = train_model(str(path), tiny_test_data, config, objective=DLB(), device="cpu", progress=False)
    assert on_file["train_set"] == tiny_set.summary() and on_file["labels"] == "hard" and len(on_file["runs"]) == 1
    plain = train_model(tiny_set, tiny_test_data, config, device="cpu", progress=False)
    assert plain["objective"] == {"objective": "ce"} and plain["runs"][0]["loss"] != on_file["runs"][0]["loss"]


def test_downstream_train_cli(tmp_path, capsys):
    from downstream.cli import main

    folder = write_image_folder(tmp_path / "data", {"img": "image", "label": "label"}, rows=24)
    out = tmp_path / "dlb.json"
    code = main(["train", "--data", str(folder), "--per-class", "4", "--loss", "dlb", "--scheme", "paper", "--label-noise", "0.25",
                 "--depth", "1", "--width", "8", "--epochs", "2", "--batch-size", "4", "--runs", "1", "--no-progress", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and "DLB(tau=3.0, alpha=1.0, scheme='paper')" in printed and "25% label noise" in printed
    result = json.loads(out.read_text())
    assert result["protocol"]["train"]["cutmix_p"] == 0.0 and result["protocol"]["train"]["epochs"] == 2
    assert result["train_set"].endswith("12 images") and result["test"].endswith("24 images")
    from condense.baseline import random_subset
    from condense.data import load_real

    path = random_subset(load_real(str(folder), "train"), 2).save(tmp_path / "random2.safetensors")
    code = main(["train", str(path), "--data", str(folder), "--loss", "ce", "--depth", "1", "--width", "8", "--epochs", "1", "--runs", "1", "--no-progress",
                 "--out", str(tmp_path / "ce.json")])
    result = json.loads((tmp_path / "ce.json").read_text())  # the test split of --data, read with the set's recorded settings
    assert code == 0 and result["objective"] == {"objective": "ce"} and result["test"] == "data [test], 24 images"
    capsys.readouterr()
    assert main(["train", "--epochs", "1"]) == 2
    assert "name a condensed set" in capsys.readouterr().err


def test_condense_eval_objective_dlb_is_downstream_train_on_the_set(tmp_path, capsys):
    from condense.baseline import random_subset
    from condense.cli import main as condense_main
    from condense.data import load_real
    from downstream.cli import main as downstream_main

    folder = write_image_folder(tmp_path / "data", {"img": "image", "label": "label"}, rows=24)
    path = random_subset(load_real(str(folder), "train"), 4).save(tmp_path / "random4.safetensors")
    tiny = ["--data", str(folder), "--depth", "1", "--width", "8", "--epochs", "2", "--batch-size", "4", "--runs", "2", "--no-progress"]
    assert condense_main(["eval", str(path), "--objective", "dlb", "--scheme", "paper", *tiny, "--out", str(tmp_path / "eval.json")]) == 0
    assert "and DLB(tau=3.0, alpha=1.0, scheme='paper')" in capsys.readouterr().out
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    assert evaluated["objective"] == {"objective": "dlb", "tau": 3.0, "alpha": 1.0, "scheme": "paper"}
    assert evaluated["protocol"]["train"]["cutmix_p"] == 0.0 and "cutmix_p" in evaluated["protocol"]["name"]  # DLB drops CutMix, and says so
    assert downstream_main(["train", str(path), "--scheme", "paper", *tiny, "--out", str(tmp_path / "train.json")]) == 0
    trained = json.loads((tmp_path / "train.json").read_text())
    assert [(r["accuracy"], r["loss"]) for r in evaluated["runs"]] == [(r["accuracy"], r["loss"]) for r in trained["runs"]]
    assert condense_main(["eval", str(path), *tiny, "--cutmix-p", "0", "--out", str(tmp_path / "ce.json")]) == 0
    plain = json.loads((tmp_path / "ce.json").read_text())
    assert plain["objective"] == {"objective": "ce"} and plain["runs"][0]["loss"] != evaluated["runs"][0]["loss"]
    assert condense_main(["eval", str(path), "--objective", "dlb", *tiny, "--out", str(tmp_path / "official.json")]) == 0
    official = json.loads((tmp_path / "official.json").read_text())  # the official scheme keeps the protocol's CutMix (new samples only)
    assert official["protocol"]["train"]["cutmix_p"] == 0.5 and official["protocol"]["name"] == "cpu with depth, width, epochs, batch_size changed"
    assert_one_error(condense_main, ["eval", str(path), "--objective", "dlb", "--scheme", "paper", "--cutmix-p", "0.5", *tiny], capsys,
                     contains="set cutmix_p to 0")
    assert_one_error(condense_main, ["eval", str(path), "--objective", "dlb", "--scheme", "both", *tiny], capsys, contains="unknown DLB scheme")


@pytest.mark.parametrize("scheme", ["official", "paper"])
def test_dlb_with_a_teacher_distils_every_view_the_student_sees(scheme):
    """KD composes with DLB: every part (new and repeated, each under its own augmentation) gets the teacher's
    probabilities of that very input as targets, and DLB's KL to the previous step's logits is added."""
    seen = {"student": [], "teacher": []}

    def recorder(name, net):
        net.register_forward_pre_hook(lambda module, args: seen[name].append(args[0].detach().clone()))
        return net

    torch.manual_seed(0)
    student = recorder("student", build_net("convnet", 3, 2, (8, 8), depth=1, width=4))
    teacher = recorder("teacher", build_net("convnet", 3, 2, (8, 8), depth=1, width=4))
    dlb = RecordingDLB(scheme=scheme)
    config = TrainConfig(epochs=2, batch_size=4, cutmix_p=0.0, temperature=4.0, dsa="color_crop_flip_scale_rotate")
    train(student, torch.rand(8, 3, 8, 8), torch.arange(8) % 2, config, mean=(0.5,) * 3, std=(0.25,) * 3,
          generator=torch.Generator().manual_seed(0), device=CPU, progress=False, teacher=teacher, objective=dlb)
    forwards = sum(len(parts) for parts in dlb.parts)
    assert len(seen["student"]) == len(seen["teacher"]) == forwards == (7 if scheme == "official" else 4 * 2)
    assert all(torch.equal(s, t) for s, t in zip(seen["student"], seen["teacher"]))
    assert dlb.terms[0] == 0.0 and min(dlb.terms[1:]) > 1e-6
