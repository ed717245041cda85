"""The Train form, the CLI and ``TrainConfig.problems`` all read ``OPTIONS`` and ``TRANSFORMS``:
these tests fail where a default, a bound or an option could differ between them."""

import argparse
import math
import subprocess
import sys
from dataclasses import fields

import pytest

from pneumo.cli import _add_config_options, config_from_args
from pneumo.training.augment import PRESETS, TRANSFORMS, Augmentation
from pneumo.training.config import MODEL_DEFAULTS, MODELS, OPTIONS, TrainConfig
from tests.conftest import ROOT

RANGED = [name for name, option in OPTIONS.items() if option.low is not None]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    _add_config_options(parser)
    return parser


def _just_outside(bound: float, direction: float) -> float:
    """The nearest value beyond ``bound`` of the bound's own type."""
    return bound + math.copysign(1, direction) if isinstance(bound, int) else math.nextafter(bound, direction)


def test_every_field_and_transform_has_one_table_entry() -> None:
    assert set(OPTIONS) == {f.name for f in fields(TrainConfig)} - {"augmentation"}
    assert set(TRANSFORMS) == {f.name for f in fields(Augmentation)}
    assert set(MODEL_DEFAULTS) == set(MODELS)


@pytest.mark.parametrize("model", MODELS)
def test_defaults_are_accepted_and_offered(model: str) -> None:
    """The form starts each widget at the default: it must be in range, among the choices, of the right type."""
    default = TrainConfig.for_model(model)
    assert default.problems() == []
    for name, option in OPTIONS.items():
        value = getattr(default, name)
        if option.choices:
            assert value in option.choices, name
        if option.low is not None:
            kind = type(value)
            assert type(option.low) is kind and type(option.high) is kind and option.low <= value <= option.high, name
            assert option.step is None or type(option.step) is kind, name


def test_the_form_offers_only_accepted_choices() -> None:
    for name, option in OPTIONS.items():
        assert all(option.problem(choice) is None for choice in option.choices), name
    assert all(not preset.problems() for preset in PRESETS.values())


@pytest.mark.parametrize("name", RANGED)
def test_each_bound_is_accepted_and_just_outside_is_a_problem(name: str) -> None:
    option = OPTIONS[name]
    for bound, direction in ((option.low, -math.inf), (option.high, math.inf)):
        assert TrainConfig(**{name: bound}).problems() == [], (name, bound)
        outside = _just_outside(bound, direction)
        problem = option.problem(outside)
        assert problem is not None and problem in TrainConfig(**{name: outside}).problems(), (name, outside)


def test_a_closed_choice_refuses_others() -> None:
    assert "model must be one of cnn, resnet50, got 'vgg'" in TrainConfig(model="vgg").problems()


@pytest.mark.parametrize("name", [name for name, t in TRANSFORMS.items() if t.high is not None])
def test_each_augmentation_bound_comes_from_the_table(name: str) -> None:
    high = TRANSFORMS[name].high
    assert Augmentation(**{name: high}).problems() == []
    for outside in (-0.01, math.nextafter(high, math.inf)):
        assert f"augmentation {name} must be between 0 and {high}" in " ".join(Augmentation(**{name: outside})
                                                                                .problems())


def test_cli_defaults_are_the_config_defaults() -> None:
    assert config_from_args(_parser().parse_args([])) == TrainConfig()


def test_cli_has_one_option_per_field_and_transform_with_the_tables_help() -> None:
    parser = _parser()
    parser.format_help()  # a stray % in a help text would raise here
    actions = {action.dest: action for action in parser._actions}
    for name, option in OPTIONS.items():
        assert actions[name].help.startswith(option.help), name
    assert {dest for dest in actions if dest.startswith("aug_")} == {f"aug_{name}" for name in TRANSFORMS}
    for name, transform in TRANSFORMS.items():
        assert actions[f"aug_{name}"].help.startswith(transform.help), name


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_each_transform_is_set_from_the_cli(name: str) -> None:
    high = TRANSFORMS[name].high
    argv = [f"--aug-{name}"] if high is None else [f"--aug-{name}", str(high)]
    augmentation = config_from_args(_parser().parse_args(argv)).augmentation
    assert getattr(augmentation, name) == (True if high is None else high)


def test_reading_the_settings_does_not_load_keras() -> None:
    """Every page reads these tables; none should wait for TensorFlow to load."""
    code = "import sys, pneumo.training.config; assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True).returncode == 0


def test_a_config_saved_before_a_field_existed_trains_as_it_did() -> None:
    """Runs saved before the strided first block became the default were trained without it."""
    old = TrainConfig().to_dict()
    del old["cnn_strided_stem"]
    assert TrainConfig().cnn_strided_stem and not TrainConfig.from_dict(old).cnn_strided_stem
    assert TrainConfig.from_dict(TrainConfig().to_dict()) == TrainConfig()


@pytest.mark.parametrize(("switches", "schedule"), [
    ({"one_cycle": False, "cyclical_lr": False}, "plateau"), ({"one_cycle": True, "cyclical_lr": False}, "one-cycle"),
    ({"one_cycle": False, "cyclical_lr": True}, "triangular"), ({}, "plateau")])
def test_a_run_saved_with_the_two_schedule_switches_keeps_its_schedule(switches: dict, schedule: str) -> None:
    old = {k: v for k, v in TrainConfig().to_dict().items() if k != "lr_schedule"} | switches
    assert TrainConfig.from_dict(old).lr_schedule == schedule
    assert "learning-rate schedule must be one of plateau" in "; ".join(TrainConfig(lr_schedule="cosine").problems())
