"""Issue 24, item 10: bad input the hostile battery fed `condense eval` and `condense export` gets one `error:` line and
exit 2 (it gave a traceback), before any training, and a refused export leaves the folder it would change untouched."""

import json
from pathlib import Path

import pytest
import torch

from condense.baseline import random_subset
from condense.cli import main
from condense.data import RealData, load_real
from condense.hub import export

from conftest import assert_one_error, load_benchmark, write_image_folder

TINY_EVAL = ["--epochs", "1", "--runs", "1", "--depth", "1", "--width", "8", "--device", "cpu", "--no-progress"]
EVALUATION = {"accuracy_mean": 50.0, "accuracy_std": 0.0, "run_accuracies": [50.0], "labels": "hard", "test": "tiny [test]"}


@pytest.fixture
def set_file(tmp_path) -> Path:
    """A 3-class random set of 8x8 images from a local image folder (its source, for `condense eval`)."""
    data = write_image_folder(tmp_path / "data", {"img": "image", "label": "label"}, rows=24)
    return random_subset(load_real(str(data), "train"), 2).save(tmp_path / "set.safetensors")


def with_metadata(path: Path, **changes) -> Path:
    """The set file at `path` rewritten with some metadata replaced, around `SyntheticSet.save`'s checks."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as handle:
        metadata, tensors = handle.metadata(), {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    out = path.with_name(f"edited-{path.name}")
    save_file(tensors, str(out), metadata={**metadata, **{key: json.dumps(value) for key, value in changes.items()}})
    return out


def member_of_other_classes(folder: Path) -> Path:
    """A pool member trained on 2 classes of 8x8 images (the set has 3)."""
    from condense.pool import POOL_TRAINING, PoolSpec, build_or_load_pool

    labels = torch.arange(2).repeat(4)
    real = RealData(torch.randint(0, 256, (8, 3, 8, 8), dtype=torch.uint8), labels, ["x", "y"], (0.5,) * 3, (0.25,) * 3, "other", "train")
    spec = PoolSpec(real.source, real.split, 2, 3, (8, 8), "convnet", {"depth": 1, "width": 4}, {**POOL_TRAINING.to_dict(), "batch_size": 4})
    build_or_load_pool(folder, spec, 1, real, None, torch.device("cpu"), progress=False)
    return folder / "member-000-trained.safetensors"


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


EVAL_CASES = {
    "lr -1": (["--lr", "-1"], "--lr must be a finite number above 0, got -1.0"),
    "lr nan": (["--lr", "nan"], "--lr must be a finite number above 0, got nan"),
    "weight decay -1": (["--weight-decay", "-1"], "--weight-decay must be a finite number of at least 0, got -1.0"),
    "weight decay nan": (["--weight-decay", "nan"], "--weight-decay must be a finite number of at least 0, got nan"),
    "teacher ,": (["--teacher", ","], "--teacher ',' names no file"),
    "teacher of other classes": (["--teacher", "{member}"], "was trained for 2 classes of 3x8x8 images (other), but the set has 3 classes"),
}


@pytest.mark.parametrize("case", EVAL_CASES)
def test_eval_refuses_bad_flags_in_one_line(case, set_file, tmp_path, capsys):
    argv, message = EVAL_CASES[case]
    if "{member}" in argv:
        argv = [a.format(member=member_of_other_classes(tmp_path / "pool")) for a in argv]
    assert_one_error(main, ["eval", set_file, *argv, *TINY_EVAL, "--data", tmp_path / "data"], capsys, contains=message)
    assert not set_file.with_suffix(".eval.json").exists()


@pytest.mark.parametrize("config, message", [
    ({"image_size": "abc"}, "config 'image_size' must be a whole number of at least 1 or null, got 'abc'"),
    ({"image_size": 8, "revision": ["main"]}, "config 'revision' must be a string or null"),
    ({"nested": json.loads(deep(900))}, "'config' nests deeper than 32 levels"),
])
def test_eval_refuses_a_set_whose_stored_config_has_wrong_types(set_file, capsys, config, message):
    assert_one_error(main, ["eval", with_metadata(set_file, config=config), *TINY_EVAL], capsys, contains=message)


@pytest.mark.parametrize("content, message", [
    (b"garbage{", "is not a readable result of `condense eval`"),
    (b"\xff\xfe{}", "is not a readable result of `condense eval`"),
    (deep(100_000).encode(), "is not a readable result of `condense eval`"),
    (b"[1, 2]", "is not a result of `condense eval` (TypeError"),
    (b'{"accuracy_mean": 50}', "is not a result of `condense eval` (KeyError"),
    (json.dumps({"runs": [{"accuracy": "high"}], **{k: v for k, v in EVALUATION.items() if k != "run_accuracies"}, "label_protocol": "x",
                 "evaluated_on": "test", "protocol": {}}).encode(), "evaluation 'run_accuracies' must be a JSON list of percentages"),
], ids=["garbage", "not UTF-8", "nested 100,000 deep", "a JSON list", "lacks the figures", "a run's accuracy a string"])
@pytest.mark.parametrize("command", ["eval", "export"])
def test_a_bad_eval_json_beside_a_set_is_one_error(set_file, tmp_path, capsys, content, message, command):
    eval_file = set_file.with_suffix(".eval.json")
    eval_file.write_bytes(content)
    argv = {"eval": ["eval", set_file, *TINY_EVAL], "export": ["export", set_file, "--out", tmp_path / "hub"]}[command]
    assert str(eval_file) in assert_one_error(main, argv, capsys, contains=message)
    assert eval_file.read_bytes() == content and not (tmp_path / "hub").exists()


def snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("changes, message", [
    ({"evaluation": {"protocol": "x"}}, "'evaluation' lacks accuracy_mean, accuracy_std, run_accuracies, labels, test"),
    ({"evaluation": {**EVALUATION, "protocol": "x"}}, "evaluation 'protocol' must be a JSON object, got 'x'"),
    ({"evaluation": {**EVALUATION, "accuracy_mean": "high"}}, "evaluation 'accuracy_mean' must be a JSON percentage, got 'high'"),
    ({"class_names": ["ant", "ant", "cat"]}, "class names ['ant'] are duplicated"),
    ({"std": [0.25, 0.0, 0.25]}, "'std' must be a JSON list of positive numbers"),
    ({"config": {"a": json.loads(deep(100))}}, "'config' nests deeper than 32 levels"),
], ids=["evaluation without figures", "protocol a string", "accuracy a string", "duplicate class names", "std 0", "config 100 deep"])
def test_export_refuses_bad_metadata_and_leaves_the_existing_config_untouched(set_file, tmp_path, capsys, changes, message):
    export(set_file, tmp_path / "hub", "ipc2")
    before = snapshot(tmp_path / "hub")
    for config in ("ipc2", "other"):  # replacing the existing config, or adding one beside it
        assert_one_error(main, ["export", with_metadata(set_file, **changes), "--out", tmp_path / "hub", "--config", config], capsys,
                         contains=message)
        assert snapshot(tmp_path / "hub") == before


def test_paper_gpu_tiny_rerun_with_other_sizes_is_one_error_line(tmp_path, capsys):
    """A --tiny rerun into the same --out with another --pool-epochs, or with a negative --iterations, was a traceback
    (`dataclasses.replace() got multiple values`: --tiny's sizes and the flags were passed twice)."""
    paper_gpu = load_benchmark("paper_gpu")
    data = write_image_folder(tmp_path / "data", {"img": "image", "label": "label"}, rows=24)
    common = ["--tiny", "--data", data, "--device", "cpu", "--no-progress", "--out", tmp_path / "out"]
    assert paper_gpu.main([str(a) for a in [*common, "--budget", "0"]]) == 0  # the pool, then a stop
    pool = snapshot(tmp_path / "out" / "pool")
    assert_one_error(paper_gpu.main, [*common, "--pool-epochs", "2"], capsys, contains="the pool in")
    assert_one_error(paper_gpu.main, [*common, "--iterations", "-1"], capsys, contains="--iterations must be at least 0, got -1")
    assert snapshot(tmp_path / "out" / "pool") == pool


SCRIPTS = {  # a script of benchmarks/, its arguments past --data/--out, and what its error line says
    "accuracy_vs_iterations": ([], "no such folder"),
    "batched_cpu": ([], "no such folder"),
    "cl_cpu": (["--threads", "{threads}"], "no such folder"),
    "dlb_cpu": (["--threads", "{threads}"], "no such folder"),
    "dlb_noise": (["--threads", "{threads}"], "no such folder"),
    "eval_cpu": ([], "no such folder"),
    "init_study": ([], "no such folder"),
    "ncfm_gpu": ([], "no such folder"),
    "ncfm_cpu": (["--variants", "nope"], "unknown variants ['nope']"),
    "nas_proxy_protocols": (["--result", "{tmp}/none.json"], "no such NAS result"),
}


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_scripts_print_a_user_error_as_one_line(script, tmp_path, capsys):
    """Scripts in benchmarks/ go through the CLIs' `run_main`: a UserError is one `error:` line and exit 2, not a traceback."""
    module = load_benchmark(script)
    args, message = SCRIPTS[script]
    out = [] if script in ("batched_cpu", "eval_cpu", "ncfm_cpu", "nas_proxy_protocols") else ["--out", tmp_path / "out"]
    argv = ["--data", tmp_path / "no-data", *out, *(a.format(threads=torch.get_num_threads(), tmp=tmp_path) for a in args)]
    assert_one_error(module.main, argv, capsys, contains=message)


def test_every_benchmark_script_runs_through_the_clis_main():
    benchmarks = Path(__file__).resolve().parents[1] / "benchmarks"
    scripts = [path for path in sorted(benchmarks.glob("*.py")) if '__name__ == "__main__"' in path.read_text()]
    assert len(scripts) >= 14
    for path in scripts:
        text = path.read_text()
        assert "run_main(" in text or "from downstream.cli import main" in text, f"{path.name} does not report errors through run_main"
        assert 'if __name__ == "__main__":\n    sys.exit(main())' in text or "sys.exit(code)" in text, path.name


@pytest.mark.parametrize("metadata, message", [
    ("[" * 100_000 + "]" * 100_000, "the parquet rows' condensed-set metadata is not readable JSON"),
    ("[1]", "is not a condensed set (its metadata is not a map of strings)"),
    ('{"format": 1}', "is not a condensed set (its metadata is not a map of strings)"),
    ("{set}", "evaluation 'protocol' must be a JSON object"),
], ids=["nested 100,000 deep", "a list", "a number", "an evaluation of the wrong shape"])
def test_parquet_rows_with_crafted_metadata_are_one_error(set_file, tmp_path, capsys, metadata, message):
    """A Hub folder read from its parquet rows alone (no safetensors file): their metadata goes through the same checks."""
    import pyarrow.parquet as pq

    from condense.rows import ROWS, ROWS_METADATA_KEY, SET_FILE
    from downstream.cli import main as downstream_main

    export(set_file, tmp_path / "hub", "ipc2")
    (tmp_path / "hub" / "ipc2" / SET_FILE).unlink()
    rows = tmp_path / "hub" / "ipc2" / ROWS
    table = pq.read_table(rows)
    if metadata == "{set}":
        written = json.loads(table.schema.metadata[ROWS_METADATA_KEY])
        metadata = json.dumps({**written, "evaluation": json.dumps({**EVALUATION, "protocol": "x"})})
    pq.write_table(table.replace_schema_metadata({**table.schema.metadata, ROWS_METADATA_KEY: metadata.encode()}), rows)
    assert_one_error(downstream_main, ["info", tmp_path / "hub"], capsys, contains=message)
