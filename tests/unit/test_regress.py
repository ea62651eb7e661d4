"""Regression detection and the history store, on SYNTHETIC histories and runs.

Every value and run here is made up by the test (seeded), never a measurement.
"""

from __future__ import annotations

import random
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bench.report import commands
from bench.report.regress import RegressionFound, assess, detect
from bench.results.frames import drain_unfinished
from bench.results.history import Figure, History, headline_figures
from bench.results.schema import ResultsError
from bench.results.store import load_run
from tests.unit.synthetic_runs import Spec, make_run, make_runs

SMALL: dict[str, Any] = {
    "kinds": ("send-frequency",),
    "rates": (1000, 10000, 50000),
    "send_modes": ("async",),
    "series_s": 5,
}


def noisy_history(rng: random.Random, n: int = 20, level: float = 1000.0) -> list[float]:
    """Synthetic: ``n`` values of ``level`` with +-3% gaussian noise (sd 3%)."""
    return [level * (1 + rng.gauss(0, 0.03)) for _ in range(n)]


def test_a_20pct_drop_is_flagged() -> None:
    for seed in range(50):
        rng = random.Random(seed)
        a = assess(noisy_history(rng), 800.0, "higher")
        assert a.verdict == "regression", (seed, a)
        assert a.change_pct is not None and -23 < a.change_pct < -17
        assert a.p_value is not None and a.p_value < 1e-4


def test_ordinary_noise_is_not_flagged() -> None:
    flagged = 0
    for seed in range(500):
        rng = random.Random(seed)
        past = noisy_history(rng)
        new = 1000.0 * (1 + rng.gauss(0, 0.03))  # one more draw from the same noise
        flagged += assess(past, new, "higher").verdict != "ok"
    assert flagged == 0


def test_a_latency_increase_is_a_regression_and_a_decrease_an_improvement() -> None:
    past = noisy_history(random.Random(7), level=5000.0)
    assert assess(past, 6500.0, "lower").verdict == "regression"
    assert assess(past, 3500.0, "lower").verdict == "improvement"
    assert assess(past, 1300.0 * 5, "higher").verdict == "improvement"


def test_a_real_but_small_shift_stays_under_the_threshold() -> None:
    # Significant (noise 0.5%) but only 5%: not worth waking anyone.
    rng = random.Random(3)
    past = [1000 * (1 + rng.gauss(0, 0.005)) for _ in range(20)]
    a = assess(past, 950.0, "higher")
    assert a.verdict == "ok" and a.p_value is not None and a.p_value < 1e-6


def test_a_big_move_within_wild_noise_is_not_significant() -> None:
    rng = random.Random(5)
    past = [1000 * (1 + rng.gauss(0, 0.25)) for _ in range(20)]
    assert assess(past, 850.0, "higher").verdict == "ok"


def test_too_little_history_is_not_judged() -> None:
    a = assess([1000.0, 1001.0, 999.0], 500.0, "higher")
    assert (a.verdict, a.n_history) == ("no baseline", 3)


def test_constant_history_leaves_it_to_the_threshold() -> None:
    assert assess([100.0] * 6, 100.0, "higher").verdict == "ok"
    assert assess([100.0] * 6, 95.0, "higher").verdict == "ok"
    assert assess([100.0] * 6, 80.0, "higher").verdict == "regression"


def test_loss_where_there_was_none_is_always_a_regression() -> None:
    a = assess([0.0, 0.0], 3.0, "lower", correctness=True)
    assert a.verdict == "regression"


# -- the history file ---------------------------------------------------------------------------


def test_history_append_is_idempotent_and_refuses_synthetic(tmp_path: Path) -> None:
    run = load_run(make_run(tmp_path / "runs", Spec(**SMALL)))
    with History(tmp_path / "h.sqlite") as h:
        with pytest.raises(ResultsError, match="synthetic"):
            h.append_run(run)
        n = h.append_run(run, allow_synthetic=True)
        assert n == len(headline_figures(run)) > 0
        assert h.append_run(run, allow_synthetic=True) == 0
        fig = headline_figures(run)[0]
        got = h.series(fig.scenario, fig.broker, fig.step_key, fig.metric)
        assert [(g.run_id, g.value, g.git_rev) for g in got] == [
            (run.run_id, fig.value, "0123456789abcdef0123456789abcdef01234567")
        ]


def test_history_keeps_kill_repetitions_as_one_mean(tmp_path: Path) -> None:
    run = load_run(
        make_run(
            tmp_path / "runs",
            Spec(
                kinds=("kill-9-recovery",),
                kill_reps=3,
                kill_points=(("direct", "manual"),),
                series_s=5,
            ),
        )
    )
    figs = {(f.broker, f.metric): f for f in headline_figures(run)}
    f = figs[("pulsar", "unavailability_s")]
    assert f.n == 3 and f.step_key == "pulsar-path=direct-restart=manual-session_timeout_ms=30000"
    steps = run.steps[run.steps["broker"] == "pulsar"]
    assert f.value == pytest.approx(steps["unavailability_s"].mean())


def test_an_unfinished_drain_puts_no_loss_figure_into_the_history(tmp_path: Path) -> None:
    # Its "lost" is an upper bound: in the history it would read as a loss next to nights
    # that lost none (a real nightly run flagged 207 "lost" that had simply not arrived yet).
    spec = Spec(kinds=("kill-9-recovery",), kill_reps=1, kill_points=(("direct", "manual"),))
    drained = load_run(make_run(tmp_path / "a", spec))
    undrained = load_run(
        make_run(tmp_path / "b", replace(spec, undrained_kinds=("kill-9-recovery",)))
    )
    assert {f.metric for f in headline_figures(drained)} >= {"loss.lost", "loss.duplicated"}
    metrics = {f.metric for f in headline_figures(undrained)}
    assert "unavailability_s" in metrics
    assert not any(m.startswith("loss.") for m in metrics)
    # Runs made before drain_complete existed say it in the error only.
    legacy = undrained.steps.drop(columns=["drain_complete"])
    assert drain_unfinished(legacy).all() and drain_unfinished(undrained.steps).all()
    assert not drain_unfinished(drained.steps).any()


def test_history_refuses_unknown_schema(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    History(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value='9' WHERE key='schema_version'")
    with pytest.raises(ResultsError, match="schema_version 9 is not understood"):
        History(path)
    (tmp_path / "junk.sqlite").write_text("not a database at all" * 100)
    with pytest.raises(ResultsError, match="not a usable history"):
        History(tmp_path / "junk.sqlite")


def test_detect_against_a_history_of_runs(tmp_path: Path) -> None:
    # 1.5% noise: the test is about the plumbing (history, keys, directions); the statistics
    # behaviour at 3% noise is covered above over many seeds.
    past = make_runs(tmp_path / "past", 8, noise_pct=1.5, **SMALL)
    with History(tmp_path / "h.sqlite") as h:
        for p in past:
            h.append_run(load_run(p), allow_synthetic=True)
        t_next = 1_795_000_000.0 + 9 * 86_400
        same = load_run(
            make_run(tmp_path / "same", Spec(seed=99, noise_pct=1.5, t0=t_next, **SMALL))
        )
        findings, unjudged = detect(h, same)
        assert unjudged == 0
        assert [f for f in findings if f.verdict == "regression"] == []
        worse = load_run(
            make_run(
                tmp_path / "worse", Spec(seed=98, noise_pct=1.5, t0=t_next, tps_factor=0.8, **SMALL)
            )
        )
        findings, _ = detect(h, worse)
    regressed = {(f.broker, f.step_key, f.metric) for f in findings if f.verdict == "regression"}
    tps_keys = {
        (f.broker, f.step_key, f.metric)
        for f in headline_figures(worse)
        if f.metric in ("publish_tps", "consume_tps")
    }
    assert regressed == tps_keys
    assert all("REGRESSION" in f.describe() for f in findings if f.verdict == "regression")


# -- bench nightly ------------------------------------------------------------------------------


def test_nightly_appends_reports_and_exits_3_on_regression(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    history = tmp_path / "h.sqlite"
    with History(history) as h:  # a synthetic baseline of 6 nights
        for p in make_runs(tmp_path / "past", 6, noise_pct=1.0, **SMALL):
            h.append_run(load_run(p), allow_synthetic=True)
    specs = iter(
        [
            Spec(seed=50, noise_pct=1.0, t0=1_796_000_000.0, **SMALL),
            Spec(seed=51, noise_pct=1.0, t0=1_796_100_000.0, tps_factor=0.75, **SMALL),
        ]
    )
    calls: list[dict[str, object]] = []

    def fake_run_scenarios(paths: list[Path], **kw: object) -> Path:
        calls.append({"paths": paths, **kw})
        return make_run(Path(str(kw["out_dir"])), next(specs))

    import bench.runner.api

    monkeypatch.setattr(bench.runner.api, "run_scenarios", fake_run_scenarios)
    real_append = History.append_run
    monkeypatch.setattr(
        History, "append_run", lambda self, run, **kw: real_append(self, run, allow_synthetic=True)
    )
    scenario = tmp_path / "s.yaml"
    scenario.write_text("synthetic: true\n")
    args = [
        "--scenario",
        str(scenario),
        "--out-dir",
        str(tmp_path / "runs"),
        "--history",
        str(history),
        "--report",
        str(tmp_path / "nightly.html"),
    ]

    ok = CliRunner().invoke(commands.nightly_cmd, args)
    assert ok.exit_code == 0, ok.output
    assert calls[0]["brokers"] is None and calls[0]["profile"] == "quick"
    assert "0 without enough history yet" in ok.output
    assert (tmp_path / "nightly.html").exists()

    bad = CliRunner().invoke(commands.nightly_cmd, args)
    assert isinstance(bad.exception, RegressionFound)
    assert bad.exception.exit_code == 3
    assert "REGRESSION: send-frequency" in bad.output
    html = (tmp_path / "nightly.html").read_text()
    assert "Regressions against the history" in html
    with History(history) as h:
        assert len(list(h.runs())) == 8  # both nights appended, regression or not


def test_nightly_without_runner_entry_point_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bench.runner.api

    monkeypatch.delattr(bench.runner.api, "run_scenarios")
    scenario = tmp_path / "s.yaml"
    scenario.write_text("x: 1\n")
    result = CliRunner().invoke(commands.nightly_cmd, ["--scenario", str(scenario)])
    assert "bench.runner.api.run_scenarios is not available" in str(result.exception)


def test_history_add_for_imports(tmp_path: Path) -> None:
    with History(tmp_path / "h.sqlite") as h:
        for i, v in enumerate([1.0, 2.0, 3.0]):
            h.add(Figure(f"r{i}", float(i), "rev", "s", "pulsar", "k", "publish_tps", v, 1))
        got = h.series("s", "pulsar", "k", "publish_tps", limit=2)
        assert [g.value for g in got] == [2.0, 3.0]  # the last two, oldest first
        assert [g.value for g in h.series("s", "pulsar", "k", "publish_tps", before=1.5)] == [
            1.0,
            2.0,
        ]
