"""Every preset getter hands out a deep copy: what a caller changes in it never reaches the table."""

import copy
import dataclasses

import pytest

from condense.distill import PRESETS, preset
from condense.evaluate import EVAL_PRESETS, eval_preset
from downstream.continual import CL_PRESETS, cl_preset
from downstream.nas import NAS_PRESETS, nas_preset

GETTERS = [(preset, PRESETS), (eval_preset, EVAL_PRESETS), (cl_preset, CL_PRESETS), (nas_preset, NAS_PRESETS)]


def scribble(value) -> None:
    """Change everything reachable from `value`: every dataclass field, dict entry and list, at any depth."""
    if dataclasses.is_dataclass(value):
        for item in dataclasses.fields(value):
            inner = getattr(value, item.name)
            if dataclasses.is_dataclass(inner) or isinstance(inner, (dict, list)):
                scribble(inner)
            else:
                setattr(value, item.name, "scribbled")
    elif isinstance(value, dict):
        for inner in value.values():
            if dataclasses.is_dataclass(inner) or isinstance(inner, (dict, list)):
                scribble(inner)
        value["scribbled"] = True
    elif isinstance(value, list):
        value.append("scribbled")


@pytest.mark.parametrize("getter,table,name", [(getter, table, name) for getter, table in GETTERS for name in table],
                         ids=lambda item: item if isinstance(item, str) else getattr(item, "__name__", ""))
def test_changing_a_preset_leaves_the_table_unchanged(getter, table, name):
    before = copy.deepcopy(table[name])
    mine = getter(name)
    scribble(mine)
    assert mine != before  # the scribbling reached it
    assert table[name] == before
    assert getter(name) == before


def test_a_changed_continual_preset_keeps_its_condense_settings_and_training_to_itself():
    """The case that leaked: cl_preset's nested `condense` dict and its TrainConfig were the table's own."""
    name = "cifar100-5steps"
    epochs = CL_PRESETS[name].train.epochs
    mine = cl_preset(name)
    mine.condense["iterations"] = 1
    mine.train.epochs = 1
    assert CL_PRESETS[name].condense == {} and cl_preset(name).condense == {}
    assert CL_PRESETS[name].train.epochs == epochs == cl_preset(name).train.epochs


def test_the_adamw_presets_take_the_image_lr_rule_and_sgd_keeps_its_published_lr():
    from condense.config import image_lr

    assert image_lr(10) == 1e-2 and image_lr(100) == 0.0316  # sqrt(C / 10) from the measured 1e-2 at 10 classes
    for name, config in PRESETS.items():
        classes = 100 if name.startswith("cifar100") else 10
        assert config.lr == (0.01 if config.optimizer == "sgd" else image_lr(classes)), name


def test_every_preset_matches_with_gaussian_frequencies():
    """No variant of psi beat Gaussian frequencies at CPU scale (README), so no preset asks for psi."""
    assert {config.method_settings.sampler for config in PRESETS.values()} == {"gaussian"}


def test_the_paper_presets_evaluate_with_ncfm_at_paper_scale_and_the_cpu_presets_with_cpu():
    """Issue 24 item 2: the paper presets' evaluation is the published NCFM one (flip + colour on every image, one
    geometric operation per batch) at width 128, 2000 epochs, 10 runs."""
    for name, config in PRESETS.items():
        evaluation = eval_preset(config.eval_preset)
        if name.endswith("-cpu"):
            assert (evaluation.name, evaluation.scale, evaluation.train.dsa_mode) == ("cpu", "cpu", "one"), name
            continue
        assert (evaluation.name, evaluation.scale) == ("ncfm", "paper"), name
        assert (evaluation.train.dsa, evaluation.train.dsa_mode) == ("color_crop_flip_scale_rotate", "batch-geometry"), name
        assert (evaluation.net_options["width"], evaluation.train.epochs, evaluation.runs) == (128, 2000, 10), name


def test_the_sgd_preset_takes_no_weight_decay_as_published():
    """The published code's SGD on the images (CIFAR-100 IPC 10) has no weight decay; its 5e-4 reaches AdamW only."""
    assert [name for name, config in PRESETS.items() if config.optimizer == "sgd"] == ["cifar100-ipc10"]
    assert PRESETS["cifar100-ipc10"].weight_decay == 0.0 and PRESETS["cifar100-ipc10"].momentum == 0.5
    assert {config.weight_decay for config in PRESETS.values() if config.optimizer == "adamw"} == {5e-4}
