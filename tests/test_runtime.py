"""The shared run-time helpers: atomic writes, the JSON reader, the seeded network builder."""

import os

import pytest
import torch

from condense.errors import UserError
from condense.nets import seeded_net
from condense.runtime import atomic_path, read_json, write_json


def test_a_failed_write_leaves_neither_the_file_nor_its_temporary(tmp_path):
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "out.json") as tmp:
        tmp.write_text("{half")
        raise RuntimeError("killed while writing")
    assert list(tmp_path.iterdir()) == []


def test_an_atomic_write_is_readable_as_the_umask_allows_and_keeps_its_suffix(tmp_path):
    with atomic_path(tmp_path / "plot.png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path  # savefig and save_image choose the format by suffix
        tmp.write_bytes(b"png")
    mask = os.umask(0)
    os.umask(mask)
    assert oct(os.stat(tmp_path / "plot.png").st_mode & 0o777) == oct(0o666 & ~mask)


def test_read_json_names_the_file_and_what_it_should_be(tmp_path):
    write_json(tmp_path / "good.json", {"a": 1})
    assert read_json(tmp_path / "good.json") == {"a": 1}
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match=r"bad.json is not a readable pool manifest .*restore it or delete it"):
        read_json(tmp_path / "bad.json", "pool manifest")
    with pytest.raises(UserError, match=r"missing.json: no such NAS result"):
        read_json(tmp_path / "missing.json", "NAS result")


def test_a_seeded_network_does_not_depend_on_or_move_the_global_random_state():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    first = seeded_net("convnet", 3, 10, 32, 7, width=8)
    assert torch.equal(torch.random.get_rng_state(), before)
    torch.rand(5)  # another global draw in between
    second = seeded_net("convnet", 3, 10, 32, 7, width=8)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
