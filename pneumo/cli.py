"""Command line: the same engine as the Train page, headless (a GPU box without a browser).

    python -m pneumo train --dataset synthetic --model cnn --epochs 10 ...   foreground, progress bar
    python -m pneumo train ... --queue                                       hand it to the queue instead
    python -m pneumo runs                                                    list runs
    python -m pneumo stop RUN | resume RUN
    python -m pneumo worker RUN_DIR                                          (used by the queue)
    python -m pneumo --ray http://HEAD:8265 train ...                        on a Ray cluster ($PNEUMO_RAY_ADDRESS)

Every TrainConfig field is an option, so every option the UI has, the CLI has.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from dataclasses import fields
from pathlib import Path

from pneumo.access import LOCAL
from pneumo.runs.store import Run, RunState, RunStore
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
            named = {"choices": option.choices} if isinstance(default, str) and option.choices else {}
            parser.add_argument(flag, type=type(default), default=default, **named,
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
    parser.add_argument("--ray", metavar="ADDRESS", help="train on the Ray cluster whose dashboard is at ADDRESS "
                        "(http://HEAD:8265) instead of in local processes; default $PNEUMO_RAY_ADDRESS")
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
    if args.ray:
        from pneumo.runs.backends import RAY_ADDRESS_VARIABLE

        os.environ[RAY_ADDRESS_VARIABLE] = args.ray  # the jobs it submits, and the runs they start, use it too

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
    from pneumo.runs import backends, jobs

    problems = config.problems()
    if problems:
        print("invalid configuration:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    if queue or backends.chosen().name == backends.RAY:
        try:
            run = jobs.submit(config)
        except jobs.Refused as exc:
            print(f"not started: {exc}", file=sys.stderr)
            return 2
        print(f"queued {run.id} in {run.path.parent}", flush=True)
        return 0 if queue else _follow(run)
    from pneumo.training.engine import run_training

    run = RunStore().create(config)
    print(f"run {run.id} in {run.path}", flush=True)
    state = run_training(run, verbose=1)
    jobs.schedule()  # a run this one waited behind may start now
    return 0 if state in (RunState.FINISHED, RunState.STOPPED) else 1


def _follow(run: Run, every_s: float = 2.0) -> int:
    """Print a queued run's state changes and epochs until it ends (a run training on a cluster)."""
    from pneumo.runs import jobs

    state, shown = None, 0
    while True:
        jobs.schedule(RunStore(run.path.parent))  # notices a failed job, starts what waits
        status, history = run.status(), run.history()
        if status["state"] != state:
            state = status["state"]
            print(f"{run.id}: {state}" + (f" ({status.get('error') or status.get('note')})"
                                          if status.get("error") or status.get("note") else ""), flush=True)
        for _, row in history.iloc[shown:].iterrows():
            print(f"  epoch {int(row['epoch'])}: loss {row['loss']:.4f}, val AUC {row['val_auc']:.4f}", flush=True)
        shown = len(history)
        if not RunState(state).active:
            return 0 if state in (RunState.FINISHED, RunState.STOPPED) else 1
        time.sleep(every_s)


def _worker(run_dir: Path) -> None:
    from pneumo.runs import backends, jobs
    from pneumo.training.engine import run_training

    run = Run(run_dir.resolve())
    if run.damage:  # on a cluster node that does not see the runs folder, this is what Ray reports
        sys.exit(f"pneumo worker: cannot use the run folder {run.path} on {socket.gethostname()}: {run.damage}")
    run_training(run, verbose=2)
    # Start what waits behind it, of its own backend only: a worker on a Ray node starts no local runs there.
    jobs.schedule(RunStore(run.path.parent), only=backends.of(run).name)


def _list_runs() -> None:
    from pneumo.runs import backends, jobs

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
    print(f"({len(runs)} runs in {store.root}; at most {backends.max_parallel()} train at once here)")
