"""Architecture search with proxies: rank correlation, seeded sampling, resume, bad input."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
from scipy.stats import spearmanr

import condense.evaluate as per_run
from condense.baseline import random_subset
from condense.errors import UserError
from condense.nets import build_net
from condense.train import TrainConfig
from downstream import nas
from downstream.nas import search
from downstream.nas.report import PLOT_FILE, format_summary, plot_search

from conftest import assert_one_error, make_real, write_image_folder


def test_spearman_with_ties_matches_hand_computation_and_scipy():
    # ranks of x with the tie averaged: 1, 2.5, 2.5, 4; of y: 1, 2, 3, 4 -> 4.5 / sqrt(4.5 * 5)
    x, y = [1, 2, 2, 4], [10, 20, 30, 40]
    assert nas.spearman(x, y) == pytest.approx(4.5 / math.sqrt(4.5 * 5))
    assert nas.spearman(x, y) == pytest.approx(spearmanr(x, y).statistic)
    assert nas.spearman([3, 2, 1], [1, 2, 3]) == pytest.approx(-1.0)
    assert nas.spearman([1, 1, 1], [1, 2, 3]) is None  # a constant proxy ranks nothing
    assert nas.spearman([1], [2]) is None


def test_rank_report_top_k_pick_and_best():
    reference = [50.0, 40.0, 30.0, 20.0, 10.0, 5.0]
    proxy = [1.0, 3.0, 2.0, 2.0, 9.0, 0.0]
    names = list("abcdef")
    report = nas.rank_report(proxy, reference, names, top_k=(3, 5, 10))
    assert report["spearman"]["all"] == pytest.approx(spearmanr(proxy, reference).statistic)
    # top 5 by reference (a..e): proxy ranks 1, 4, 2.5, 2.5, 5 against 5, 4, 3, 2, 1 -> -6.5 / sqrt(9.5 * 10)
    assert report["spearman"]["top5"] == pytest.approx(-6.5 / math.sqrt(95))
    assert report["spearman"]["top3"] == pytest.approx(spearmanr([1, 3, 2], [50, 40, 30]).statistic)
    assert report["spearman"]["top10"] is None  # fewer candidates than k
    assert (report["pick"], report["pick_reference_accuracy"], report["pick_rank"]) == ("e", 10.0, 5)
    assert (report["best"], report["best_reference_accuracy"]) == ("a", 50.0)


def test_convnet_space_has_720_distinct_valid_nets():
    space = nas.convnet_space()
    assert len(space) == 720 == len({nas.candidate_name(c) for c in space})
    assert nas.load_space("convnet720") == space


def test_sampling_is_seeded_valid_and_respects_the_cost_limit():
    space = nas.convnet_space()
    first = nas.sample_candidates(space, 8, seed=0, max_mmacs=15.0)
    assert first == nas.sample_candidates(space, 8, seed=0, max_mmacs=15.0)
    assert [c["name"] for c in first] != [c["name"] for c in nas.sample_candidates(space, 8, seed=1, max_mmacs=15.0)]
    assert len({c["name"] for c in first}) == 8
    for candidate in first:
        options = {k: v for k, v in candidate["options"].items() if k != "net"}
        assert all(options[key] in values for key, values in nas.CONVNET_SPACE.items())
        assert candidate["mmacs"] <= 15.0
        net = build_net("convnet", 3, 10, (32, 32), **options)
        assert candidate["params"] == sum(p.numel() for p in net.parameters())
    # ConvNet-3 of width 64 with pooling: 13.6 million multiply-accumulates per 32x32 image
    cost = nas.candidate_cost({"depth": 3, "width": 64, "act": "relu", "norm": "instance", "pooling": "avg"})
    assert cost["mmacs"] == pytest.approx(13.58, abs=0.01)
    everything = nas.sample_candidates(space[:6], None, seed=0)
    assert sorted(c["name"] for c in everything) == sorted(nas.candidate_name(c) for c in space[:6])


def test_space_from_a_json_list_reads_the_old_pooling_name(tmp_path):
    path = tmp_path / "space.json"
    path.write_text(json.dumps([{"depth": 1, "width": 8}, {"net": "convnet", "depth": 2, "width": 8, "pool": "max"},
                                {"depth": 2, "width": 8, "pooling": "avg"}]))
    space = nas.load_space(str(path))
    assert [nas.candidate_name(c) for c in space] == ["convnet(depth=1, width=8)", "convnet(depth=2, width=8, pooling=max)",
                                                      "convnet(depth=2, width=8, pooling=avg)"]
    assert space[1] == {"net": "convnet", "depth": 2, "width": 8, "pooling": "max"}


@pytest.mark.parametrize("space, message", [
    ([], "empty"),
    ("no-such-space", "unknown search space"),
    ([{"depth": 1}, {"depth": 1}], "more than once"),
])
def test_bad_spaces_are_refused(space, message):
    with pytest.raises(UserError, match=message):
        nas.load_space(space)


def test_bad_options_are_refused_at_sampling():
    with pytest.raises(UserError, match="unknown activation"):
        nas.sample_candidates([{"act": "tanh"}], None, seed=0)
    with pytest.raises(UserError, match="raise --max-mmacs"):
        nas.sample_candidates(nas.convnet_space()[:5], 2, seed=0, max_mmacs=0.001)


def tiny_config(**changes) -> nas.NasConfig:
    space = [{"depth": 1, "width": 4, "pooling": pooling} for pooling in ("none", "max", "avg")]
    config = nas.NasConfig(space=space, candidates=None, condensed_epochs=1, random_ipc=2, real_epochs=1, reference_epochs=2,
                           real_per_class=6, test_per_class=4, train=TrainConfig(batch_size=8, dsa="", cutmix_p=0.0))
    return replace(config, **changes)


@pytest.fixture
def tiny_data():
    train_data, test = make_real(per_class=8, size=8), make_real(per_class=4, size=8, seed=1, split="test")
    return train_data, test, random_subset(train_data, 3, seed=5)


def test_unknown_proxy_and_missing_condensed_set_are_refused(tmp_path, tiny_data):
    train_data, test, condensed = tiny_data
    with pytest.raises(UserError, match="unknown proxy herding"):
        nas.run_search(tiny_config(proxies=("condensed", "herding")), train_data, test, tmp_path, condensed=condensed, progress=False)
    with pytest.raises(UserError, match="--condensed"):
        nas.run_search(tiny_config(), train_data, test, tmp_path, progress=False)
    assert not (tmp_path / nas.RESULT_FILE).exists()


class Killed(Exception):
    """Stands for the process being killed in the middle of a search."""


def test_search_writes_result_and_plot_and_resume_skips_finished(tmp_path, tiny_data, monkeypatch):
    train_data, test, condensed = tiny_data
    calls, kill_at = [], [6]  # killed during the second candidate's second training
    real_train = per_run.train

    def counting_train(net, images, targets, config, **kwargs):
        calls.append(kwargs["desc"])
        if len(calls) in kill_at:
            raise Killed
        return real_train(net, images, targets, config, **kwargs)

    monkeypatch.setattr(per_run, "train", counting_train)  # the loop the per-run trainer calls
    with pytest.raises(Killed):
        nas.run_search(tiny_config(), train_data, test, tmp_path, condensed=condensed, progress=False)
    partial = json.loads((tmp_path / nas.RESULT_FILE).read_text())
    assert partial["complete"] is False and partial["summary"]["finished"] == 1
    first = partial["candidates"][0]
    assert set(first["runs"]) == {"condensed", "random", "real", "reference"}
    assert len(partial["candidates"][1]["runs"]) == 1

    calls.clear()
    kill_at.clear()
    result = nas.run_search(tiny_config(), train_data, test, tmp_path, condensed=condensed, progress=False)
    # 3 candidates x 4 sets = 12 trainings; 5 were finished before the kill, only the other 7 run again
    assert len(calls) == 7 and not any(desc.startswith("1/3") for desc in calls)
    assert calls[:3] == ["2/3 random", "2/3 real", "2/3 reference"]
    assert result["complete"] is True and result["summary"]["finished"] == 3
    assert result["candidates"][0]["runs"] == first["runs"]  # read back, not retrained
    sets = result["sets"]
    assert (sets["condensed"]["epochs"], sets["random"]["epochs"], sets["reference"]["epochs"]) == (1, 2, 2)  # random: 1 step per epoch, condensed: 2
    assert sets["reference"]["images"] == 18 and result["test"].startswith("12 images")
    for proxy in ("condensed", "random", "real"):
        report = result["summary"]["proxies"][proxy]
        reference = [c["runs"]["reference"]["accuracy"] for c in result["candidates"]]
        proxy_acc = [c["runs"][proxy]["accuracy"] for c in result["candidates"]]
        assert report["best_reference_accuracy"] == max(reference)
        expected = spearmanr(proxy_acc, reference).statistic
        assert report["spearman"]["all"] == (None if math.isnan(expected) else pytest.approx(expected))
        runs = [c["runs"][proxy] for c in result["candidates"]]
        assert report["search_seconds"] == pytest.approx(sum(run["seconds"] for run in runs))
        assert report["reference_time_ratio"] == pytest.approx(result["summary"]["reference_search_seconds"] / report["search_seconds"])
    for candidate in result["candidates"]:  # 12 test images: every accuracy is a whole number of them right
        for name, run in candidate["runs"].items():
            assert run["accuracy"] * 12 / 100 == pytest.approx(round(run["accuracy"] * 12 / 100), abs=1e-9)
            assert run["images_seen"] == sets[name]["epochs"] * sets[name]["images"]
            assert run["seconds"] >= run["train_seconds"] > 0
    condensed_report = result["summary"]["proxies"]["condensed"]
    assert (condensed_report["images_seen"], condensed_report["reference_images_ratio"]) == (27, 4.0)  # 3 x 9 x 1 vs 3 x 18 x 2
    assert plot_search(result, tmp_path / PLOT_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "reference" in format_summary(result)

    calls.clear()
    nas.run_search(tiny_config(), train_data, test, tmp_path, condensed=condensed, progress=False)
    assert calls == []  # a finished search trains nothing


def test_a_search_rerun_with_one_set_changed_retrains_only_that_set(tmp_path, tiny_data, monkeypatch):
    train_data, test, condensed = tiny_data
    calls = []
    real_train = per_run.train

    def counting_train(net, images, targets, config, **kwargs):
        calls.append(kwargs["desc"])
        return real_train(net, images, targets, config, **kwargs)

    monkeypatch.setattr(per_run, "train", counting_train)  # the loop the per-run trainer calls
    first = nas.run_search(tiny_config(), train_data, test, tmp_path, condensed=condensed, progress=False)
    calls.clear()
    longer = nas.run_search(tiny_config(reference_epochs=3), train_data, test, tmp_path, condensed=condensed, progress=False)
    assert calls == ["1/3 reference", "2/3 reference", "3/3 reference"]
    assert [c["runs"]["real"] for c in longer["candidates"]] == [c["runs"]["real"] for c in first["candidates"]]
    calls.clear()
    other = random_subset(train_data, 3, seed=6)  # another condensed file with the same summary line
    assert other.summary() == condensed.summary()
    nas.run_search(tiny_config(reference_epochs=3), train_data, test, tmp_path, condensed=other, progress=False)
    assert calls == ["1/3 condensed", "2/3 condensed", "3/3 condensed"]
    calls.clear()
    with pytest.raises(UserError, match=r"training or test settings: test_per_class, test split \(.* then, .* now\)"):
        nas.run_search(tiny_config(reference_epochs=3, test_per_class=3), train_data, test, tmp_path, condensed=other, progress=False)
    with pytest.raises(UserError, match="training or test settings: train;"):
        nas.run_search(tiny_config(train=TrainConfig(batch_size=4, dsa="", cutmix_p=0.0)), train_data, test, tmp_path,
                       condensed=other, progress=False)
    assert calls == []


def test_a_search_written_with_the_old_pooling_name_resumes_without_retraining(tmp_path, tiny_data, monkeypatch):
    train_data, test, condensed = tiny_data
    first = nas.run_search(tiny_config(), train_data, test, tmp_path, condensed=condensed, progress=False)
    path = tmp_path / nas.RESULT_FILE
    old = path.read_text().replace('"pooling"', '"pool"').replace("pooling=", "pool=")  # as written before the rename
    assert "pooling" not in old and "pool=max" in old
    path.write_text(old)
    calls = []
    monkeypatch.setattr(per_run, "train", lambda *args, **kwargs: calls.append(kwargs["desc"]))
    resumed = nas.run_search(tiny_config(), train_data, test, tmp_path, condensed=condensed, progress=False)
    assert calls == [] and [c["runs"] for c in resumed["candidates"]] == [c["runs"] for c in first["candidates"]]
    assert [c["name"] for c in resumed["candidates"]] == [c["name"] for c in first["candidates"]]
    assert all("pooling=" in c["name"] for c in resumed["candidates"])


def test_importing_the_package_leaves_matplotlib_and_scipy_unimported():
    code = "import sys, downstream.nas; print(sorted(m for m in ('matplotlib', 'scipy') if m in sys.modules))"
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "[]"


def test_pending_trainings_go_candidate_by_candidate_or_in_blocks_of_one_set_per_rank():
    candidates = [{"runs": {}}, {"runs": {"a": {}}}, {"runs": {"a": {}, "b": {}}}, {"runs": {}}]
    assert search.pending_trainings(candidates, ["a", "b"], 1) == [[0, "a"], [0, "b"], [1, "b"], [3, "a"], [3, "b"]]
    # 2 ranks: candidates 0 and 1 (2 is finished), then 3; each round trains one set
    assert search.pending_trainings(candidates, ["a", "b"], 2) == [[0, "a"], [0, "b"], [1, "b"], [3, "a"], [3, "b"]]
    fresh = [{"runs": {}} for _ in range(3)]
    assert search.pending_trainings(fresh, ["a", "b"], 2) == [[0, "a"], [1, "a"], [0, "b"], [1, "b"], [2, "a"], [2, "b"]]


def test_random_proxy_gets_as_many_steps_as_the_condensed_one(tiny_data):
    train_data, test, condensed = tiny_data  # 9 condensed images, batch 8: 2 steps per epoch; random: 6 images, 1 step
    sets = nas.training_sets(tiny_config(condensed_epochs=3), train_data, test, condensed)
    assert sets["random"].epochs == 6 and len(sets["random"].images) == 6
    assert sets["real"].epochs == 1 and sets["reference"].epochs == 2 and len(sets["reference"].images) == 18
    assert torch.equal(sets["real"].images, sets["reference"].images)


@pytest.mark.parametrize("file, content, message", [
    ("space", b"\xff\xfe[{}]", "is not a readable JSON list of build_net option dicts"),
    ("resume", b"\xff\xfe[{}]", "is not a readable NAS result"),
    ("resume", b"[1, 2]", "holds JSON but not a NAS result"),
    # issue 24 item 10: parts of the wrong type (they were tracebacks)
    ("resume", b'{"config": [1]}', "holds JSON but not a NAS result of this tool (its 'config' and 'sets' must be objects)"),
    ("resume", b'{"sets": "x"}', "holds JSON but not a NAS result of this tool (its 'config' and 'sets' must be objects)"),
    ("resume", b'{"config": {"space": [1]}}', "holds JSON but not a NAS result of this tool (its config's 'space' must be a list of option objects"),
    ("resume", b'{"candidates": 3}', "holds JSON but not a NAS result of this tool (its 'candidates' must be a list of objects with 'options' and 'runs'"),
    ("resume", b'{"candidates": [{"options": [1], "runs": {}}]}', "holds JSON but not a NAS result of this tool (its 'candidates' must be a list of objects"),
    ("resume", b'{"candidates": [{"options": {"depth": 1}, "runs": {"random": 5}}]}', "holds JSON but not a NAS result of this tool (every run must be an object with a numeric accuracy"),
], ids=["space not UTF-8", "resume not UTF-8", "resume foreign JSON", "config a list", "sets a string", "space of numbers",
        "candidates a number", "options a list", "a run a number"])
def test_cli_refuses_an_unreadable_space_or_resume_file(tmp_path, capsys, file, content, message):
    from downstream.cli import main

    data = write_image_folder(tmp_path / "data", {"img": "image", "label": "label"})
    out, space = tmp_path / "out", tmp_path / "space.json"
    space.write_text(json.dumps([{"depth": 1, "width": 4}]))
    bad = {"space": space, "resume": out / nas.RESULT_FILE}[file]
    bad.parent.mkdir(exist_ok=True)
    bad.write_bytes(content)
    argv = ["nas", "--data", data, "--space", space, "--proxies", "random", "--random-ipc", "2", "--candidates", "all",
            "--max-mmacs", "none", "--test-per-class", "all", "--out", out, "--device", "cpu", "--no-progress"]
    assert_one_error(main, argv, capsys, contains=f"{bad} {message}")


def test_cli_refuses_bad_settings_before_loading_data(tmp_path, capsys):
    from downstream.cli import main

    missing = str(tmp_path / "no-such-dataset")  # never read: the settings are refused first
    assert main(["nas", "--data", missing, "--proxies", "random,herding"]) == 2
    assert "unknown proxy herding" in capsys.readouterr().err
    assert main(["nas", "--data", missing]) == 2
    assert "pass --condensed" in capsys.readouterr().err
    assert main(["nas", "--data", missing, "--proxies", "random", "--candidates", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err
    for flag in ("--test-per-class", "--real-per-class", "--random-ipc", "--reference-epochs"):  # issue 24 item 10 (0 test images: ZeroDivisionError)
        assert_one_error(main, ["nas", "--data", missing, "--proxies", "random", flag, "0"], capsys, contains=f"{flag} must be at least 1, got 0")
