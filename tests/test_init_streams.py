"""Issue 24 item 1: evaluation runs, continual fresh models and teachers never start at a pool member's initial weights."""

import hashlib
import itertools
import json

import pytest
import torch

import condense.evaluate as evaluate_module
import condense.pool as pool_module
from condense.errors import UserError
from condense.evaluate import EvalConfig, evaluate_set
from condense.nets import INIT_STREAMS, init_seed, seeded_net
from condense.pool import PoolSpec, _pretrain_members, load_member
from condense.train import TrainConfig

from conftest import make_real, write_image_folder

NET = {"depth": 1, "width": 4}
CPU = torch.device("cpu")
SEEDS = range(3)  # distillation seeds (the presets' is 0; the studies use 0 to 2)


def weights_digest(net: torch.nn.Module) -> str:
    sha = hashlib.sha256()
    for value in net.state_dict().values():
        sha.update(value.contiguous().numpy().tobytes())
    return sha.hexdigest()


def untrained(nets, *args, **kwargs):
    """`train` that trains nothing: the networks keep their initial weights."""
    return [{"loss": 0.0, "seconds": 0.0, "images_per_second": 0.0} for _ in nets]


def test_no_evaluation_run_or_fresh_model_starts_at_a_pool_members_initial_weights(monkeypatch):
    monkeypatch.setattr(pool_module, "train", untrained)
    real = make_real(per_class=2, size=8)
    pool = set()
    for seed in SEEDS:
        spec = PoolSpec(real.source, real.split, 3, 3, (8, 8), "convnet", NET, {}, seed)
        pool |= {weights_digest(init) for _, init, _ in _pretrain_members(spec, list(range(20)), real, torch.device("cpu"), False)}
    assert len(pool) == 20 * len(SEEDS)
    evaluation = set()
    monkeypatch.setattr(evaluate_module, "train", lambda nets, *a, **k: evaluation.update(weights_digest(n) for n in nets) or untrained(nets))
    for seed in SEEDS:  # the paper preset's 10 runs, as `condense eval --seed` and `condense distill` run them
        config = EvalConfig(net_options=NET, train=TrainConfig(epochs=1), runs=10, seed=seed)
        evaluate_set(make_real(per_class=2, size=8), real, config, torch.device("cpu"), progress=False)
    assert len(evaluation) == 10 + len(SEEDS) - 1  # runs of seed s and s + 1 overlap by design (run r is seed s + r)
    fresh = {weights_digest(seeded_net("convnet", 3, 3, (8, 8), seed * 1000 + experience, stream="fresh", **NET))
             for seed in SEEDS for experience in range(10)}
    teachers = set()
    for seed in SEEDS:  # `--soft-labels teacher`: the pool's own teacher
        spec = PoolSpec(real.source, real.split, 3, 3, (8, 8), "convnet", NET, {}, seed)
        teachers |= {weights_digest(init) for _, init, _ in _pretrain_members(spec, [0], real, torch.device("cpu"), False, stream="teacher")}
    assert len(teachers) == len(SEEDS)
    for one, other in itertools.combinations([pool, evaluation, fresh, teachers], 2):
        assert not one & other


def test_init_streams_never_share_a_seed():
    seeds = {stream: {init_seed(stream, seed, index) for seed in (0, 1, 999, 2**53 - 1) for index in (0, 1, 999)} for stream in INIT_STREAMS}
    assert seeds["pool"] >= {0, 1, 999, 1000}  # the pool keeps the seeds its members always had
    for stream in INIT_STREAMS:
        assert all(0 <= seed < 2**64 for seed in seeds[stream])  # what torch.manual_seed takes
        for other in INIT_STREAMS:
            assert stream == other or not seeds[stream] & seeds[other]


@pytest.mark.parametrize("seed, index", [(-1, 0), (2**53, 0), (0, 1000)])
def test_a_seed_outside_the_streams_range_is_one_clear_error(seed, index):
    with pytest.raises(UserError, match="--seed of at least 0"):
        init_seed("pool", seed, index)


def test_soft_labels_from_the_pools_own_teacher(tmp_path, monkeypatch):
    """`--soft-labels teacher`: a network trained as the members are, kept in the pool folder, asked for the soft labels."""
    from condense.cli import main
    from condense.pool import TEACHER_FILE
    from condense.synthetic import SyntheticSet

    folder = write_image_folder(tmp_path / "data", {"img": "image", "label": "label"}, rows=36)
    monkeypatch.chdir(tmp_path)
    args = ["distill", "--data", str(folder), "--ipc", "1", "--width", "4", "--depth", "2", "--real-batch", "4", "--frequencies", "32",
            "--pool-size", "1", "--iterations", "1", "--eval-runs", "1", "--eval-preset", "cpu", "--device", "cpu", "--no-progress",
            "--pool-folder", "pool", "--soft-labels", "teacher"]
    assert main([*args, "--out", "run"]) == 0
    teacher, member = load_member(tmp_path / "pool" / TEACHER_FILE, CPU), load_member(tmp_path / "pool" / "member-000-trained.safetensors", CPU)
    assert not torch.equal(teacher.classifier.weight, member.classifier.weight)
    synthetic = SyntheticSet.load(tmp_path / "run" / "synthetic.safetensors")
    normalised = (synthetic.images - torch.tensor(synthetic.mean).view(1, -1, 1, 1)) / torch.tensor(synthetic.std).view(1, -1, 1, 1)
    assert torch.allclose(synthetic.soft_labels, torch.softmax(teacher(normalised), 1), atol=1e-6)
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["protocol"]["teacher"].endswith(TEACHER_FILE)
    made = (tmp_path / "pool" / TEACHER_FILE).stat().st_mtime_ns
    assert main([*args, "--out", "again"]) == 0 and (tmp_path / "pool" / TEACHER_FILE).stat().st_mtime_ns == made  # reused
