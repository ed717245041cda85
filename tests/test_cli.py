"""The command line runs the same engine, writes the same run folder, and refuses bad options."""

import subprocess
import sys
from pathlib import Path

import pytest

from pneumo.cli import config_from_args, main, parse
from pneumo.runs.store import RunStore
from tests.conftest import ROOT


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pneumo", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_train_in_the_foreground_then_list(tiny_npz: Path) -> None:
    done = _cli("train", "--dataset", str(tiny_npz), "--image-size", "64", "--epochs", "2", "--cnn-blocks", "3",
                "--cnn-filters", "8", "--val-fraction", "0", "--augment", "none", "--name", "from the cli")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (run,) = RunStore().runs()
    assert run.status()["state"] == "finished" and run.name == "from the cli"
    assert run.config().cnn_blocks == 3 and len(run.history()) == 2 and len(run.predictions()) == 300
    listing = _cli("runs")
    assert run.id in listing.stdout and "finished" in listing.stdout


def test_invalid_options_are_refused_before_anything_starts(capsys) -> None:
    try:
        main(["train", "--batch-size", "0", "--model", "resnet50", "--weights", "/no/file.h5"])
    except SystemExit as exit_:
        assert exit_.code == 2
    err = capsys.readouterr().err
    assert "batch size" in err and "/no/file.h5" in err
    assert RunStore().runs() == []


def test_every_option_maps_to_the_config() -> None:
    import argparse

    from pneumo.cli import _add_config_options

    parser = argparse.ArgumentParser()
    _add_config_options(parser)
    args = parser.parse_args(["--model", "resnet50", "--unfreeze", "100", "--weights", "none", "--augment", "heavy",
                              "--aug-flip", "--aug-rotation", "0.1", "--no-class-weights",
                              "--lr-schedule", "triangular"])
    config = config_from_args(args)
    assert (config.model, config.unfreeze, config.weights) == ("resnet50", 100, "none")
    assert config.augmentation.flip and config.augmentation.rotation == 0.1 and config.augmentation.zoom == 0.25
    assert not config.class_weights and config.lr_schedule == "triangular"


def test_a_preset_moves_the_defaults_and_options_given_still_win() -> None:
    from pneumo.training.config import TrainConfig

    assert config_from_args(parse(["train", "--preset", "demo"])) == TrainConfig.for_model("cnn", "demo")
    assert config_from_args(parse(["train", "--preset", "demo", "--epochs", "5"])).epochs == 5
    assert config_from_args(parse(["train", "--model", "resnet50"])) == TrainConfig.for_model("resnet50")
    assert config_from_args(parse(["train", "--model", "resnet50", "--image-size", "96"])).image_size == 96
    assert config_from_args(parse(["train"])) == TrainConfig()
