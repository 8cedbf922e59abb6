"""DLB (downstream/dlb.py): both batch schemes through the one training loop, the hand-written-loop
component, the Avalanche plugin inside real strategies, label noise, `train_model` and `downstream train`."""

from __future__ import annotations

import json
import subprocess
import sys
from itertools import pairwise

import pytest
import torch
import torch.nn.functional as F
from conftest import make_real, write_image_folder
from torch import nn

from condense.nets import build_net
from condense.train import TrainConfig, train
from downstream.dlb import DLB, LastBatchDistillation, distillation_term
from downstream.train import (
    default_config,
    real_subset,
    symmetric_label_noise,
    train_model,
)

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

    def extra_loss(self, logits):
        term = super().extra_loss(logits)
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


@pytest.mark.parametrize("scheme", ["official", "paper"])
def test_frozen_model_without_augmentation_gives_zero_kl(scheme):
    frozen = RecordingDLB(scheme=scheme)
    tiny_run(frozen, count=16, batch_size=8, epochs=2, lr=0.0, dsa="")
    assert frozen.terms[0] == 0.0 and len(frozen.terms) >= 3
    assert max(frozen.terms) < 1e-6, frozen.terms
    learning = RecordingDLB(scheme=scheme)  # control: a model that learns, or a second augmented view, moves the term off 0
    tiny_run(learning, count=16, batch_size=8, epochs=2, lr=0.0, dsa="color_crop_flip_scale_rotate")
    assert min(learning.terms[1:]) > 1e-4


def test_hand_written_loop_component():
    """The README example: one extra term in a plain loop; with a frozen model the term is CE(previous batch) + 0."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    batches = [(torch.randn(5, 12), torch.randint(0, 3, (5,))) for _ in range(3)]
    dlb = LastBatchDistillation(tau=3.0, alpha=1.0)
    terms = []
    for x, y in batches:
        logits = model(x)
        terms.append(dlb(model, x, y, logits))
        loss = F.cross_entropy(logits, y) + terms[-1]  # no optimiser step: a frozen model
        loss.backward()
    assert terms[0].item() == 0.0
    for (x, y), term in zip(batches[:-1], terms[1:]):
        assert term.item() == pytest.approx(F.cross_entropy(model(x), y).item(), abs=1e-6)  # KL part exactly 0


def test_paper_batches_overlap_by_half_and_every_sample_is_new_once_per_epoch():
    count, n = 24, 8
    dlb = RecordingDLB(scheme="paper")
    dlb.start()
    epochs = []
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        steps = []
        for parts in dlb.steps(torch.randperm(count, generator=generator), n):
            dlb.extra_loss([torch.zeros(len(parts[0]), 2)])
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
    with pytest.raises(UserError, match="cutmix_p"):
        train(net, torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 0, 1]), TrainConfig(epochs=1, cutmix_p=0.5), mean=(0.5,) * 3,
              std=(0.25,) * 3, generator=torch.Generator(), device=CPU, progress=False, objective=DLB())
    with pytest.raises(UserError, match="scheme"):
        DLB(scheme="both")
    with pytest.raises(UserError, match="tau"):
        DLB(tau=0)


def test_symmetric_label_noise_flips_exactly_the_rate():
    labels = torch.arange(10).repeat(10)
    noisy = symmetric_label_noise(labels, 0.2, 10, torch.Generator().manual_seed(0))
    changed = noisy != labels
    assert changed.sum().item() == 20 and noisy.min() >= 0 and noisy.max() <= 9
    assert torch.equal(noisy, symmetric_label_noise(labels, 0.2, 10, torch.Generator().manual_seed(0)))
    assert torch.equal(symmetric_label_noise(labels, 0.0, 10, torch.Generator()), labels)


def test_import_does_not_load_avalanche():
    code = "import sys, downstream.dlb, downstream.train; print('avalanche' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


@pytest.mark.parametrize("replay", [False, True])
def test_plugin_adds_exactly_the_dlb_term_inside_a_real_strategy(replay):
    from avalanche.benchmarks.scenarios.supervised import class_incremental_benchmark
    from avalanche.benchmarks.utils import DataAttribute, make_avalanche_dataset
    from avalanche.core import SupervisedPlugin
    from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin
    from avalanche.training.supervised import Naive
    from torch.utils.data import TensorDataset

    from downstream.dlb import DLBPlugin

    tau, alpha = 2.0, 0.5
    generator = torch.Generator().manual_seed(0)

    def dataset(count):
        x, y = torch.randn(count, 6, generator=generator), torch.arange(count) % 4
        return make_avalanche_dataset(TensorDataset(x, y), data_attributes=[
            DataAttribute(y.tolist(), "targets"), DataAttribute([0] * count, "targets_task_labels", use_in_getitem=True)])

    benchmark = class_incremental_benchmark({"train": dataset(24), "test": dataset(8)}, class_order=[0, 1, 2, 3], num_experiences=2)

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
            added = strategy.loss.item() - self.reference.loss
            if self.previous is None:
                expected, kl = 0.0, 0.0
            else:
                x, y, old = self.previous
                with torch.no_grad():
                    now = strategy.model(x)
                kl = (F.softmax(old / tau, 1) * (F.log_softmax(old / tau, 1) - F.log_softmax(now / tau, 1))).sum(1).mean()
                expected, kl = (F.cross_entropy(now, y) + alpha * tau**2 * kl).item(), (alpha * tau**2 * kl).item()
            self.checks.append((added, expected, kl))
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
    added, expected, kl = zip(*after.checks)
    # 12 new samples per experience, batch 5: 3 steps per epoch, 2 epochs; the cache is cleared at the new experience
    assert len(added) == 12 and added[0] == added[6] == 0.0 and all(a > 0.5 for i, a in enumerate(added) if i % 6)
    assert added == pytest.approx(expected, abs=1e-5)  # strategy.loss grew by exactly the DLB term (e.g. 1.3197 at step 2)
    assert max(kl) > 1e-3  # ... whose KL part is far above that tolerance


def test_train_model_on_real_subset_and_condensed_file(tmp_path, tiny_set, tiny_test_data):
    real, test = make_real(per_class=12, size=8), make_real(per_class=6, size=8, seed=1, split="test")
    config = default_config()
    config.net_options, config.train.epochs, config.train.batch_size, config.runs = {"depth": 1, "width": 8}, 3, 8, 2
    subset = real_subset(real, 8, seed=0)
    assert len(subset) == 24 and subset.labels.bincount().tolist() == [8, 8, 8]
    out = tmp_path / "result.json"
    result = train_model(subset, test, config, objective=DLB(scheme="paper"), label_noise=0.25, device="cpu", progress=False, out=out)
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert [r["seed"] for r in result["runs"]] == [0, 1] and 0 <= result["accuracy_mean"] <= 100
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
    code = main(["train", str(path), "--loss", "ce", "--depth", "1", "--width", "8", "--epochs", "1", "--runs", "1", "--no-progress",
                 "--out", str(tmp_path / "ce.json")])
    result = json.loads((tmp_path / "ce.json").read_text())  # the test split comes from the set's recorded source
    assert code == 0 and result["objective"] == {"objective": "ce"} and result["test"] == f"{folder} [test], 24 images"
    capsys.readouterr()
    assert main(["train", "--epochs", "1"]) == 2
    assert "name a condensed set" in capsys.readouterr().err
