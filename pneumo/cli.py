"""Command line: the same engine as the Train page, headless (a GPU box without a browser).

    python -m pneumo train --dataset synthetic --model cnn --epochs 10 ...   foreground, progress bar
    python -m pneumo train ... --queue                                       hand it to the queue instead
    python -m pneumo runs                                                    list runs
    python -m pneumo stop RUN | resume RUN
    python -m pneumo worker RUN_DIR                                          (used by the queue)

Every TrainConfig field is an option, so every option the UI has, the CLI has.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import fields
from pathlib import Path

from pneumo.access import LOCAL
from pneumo.runs.store import RunState, RunStore
from pneumo.training.augment import PRESETS, TRANSFORMS, Augmentation, preset_name
from pneumo.training.config import OPTIONS, RUN_PRESETS, TrainConfig


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    """One option per TrainConfig field and per augmentation transform, explained by their tables."""
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        if f.name == "augmentation":
            continue
        flag, option, default = "--" + f.name.replace("_", "-"), OPTIONS[f.name], getattr(defaults, f.name)
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=option.help)
        else:
            accepted = f"{option.accepted()}; " if option.accepted() else ""
            parser.add_argument(flag, type=type(default), default=default,
                                help=f"{option.help} ({accepted}default {default!r})")
    parser.add_argument("--augment", choices=sorted(PRESETS), default=preset_name(defaults.augmentation),
                        help="augmentation preset (default %(default)s)")
    for name, transform in TRANSFORMS.items():
        if transform.high is None:
            parser.add_argument(f"--aug-{name}", action=argparse.BooleanOptionalAction, default=None,
                                help=f"{transform.help} Overrides the preset.")
        else:
            parser.add_argument(f"--aug-{name}", type=float,
                                help=f"{transform.help} 0 to {transform.high}; overrides the preset.")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if f.name != "augmentation"}
    augmentation = PRESETS[args.augment].to_dict()
    for name in TRANSFORMS:
        if getattr(args, f"aug_{name}") is not None:
            augmentation[name] = getattr(args, f"aug_{name}")
    return TrainConfig(**values, augmentation=Augmentation(**augmentation))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The command and its options; ``train --model``/``--preset`` move the defaults as on the Train
    page (``TrainConfig.for_model``: ResNet50 at 224 px), options given still win."""
    parser = argparse.ArgumentParser(prog="python -m pneumo", description="pneumo training from the command line")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a model (foreground, with a progress bar)")
    _add_config_options(train)
    train.add_argument("--preset", choices=list(RUN_PRESETS), default="recommended",
                       help="starting settings for a CNN run; options given as well override them")
    train.add_argument("--queue", action="store_true", help="hand the run to the queue and return at once")
    commands.add_parser("runs", help="list runs")
    for name in ("stop", "resume"):
        commands.add_parser(name, help=f"{name} a run").add_argument("run")
    commands.add_parser("worker", help=argparse.SUPPRESS).add_argument("run_dir", type=Path)
    args, _ = parser.parse_known_args(argv)
    if args.command == "train":
        start = TrainConfig.for_model(args.model, args.preset).to_dict()
        train.set_defaults(**{name: value for name, value in start.items() if name != "augmentation"})
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)

    if args.command == "train":
        sys.exit(_train(config_from_args(args), queue=args.queue))
    if args.command == "runs":
        _list_runs()
    elif args.command == "worker":
        _worker(args.run_dir)
    else:
        from pneumo.runs import jobs

        run = RunStore().get(args.run)
        (jobs.stop if args.command == "stop" else jobs.resume)(run, by=LOCAL)
        print(f"{args.command}: {run.id} is now {run.status()['state']}")


def _train(config: TrainConfig, queue: bool) -> int:
    from pneumo.runs import jobs

    problems = config.problems()
    if problems:
        print("invalid configuration:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    if queue:
        run = jobs.submit(config)
        print(f"queued {run.id} in {run.path.parent}")
        return 0
    from pneumo.training.engine import run_training

    run = RunStore().create(config)
    print(f"run {run.id} in {run.path}", flush=True)
    state = run_training(run, verbose=1)
    jobs.schedule()  # a run this one waited behind may start now
    return 0 if state in (RunState.FINISHED, RunState.STOPPED) else 1


def _worker(run_dir: Path) -> None:
    from pneumo.runs import jobs
    from pneumo.runs.store import Run
    from pneumo.training.engine import run_training

    run = Run(run_dir.resolve())
    run_training(run, verbose=2)
    jobs.schedule(RunStore(run.path.parent))


def _list_runs() -> None:
    from pneumo.runs import jobs

    store = RunStore()
    if store.root.is_dir():
        jobs.reconcile(store)
    runs = store.runs()
    if not runs:
        print(f"no runs in {store.root}")
        return
    print(f"{'run':<36}{'model':<10}{'state':<10}{'epochs':>7}{'best val AUC':>14}  started")
    for run in runs:
        if run.damage:
            print(f"{run.id:<36}{'?':<10}{'damaged':<10}{'':>7}{'':>14}  {run.damage}")
            continue
        status, history = run.status(), run.history()
        best = f"{history['val_auc'].max():.3f}" if "val_auc" in history and len(history) else "-"
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(status["started"])) if status.get("started") else "-"
        print(f"{run.id:<36}{run.config().model:<10}{status['state']:<10}{len(history):>7}{best:>14}  {started}")
    print(f"({len(runs)} runs in {store.root}; at most {jobs.max_parallel()} train at once)")
