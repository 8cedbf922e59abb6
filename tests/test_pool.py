import dataclasses
import json

import pytest
import torch

import condense.pool as pool_module
from condense.errors import UserError
from condense.pool import build_or_load_pool


def test_pool_folder_holds_init_and_trained_weights_and_a_manifest(tiny_pool, tmp_path):
    pool, _, _ = tiny_pool
    folder = tmp_path / "pool"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["spec"]["dataset"] == "tiny-real" and manifest["spec"]["training"]["epochs"] == 1
    assert [m["index"] for m in manifest["members"]] == [0, 1]
    assert sorted(p.name for p in folder.glob("*.safetensors")) == [
        "member-000-init.safetensors", "member-000-trained.safetensors", "member-001-init.safetensors", "member-001-trained.safetensors"]
    init, trained = pool.members[0]
    assert not torch.equal(init["body.0.weight"], trained["body.0.weight"])


def test_matching_pool_is_reused_and_completed_not_retrained(tiny_pool, tmp_path, monkeypatch):
    _, real, spec = tiny_pool
    calls = []
    original = pool_module.train
    monkeypatch.setattr(pool_module, "train", lambda *a, **k: calls.append(1) or original(*a, **k))
    again = build_or_load_pool(tmp_path / "pool", spec, 2, real, None, torch.device("cpu"), progress=False)
    assert calls == [] and len(again.members) == 2
    bigger = build_or_load_pool(tmp_path / "pool", spec, 3, real, None, torch.device("cpu"), progress=False)
    assert calls == [1] and len(bigger.members) == 3


def test_pool_built_for_another_dataset_is_refused(tiny_pool, tmp_path):
    _, real, spec = tiny_pool
    other = dataclasses.replace(spec, dataset="uoft-cs/cifar100")
    with pytest.raises(UserError, match="was built for something else \\(dataset: 'tiny-real' there, 'uoft-cs/cifar100' here\\)"):
        build_or_load_pool(tmp_path / "pool", other, 2, real, None, torch.device("cpu"), progress=False)


def test_draw_blends_in_memory_into_a_frozen_matcher(tiny_pool, tmp_path):
    pool, _, _ = tiny_pool
    for path in (tmp_path / "pool").glob("*.safetensors"):
        path.unlink()  # drawing must not read the disk
    generator = torch.Generator().manual_seed(4)
    member, blend = pool.draw(generator)
    init, trained = pool.members[member]
    weights = pool.matcher.state_dict()["body.0.weight"]
    assert torch.allclose(weights, blend * init["body.0.weight"] + (1 - blend) * trained["body.0.weight"], atol=1e-6)
    assert torch.equal(pool.trained_net.state_dict()["body.0.weight"], trained["body.0.weight"])
    assert all(not p.requires_grad for p in pool.matcher.parameters())
    assert all(not p.requires_grad for p in pool.trained_net.parameters())
    draws = {pool.draw(generator)[0] for _ in range(20)}
    assert draws == {0, 1}
