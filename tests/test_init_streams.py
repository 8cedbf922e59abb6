"""Issue 24 item 1: evaluation runs and continual fresh models never start at a pool member's initial weights."""

import hashlib

import pytest
import torch

import condense.evaluate as evaluate_module
import condense.pool as pool_module
from condense.errors import UserError
from condense.evaluate import EvalConfig, evaluate_set
from condense.nets import INIT_STREAMS, init_seed, seeded_net
from condense.pool import PoolSpec, _pretrain_members
from condense.train import TrainConfig

from conftest import make_real

NET = {"depth": 1, "width": 4}
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
    assert not pool & evaluation
    assert not pool & fresh
    assert not evaluation & fresh


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
