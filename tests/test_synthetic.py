import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

from condense.errors import UserError
from condense.synthetic import FORMAT, SyntheticSet

# an evaluation as `condense.evaluate.evaluation_summary` writes it (what a set carries)
EVALUATION = {"accuracy_mean": 51.25, "accuracy_std": 0.5, "run_accuracies": [50.75, 51.75], "labels": "hard", "label_protocol": "the class labels",
              "test": "tiny [test], 40 images", "protocol": {"name": "cpu", "net": "convnet", "net_options": {"width": 8}, "train": {"epochs": 3}}}


def test_round_trip_is_bit_exact(tiny_set, tmp_path):
    tiny_set.canvases = tiny_set.images[:3].clone()
    tiny_set.config = {"lr": 1e-3, "nested": {"a": [1, 2]}}
    tiny_set.evaluation = EVALUATION
    path = tiny_set.save(tmp_path / "sub" / "set.safetensors")
    back = SyntheticSet.load(path)
    for name in ("images", "labels", "soft_labels", "canvases"):
        assert torch.equal(getattr(back, name), getattr(tiny_set, name)), name
        assert getattr(back, name).dtype == getattr(tiny_set, name).dtype
    for name in ("class_names", "mean", "std", "method", "source_dataset", "ipc", "factor", "config", "evaluation"):
        assert getattr(back, name) == getattr(tiny_set, name), name
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"
    assert [p.name for p in path.parent.iterdir()] == ["set.safetensors"]


def test_images_that_alias_the_canvases_are_saved_as_two_tensors(tiny_set, tmp_path):
    tiny_set.canvases = tiny_set.images  # factor 1: decoding returns the canvases themselves
    back = SyntheticSet.load(tiny_set.save(tmp_path / "set.safetensors"))
    assert torch.equal(back.images, tiny_set.images) and torch.equal(back.canvases, tiny_set.images)
    assert back.images.untyped_storage().data_ptr() != back.canvases.untyped_storage().data_ptr()


def _write(path, tensors, **metadata):
    base = {"format": FORMAT, "method": "x", "source_dataset": "d", "ipc": "1", "factor": "1",
            "mean": "[0.5]", "std": "[0.5]", "class_names": '["a", "b"]', "config": "{}", "evaluation": "{}"}
    save_file(tensors, str(path), metadata={**base, **metadata})
    return path


GOOD = {"images": torch.rand(2, 1, 4, 4), "labels": torch.tensor([0, 1])}


@pytest.mark.parametrize(
    "tensors,metadata,message",
    [
        ({**GOOD, "labels": torch.tensor([0, 1], dtype=torch.int32)}, {}, r"'labels' must be int64 \[2\], got torch.int32"),
        ({**GOOD, "labels": torch.tensor([0, 2])}, {}, r"labels range over \[0, 2\] but there are 2 classes"),
        ({**GOOD, "images": torch.rand(2, 1, 4, 4) + 1}, {}, r"'images' must be finite and within \[0, 1\]"),
        ({**GOOD, "images": torch.rand(2, 1, 4, 4).double()}, {}, r"'images' must be float32 \[N,C,H,W\], got torch.float64"),
        ({**GOOD, "soft_labels": torch.rand(2, 3)}, {}, r"'soft_labels' must be float32 \[2, 2\], got torch.float32 \[2, 3\]"),
        ({**GOOD, "canvases": torch.rand(1, 3, 4, 4)}, {}, r"'canvases' must be float32 \[M,1,H,W\]"),
        ({"images": GOOD["images"]}, {}, "lacks labels"),
        (GOOD, {"format": "other/2"}, "not a condensed set .*'other/2'"),
        (GOOD, {"ipc": "ten"}, "malformed metadata"),
        (GOOD, {"mean": "[0.5, 0.5]"}, r"mean/std have 2/1 values for 1 channels"),
        (GOOD, {"class_names": "3"}, r"'class_names' must be a JSON list of strings, got 3"),
        (GOOD, {"mean": "0.5"}, r"'mean' must be a JSON list of numbers, got 0.5"),
        (GOOD, {"std": '["wide"]'}, r"'std' must be a JSON list of positive numbers, got \["),
        (GOOD, {"config": "[1]"}, r"'config' must be a JSON object, got \[1\]"),
        (GOOD, {"evaluation": '"x"'}, r"'evaluation' must be a JSON object, got 'x'"),
        (GOOD, {"config": "{oops"}, "malformed metadata"),
        ({**GOOD, "soft_labels": torch.full((2, 2), -5.0)}, {}, r"'soft_labels' must be finite, non-negative and sum to 1 per row"),
        ({**GOOD, "soft_labels": torch.tensor([[0.5, float("nan")], [0.5, 0.5]])}, {}, "'soft_labels' must be finite"),
        ({**GOOD, "soft_labels": torch.tensor([[0.5, 0.6], [0.5, 0.5]])}, {}, r"row 0 sums to 1.1"),
        # issue 24 item 10: the whole metadata tree, types and ranges
        ({"images": torch.rand(0, 1, 4, 4), "labels": torch.zeros(0, dtype=torch.int64)}, {}, "holds no images"),
        (GOOD, {"class_names": '["a", "a"]'}, r"class names \['a'\] are duplicated"),
        (GOOD, {"factor": "0"}, "factor 0 must be whole numbers of at least 1"),
        (GOOD, {"ipc": "-1"}, "ipc -1 and factor 1 must be whole numbers"),
        (GOOD, {"ipc": "3"}, r"class share \(ipc x factor\^2 images\) fits in the set's 2 images"),
        (GOOD, {"factor": "2"}, "ipc 1 and factor 2 must be"),
        (GOOD, {"std": "[0]"}, "'std' must be a JSON list of positive numbers, got"),
        (GOOD, {"std": "[-0.5]"}, "'std' must be a JSON list of positive numbers, got"),
        (GOOD, {"mean": "[NaN]"}, r"'mean' must be a JSON list of numbers, got \[nan\]"),
        (GOOD, {"mean": "[1e400]"}, r"'mean' must be a JSON list of numbers, got \[inf\]"),
        (GOOD, {"mean": "[true]"}, r"'mean' must be a JSON list of numbers, got \[True\]"),
        (GOOD, {"config": '{"image_size": "abc"}'}, "config 'image_size' must be a whole number of at least 1 or null, got 'abc'"),
        (GOOD, {"config": '{"image_size": 0}'}, "config 'image_size' must be a whole number of at least 1"),
        (GOOD, {"config": '{"revision": 3}'}, "config 'revision' must be a string or null, got 3"),
        (GOOD, {"config": '{"data_config": ["x"]}'}, "config 'data_config' must be a string or null"),
        (GOOD, {"config": '{"a": ' * 100 + "1" + "}" * 100}, "'config' nests deeper than 32 levels"),
        (GOOD, {"config": '{"a": ' * 100_000 + "1" + "}" * 100_000}, "malformed metadata"),
        (GOOD, {"evaluation": "[" * 100_000 + "]" * 100_000}, "malformed metadata"),
        (GOOD, {"evaluation": '{"protocol": "x"}'}, "'evaluation' lacks accuracy_mean, accuracy_std, run_accuracies, labels, test"),
        (GOOD, {"evaluation": '{"accuracy_mean": "high"}'}, "'evaluation' lacks accuracy_std"),
        (GOOD, {"evaluation": json.dumps({**EVALUATION, "accuracy_mean": "high"})}, "evaluation 'accuracy_mean' must be a JSON percentage, got 'high'"),
        (GOOD, {"evaluation": json.dumps({**EVALUATION, "accuracy_std": 101})}, "evaluation 'accuracy_std' must be a JSON percentage"),
        (GOOD, {"evaluation": json.dumps({**EVALUATION, "run_accuracies": [1, "x"]})}, "evaluation 'run_accuracies' must be a JSON list of percentages"),
        (GOOD, {"evaluation": json.dumps({**EVALUATION, "test": None})}, "evaluation 'test' must be a JSON string, got None"),
        (GOOD, {"evaluation": json.dumps({**EVALUATION, "protocol": "x"})}, "evaluation 'protocol' must be a JSON object, got 'x'"),
        (GOOD, {"evaluation": json.dumps({**EVALUATION, "evaluated_on": ["test"]})}, "evaluation 'evaluated_on' must be a JSON string"),
        (GOOD, {"evaluation": json.dumps({**EVALUATION, "protocol": {"net_options": [1]}})}, "evaluation protocol 'net_options' must be a JSON object"),
        (GOOD, {"evaluation": json.dumps({**EVALUATION, "protocol": {"train": 3}})}, "evaluation protocol 'train' must be a JSON object"),
    ],
)
def test_each_bad_file_gets_a_precise_error(tmp_path, tensors, metadata, message):
    path = _write(tmp_path / "bad.safetensors", tensors, **metadata)
    with pytest.raises(UserError, match=message):
        SyntheticSet.load(path)


def test_foreign_truncated_and_missing_files(tiny_set, tmp_path):
    foreign = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(UserError, match="not a condensed set \\(metadata 'format' is None"):
        SyntheticSet.load(foreign)
    path = tiny_set.save(tmp_path / "set.safetensors")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(UserError, match="not a readable safetensors file"):
        SyntheticSet.load(truncated)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 5)
    with pytest.raises(UserError, match="not a readable safetensors file"):
        SyntheticSet.load(garbage)
    with pytest.raises(UserError, match="no such file"):
        SyntheticSet.load(tmp_path / "absent.safetensors")


def test_failed_save_leaves_nothing_behind(tiny_set, tmp_path, monkeypatch):
    import safetensors.torch

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save", broken)
    with pytest.raises(OSError):
        tiny_set.save(tmp_path / "set.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_metadata_is_plain_strings_with_json(tiny_set, tmp_path):
    from safetensors import safe_open

    path = tiny_set.save(tmp_path / "set.safetensors")
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    assert metadata["format"] == FORMAT and json.loads(metadata["class_names"]) == ["blue", "red"]
    assert set(load_file(str(path))) == {"images", "labels", "soft_labels"}


def test_constructor_rejects_inconsistent_sets(tiny_set):
    with pytest.raises(UserError, match="invalid synthetic set: labels range over"):
        SyntheticSet(images=tiny_set.images, labels=tiny_set.labels + 5, class_names=["a", "b"], mean=(0,) * 3, std=(1,) * 3,
                     method="x", source_dataset="d", ipc=1)


def deep(levels: int) -> dict:
    value: dict = {}
    for _ in range(levels):
        value = {"a": value}
    return value


@pytest.mark.parametrize("config, message", [
    (deep(100_000), "'config' nests deeper than 32 levels"),
    ({"weights": torch.zeros(2)}, "'config' holds a Tensor, which is not JSON"),
    ({1: "one"}, "'config' has a key that is not a string"),
    ({"image_size": 8.5}, "config 'image_size' must be a whole number"),
])
def test_save_refuses_metadata_that_is_not_plain_json_before_writing(tiny_set, tmp_path, config, message):
    """Built in Python, a set's config may hold what no JSON reader takes back: refused before anything is written (and a
    100,000-deep value without RecursionError)."""
    tiny_set.config = config
    with pytest.raises(UserError, match=message):
        tiny_set.save(tmp_path / "set.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_constructor_and_save_reject_invalid_soft_labels(tiny_set, tmp_path):
    with pytest.raises(UserError, match="invalid synthetic set: 'soft_labels' must be finite, non-negative"):
        SyntheticSet(images=tiny_set.images, labels=tiny_set.labels, soft_labels=tiny_set.soft_labels - 5, class_names=["a", "b"],
                     mean=(0,) * 3, std=(1,) * 3, method="x", source_dataset="d", ipc=6)
    tiny_set.soft_labels = tiny_set.soft_labels * 2  # assigned after construction, as a run does with a teacher's output
    with pytest.raises(UserError, match="row 0 sums to 2"):
        tiny_set.save(tmp_path / "set.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_the_same_set_always_gives_the_same_bytes(tiny_set, tmp_path):
    """The file's sha256 identifies the set: metadata keys and JSON values are written in one fixed order."""
    import dataclasses
    import hashlib

    tiny_set.config = {"lr": 1e-3, "ipc": 6, "nested": {"b": 1, "a": [1, 2]}}
    tiny_set.evaluation = EVALUATION
    reordered = dataclasses.replace(tiny_set, config=dict(reversed(tiny_set.config.items())),
                                    evaluation=dict(reversed(tiny_set.evaluation.items())))
    first = tiny_set.save(tmp_path / "first.safetensors")
    again = tiny_set.save(tmp_path / "again.safetensors")
    copy = SyntheticSet.load(first).save(tmp_path / "copy.safetensors")
    other = reordered.save(tmp_path / "reordered.safetensors")
    digests = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in (first, again, copy, other)}
    assert len(set(digests.values())) == 1, digests
    assert torch.equal(load_file(str(other))["soft_labels"], tiny_set.soft_labels)
