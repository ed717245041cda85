"""The class board: who joins the ranking, why others are kept apart, and seeds pooled."""

import pandas as pd
import pytest

from pneumo.access import class_user
from pneumo.evaluation import board
from pneumo.files import write_json
from pneumo.runs import jobs
from pneumo.runs.store import RunStore
from tests.conftest import finished_run

OFFICIAL = board.OFFICIAL_TEST


def _results(runs) -> list[board.Result]:
    return [board.result(run, run.predictions()) for run in runs]


def test_only_runs_on_the_official_test_films_are_ranked_with_the_published_results() -> None:
    real = finished_run("real", dataset="/data/chest_xray", test=OFFICIAL, noise=0.1)
    mnist = finished_run("mnist", dataset="pneumoniamnist:28", test=OFFICIAL, noise=0.2)
    drawn = finished_run("drawn", dataset="synthetic", test=OFFICIAL)
    other = finished_run("other", dataset="/data/elsewhere", test=(500, 300))
    ranked, apart = board.table(_results([real, mnist, drawn, other]))
    assert set(ranked["run"]) == {"real", "mnist", *(r.name for r in board.REFERENCES)}
    assert list(ranked["rank"]) == list(range(1, 6))
    assert ranked["AUC"].is_monotonic_decreasing
    reasons = apart.set_index("run")["reason"]
    assert "synthetic" in reasons["drawn"]
    assert "500 test films (300 pneumonia), not the official 624 (390)" in reasons["other"]


def test_with_no_run_on_the_official_test_films_the_table_has_every_column() -> None:
    """The synthetic default: no run is ranked, the published results are, with a run row's columns."""
    real = finished_run("real", dataset="/data/chest_xray", test=OFFICIAL, noise=0.1)
    drawn = finished_run("drawn", dataset="synthetic", test=OFFICIAL)
    alone, apart = board.table(_results([drawn]))
    assert set(alone["run"]) == {r.name for r in board.REFERENCES} and list(apart["run"]) == ["drawn"]
    assert set(alone.columns) == set(board.table(_results([real]))[0].columns)


def test_a_carved_split_is_not_the_official_one_even_with_the_same_counts() -> None:
    run = finished_run("carved", dataset="/data/rsna", test=OFFICIAL)
    write_json(run.file("environment.json"), {"split": "This set has no official split: …"})
    assert "carved" in board.test_set(run, run.predictions()).reason


def test_a_run_is_scored_at_its_saved_threshold() -> None:
    run = finished_run("r", dataset="/data/chest_xray", test=OFFICIAL)
    before = board.result(run, run.predictions())
    assert before.threshold == board.DEFAULT_THRESHOLD and not before.threshold_chosen
    write_json(run.file("threshold.json"), {"value": 0.9, "rule": "manual", "by": "local"})
    after = board.result(run, run.predictions())
    assert after.threshold == 0.9 and after.values["sensitivity"] < before.values["sensitivity"]
    ranked, _ = board.table([after])
    assert ranked.set_index("run").loc["r", "threshold"] == "0.900"


def test_seeds_of_one_experiment_are_pooled_as_mean_and_sd() -> None:
    runs = [finished_run(f"cnn · seed {s}", dataset="/data/chest_xray", seed=s, test=OFFICIAL) for s in range(3)]
    single = finished_run("wider", dataset="/data/chest_xray", test=OFFICIAL, cnn_filters=32)
    results = _results([*runs, single])
    ranked, _ = board.table(results)
    pooled = ranked[ranked["runs"] == 3].iloc[0]
    aucs = pd.Series([r.auc for r in results[:3]])
    assert pooled["AUC"] == pytest.approx(aucs.mean(), abs=1e-3)
    assert pooled["AUC spread"] == f"± {aucs.std():.3f} sd, 3 runs" and pooled["seeds"] == "0, 1, 2"
    assert " ± " in pooled["sensitivity"]
    assert ranked[ranked["run"] == "wider"].iloc[0]["AUC spread"].startswith("95 % CI")
    unpooled, _ = board.table(results, pool_seeds=False)
    assert len(unpooled) == 4 + len(board.REFERENCES)


def test_only_finished_runs_with_other_seeds_are_pooled() -> None:
    """Two students who ran the same settings with the same seed made two experiments; a stopped
    run trained less than the finished ones: neither is a repeat to pool."""
    ann = finished_run("cnn", dataset="/data/chest_xray", seed=0, test=OFFICIAL, owner=class_user("Ann"))
    ben = finished_run("cnn", dataset="/data/chest_xray", seed=0, test=OFFICIAL, owner=class_user("Ben"))
    ben_1 = finished_run("cnn · seed 1", dataset="/data/chest_xray", seed=1, test=OFFICIAL, owner=class_user("Ben"))
    stopped = finished_run("cnn · seed 2", dataset="/data/chest_xray", seed=2, test=OFFICIAL)
    write_json(stopped.file("status.json"), {**stopped.status(), "state": "stopped"})
    ranked, _ = board.table(_results([ann, ben, ben_1, stopped]))
    runs = ranked.dropna(subset=["number"]).set_index("number")
    assert runs.loc[ann.number, "seeds"] == "0" and runs.loc[ann.number, "owner"] == "Ann"
    assert runs.loc[ben.number, "seeds"] == "0, 1" and runs.loc[ben.number, "owner"] == "Ben"  # his own first
    assert runs.loc[stopped.number, "runs"] == 1
    assert len(runs) == 3


def test_comparable_test_sets() -> None:
    a = finished_run("a", dataset="/data/chest_xray", test=OFFICIAL)
    b = finished_run("b", dataset="pneumoniamnist:64", test=OFFICIAL)
    c = finished_run("c", dataset="synthetic", test=(300, 180))
    d = finished_run("d", dataset="synthetic", test=(300, 180), seed=4)
    e = finished_run("e", dataset="synthetic:3", test=(300, 180))
    sets = {run.name: board.test_set(run, run.predictions()) for run in (a, b, c, d, e)}
    assert sets["a"].comparable(sets["b"])  # the same official films, named differently
    assert sets["c"].comparable(sets["d"])  # the same drawn films, other training seed
    assert not sets["c"].comparable(sets["e"]) and not sets["a"].comparable(sets["c"])


def test_repeat_queues_other_seeds_until_there_are_three(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "schedule", lambda store: None)  # queue only: nothing trains here
    store = RunStore()
    first = finished_run("cnn", seed=5)
    queued, refused = jobs.repeat(first, store)
    assert refused is None and sorted(r.config().seed for r in queued) == [6, 7]
    assert [r.name for r in queued] == ["cnn · seed 6", "cnn · seed 7"]
    assert {r.config().settings_key() for r in queued} == {first.config().settings_key()}
    assert jobs.repeat(queued[0], store) == ([], None)  # already three


def test_consecutive_runs_get_different_colours() -> None:
    from pneumo import charts

    runs = [finished_run(str(i)) for i in range(4)]
    numbers = [r.number for r in runs]
    assert numbers == list(range(numbers[0], numbers[0] + 4))
    colors = charts.run_colors({r.id: r.number for r in runs})
    assert len(set(colors.values())) == 4
    # two runs whose numbers share a colour still differ on one chart
    assert len(set(charts.run_colors({"a": 0, "b": len(charts.RUN_COLORS)}).values())) == 2


def test_repeat_stops_at_a_students_run_limit_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    from pneumo.access import Mode, Policy, class_user

    monkeypatch.setattr(jobs, "schedule", lambda store: None)
    ada = class_user("Ada")
    store = RunStore()
    first = finished_run("cnn")
    queued, refused = jobs.repeat(first, store, by=ada, policy=Policy(mode=Mode.CLASS, max_active_runs=1))
    assert len(queued) == 1 and queued[0].owner == ada.id  # the repeat is Ada's, not the original's owner
    assert "You have 1 run queued or training" in refused
