"""The HTML report, rendered from SYNTHETIC run directories (tests/unit/synthetic_runs.py).

The runs are test fixtures with known answers, written through the real store; nothing here
is a measurement.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner

from bench.errors import ConfigError
from bench.report import html as report_html
from bench.report.commands import report_cmd
from bench.report.recommend import (
    Figure,
    Settings,
    decide,
    find_knee,
    find_saturation,
    load_settings,
    recommend,
)
from bench.report.recommend.steps import _outage
from bench.report.sections import kill_recovery
from bench.results import frames
from bench.results.store import load_run
from tests.unit.synthetic_runs import Spec, make_run, make_runs

# Small sweeps keep rendering fast; the shapes (knee, saturation, outage) are those of the
# full-size fixture.
SMALL: dict[str, Any] = {
    "topic_counts": (1000, 10000, 20000, 50000),
    "rates": (1000, 10000, 30000, 50000),
    "fanouts": (1, 4, 16),
    "churns": (1, 10),
    "kill_reps": 2,
    "kill_points": (("direct", "supervised"),),
    "send_modes": ("async", "oneway"),
    "series_s": 40,
}
HOSTILE = "<script>alert('x')</script>"


def render(runs: list[Path], out: Path, settings: Settings | None = None) -> str:
    return report_html.render_report(runs, out, settings).read_text()


@pytest.fixture(scope="module")
def clear_runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three repetitions, 2% noise: every dimension has a clear answer."""
    return make_runs(tmp_path_factory.mktemp("clear"), 3, noise_pct=2.0, **SMALL)


@pytest.fixture(scope="module")
def clear_html(clear_runs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> str:
    return render(clear_runs, tmp_path_factory.mktemp("out") / "report.html")


def test_both_brokers_and_every_section(clear_html: str) -> None:
    assert clear_html.count("Pulsar") > 10 and clear_html.count("RocketMQ") > 10
    for heading in (
        "Topic growth: topic-growth",
        "Send frequency: send-frequency",
        "Subscribe frequency: subscribe-frequency",
        "kill -9 recovery: kill-9-recovery",
        "What the data cannot decide" if "cannot decide" in clear_html else "Recommendation",
        "Environment",
        "All steps",
    ):
        assert heading in clear_html
    # One inline SVG per chart, nothing fetched from anywhere.
    figures = clear_html.count('<figure class="chart"')
    assert figures >= 6
    assert clear_html.count("<svg") == figures
    assert not re.search(r"<(script|link|img|iframe)\b", clear_html)
    assert "url(http" not in clear_html and "@import" not in clear_html


def test_knee_and_saturation_are_marked(clear_html: str) -> None:
    assert "knee: 20,000 topics" in clear_html  # Pulsar falls past 20k (in the SVG)
    assert "Pulsar: knee at 20,000 topics" in clear_html
    assert "RocketMQ [python]: no knee up to 50,000 topics" in clear_html
    assert "saturation: " in clear_html
    assert "kill -9" in clear_html and "restart" in clear_html


def test_environment_and_synthetic_banner(clear_html: str) -> None:
    for text in (
        "4.0.8",
        "5.3.3",
        "ASYNC_FLUSH",
        "synthetic-host",
        "scenarios/topic-growth.yaml",
        "0123456789ab",
        "defaultNumberOfNamespaceBundles",
    ):
        assert text in clear_html
    assert 'data-warning="error">Run 20261123-000000-000001 is synthetic' in clear_html


def test_recommendation_names_the_better_broker_for_clear_data(clear_runs: list[Path]) -> None:
    steps = frames.concat([load_run(r).steps for r in clear_runs])
    rec = recommend(steps)
    by = {d.dimension: d for d in rec.dimensions}
    assert (by["topic_growth"].outcome, by["topic_growth"].winner) == ("better", "rocketmq")
    assert "RocketMQ did better" in by["topic_growth"].text
    assert "2.50x higher" in by["topic_growth"].text  # 50,000 vs 20,000 topics
    assert (by["send_frequency"].winner, by["recovery"].winner) == ("pulsar", "pulsar")
    assert by["subscribe_frequency"].winner == "rocketmq"
    assert "beyond the noise over 3 and 3 repetitions" in by["send_frequency"].text
    assert rec.winner is None and "level" in rec.text  # 2 dimensions each at weight 1


def test_weights_decide_the_overall_recommendation(clear_runs: list[Path], tmp_path: Path) -> None:
    wfile = tmp_path / "weights.yaml"
    wfile.write_text("weights: {recovery: 3, topic_growth: 1}\ntie_pct: 4\n")
    settings = load_settings(wfile)
    assert settings.weights["recovery"] == 3 and settings.tie_pct == 4
    steps = frames.concat([load_run(r).steps for r in clear_runs])
    text = recommend(steps, settings=settings).text
    assert text == (
        "Pulsar is recommended on the weighted criteria: Pulsar 4, RocketMQ 2 of 6 "
        f"(weights from {wfile})."
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("weights: {speed: 1}", "unknown dimension 'speed'"),
        ("weights: {recovery: -1}", "recovery must be a number >= 0"),
        (
            "weights: {recovery: 0, topic_growth: 0, send_frequency: 0, subscribe_frequency: 0}",
            "add up to 0",
        ),
        ("colour: red", "unknown key"),
        ("[1, 2]", "must be a mapping"),
        ("weights: {recovery: [", "not valid"),
    ],
)
def test_bad_weights_file(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "w.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        load_settings(f)
    assert str(f) in str(err.value)


def test_noisy_data_cannot_decide(tmp_path: Path) -> None:
    runs = make_runs(
        tmp_path,
        3,
        noise_pct=30.0,
        advantage=0.1,
        kinds=("send-frequency", "subscribe-frequency"),
        **SMALL,
    )
    steps = frames.concat([load_run(r).steps for r in runs])
    rec = recommend(steps)
    by = {d.dimension: d for d in rec.dimensions}
    # Consume TPS at 16 subscriptions varies by ~30% between repetitions: within 2 standard
    # errors of each other, so the data cannot say which broker is better.
    assert by["subscribe_frequency"].outcome == "undecided"
    assert "too noisy" in by["subscribe_frequency"].text
    assert by["topic_growth"].text == "Cannot decide: no steps of this kind in the runs."
    html = render(runs, tmp_path / "r.html")
    assert "cannot decide" in html and "Cannot decide" in html and "too noisy" in html
    assert "Unstable:" in html  # the per-figure warning


def test_one_repetition_small_difference_is_too_few(tmp_path: Path) -> None:
    a, b = Figure("pulsar", [100.0]), Figure("rocketmq", [112.0])
    v = decide("x", "higher", a, b, Settings())
    assert v.outcome == "undecided" and "too few repetitions" in v.reason
    v = decide("x", "higher", a, Figure("rocketmq", [200.0]), Settings())
    assert (v.outcome, v.winner, v.caveat) == (
        "better",
        "rocketmq",
        "one repetition: the spread was not measured",
    )
    assert decide("x", "higher", a, Figure("rocketmq", [102.0]), Settings()).outcome == "tie"
    v = decide(
        "lost",
        "lower",
        Figure("pulsar", [0.0, 0.0]),
        Figure("rocketmq", [0.0, 5.0]),
        Settings(),
        zero_is_decisive=True,
    )
    assert (v.outcome, v.winner) == ("better", "pulsar")


def test_missing_broker_partial_run_and_send_errors_are_warned(tmp_path: Path) -> None:
    run = make_run(
        tmp_path,
        Spec(
            brokers=("pulsar",),
            status="partial",
            send_errors_kinds=("send-frequency",),
            failed_steps=("pulsar-fanout=4",),
            **SMALL,
        ),
    )
    html = render([run], tmp_path / "r.html")
    assert "run(s) did not finish" in html and " is partial" in html
    assert re.search(r"\d+ step\(s\) not clean: send errors\.", html)
    assert "1 step(s) not clean: failed." in html
    assert "subscribe-frequency/pulsar-fanout=4: failed" in html
    assert "No RocketMQ steps: nothing to compare with." in html
    assert "no data for RocketMQ" in html
    assert "kill -9 step(s) had send errors" not in html


def test_errors_make_a_figure_undecidable(tmp_path: Path) -> None:
    run = make_run(tmp_path, Spec(send_errors_kinds=("send-frequency",), **SMALL))
    rec = recommend(load_run(run).steps)
    send = next(d for d in rec.dimensions if d.dimension == "send_frequency")
    assert send.outcome == "undecided" and "send errors" in send.text


def test_names_from_files_are_escaped(tmp_path: Path) -> None:
    run = make_run(
        tmp_path,
        Spec(
            scenario_names={"topic-growth": HOSTILE, "kill-9-recovery": "k9" + HOSTILE},
            group_suffix="-topic=" + HOSTILE,
            **SMALL,
        ),
    )
    html = render([run], tmp_path / "r.html")
    assert "<script" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "Topic growth: &lt;script&gt;" in html
    # The chart title inside the SVG is escaped by matplotlib.
    assert "&lt;script&gt;alert(" in html.split("<svg", 1)[1]


def test_autoescape_is_on() -> None:
    env = report_html.environment()
    assert env.autoescape is True
    assert env.from_string("{{ x }}").render(x="<b>") == "&lt;b&gt;"


def test_find_knee() -> None:
    x = [1000, 5000, 10000, 20000, 50000]
    assert find_knee(x, [100, 101, 99, 80, 40]) is not None
    knee = find_knee(x, [100, 101, 99, 80, 40])
    assert knee is not None and (knee.x, knee.drop_x) == (10000, 20000)
    assert find_knee(x, [100, 95, 93, 92, 91]) is None  # never 10% below the best
    assert find_knee(list(reversed(x)), [40, 80, 99, 101, 100]) == knee  # order-free
    assert find_knee(x, [100, None, 99, 50, None]) is not None


def test_find_saturation() -> None:
    sat = find_saturation([1000, 2000, 4000, 8000], [1000, 1990, 3000, 3100])
    assert sat is not None and (sat.offered, sat.achieved, sat.max_achieved) == (4000, 3000, 3100)
    sat = find_saturation([1000, 2000], [1000, 2000], [False, True])
    assert sat is not None and sat.offered == 2000  # the runner's flag wins
    sat = find_saturation([1000, 2000], [1000, 2000])
    assert sat is not None and sat.offered is None and sat.max_achieved == 2000
    assert find_saturation([], []) is None


def test_report_command(tmp_path: Path) -> None:
    run = make_run(tmp_path / "runs", Spec(kinds=("subscribe-frequency",), **SMALL))
    out = tmp_path / "sub" / "r.html"
    result = CliRunner().invoke(report_cmd, [str(run), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote {out} from 1 run(s)" in result.output
    assert out.read_text().startswith("<!DOCTYPE html>")
    result = CliRunner().invoke(report_cmd, [str(tmp_path), "-o", str(out)])
    assert result.exit_code != 0
    assert "run.json: missing" in str(result.exception)


def test_exclude_leaves_one_brokers_steps_of_a_run_out_and_says_so(tmp_path: Path) -> None:
    run = make_run(tmp_path / "runs", Spec(kinds=("subscribe-frequency",), **SMALL))
    run_id = load_run(run).run_id
    out = tmp_path / "r.html"
    args = [str(run), "-o", str(out), "--exclude", f"{run_id}:rocketmq:subscribe-frequency"]
    result = CliRunner().invoke(report_cmd, args)
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert "rocketmq&#39;s steps of subscribe-frequency left out of this report" in html
    kept = report_html.without_steps(load_run(run), "rocketmq")
    assert set(kept.steps["broker"]) == {"pulsar"} and set(kept.series["broker"]) == {"pulsar"}
    assert all(r["broker"] == "pulsar" for r in kept.step_records)
    for bad, says in (
        (f"{run_id}:kafka", "unknown broker 'kafka'"),
        ("just-one-part", "expected RUN_ID:BROKER"),
    ):
        result = CliRunner().invoke(report_cmd, [str(run), "-o", str(out), "--exclude", bad])
        assert result.exit_code == 2 and says in result.output, result.output
    # A step-id glob leaves out only the matching steps (and their series).
    one = report_html.without_steps(load_run(run), "pulsar", "subscribe-frequency", "*fanout=1")
    assert "pulsar-fanout=1" not in {r["step_id"] for r in one.step_records}
    assert {r["step_id"] for r in one.step_records} == {
        r["step_id"] for r in load_run(run).step_records
    } - {"pulsar-fanout=1"}
    assert "pulsar-fanout=1" not in set(one.series["step_id"]) and len(one.series)
    assert "matching *fanout=1 left out" in one.warnings[-1]
    glob_arg = f"{run_id}:pulsar:subscribe-frequency:*fanout=1"
    result = CliRunner().invoke(report_cmd, [str(run), "-o", str(out), "--exclude", glob_arg])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(report_cmd, [str(run), "-o", str(out), "--exclude", "other:pulsar"])
    assert result.exit_code != 0 and "not among RUN_DIRS" in str(result.exception)


def test_client_bound_maximum_is_a_floor_not_a_decision(tmp_path: Path) -> None:
    # Pulsar's curve flattens where our workers ran out of CPU; RocketMQ's where the broker did.
    spec = Spec(client_bound_from={"pulsar": 30000, "rocketmq": 1e9}, **SMALL)
    run = make_run(tmp_path, spec)
    rec = recommend(load_run(run).steps)
    send = next(d for d in rec.dimensions if d.dimension == "send_frequency")
    assert send.outcome == "undecided"
    assert "client-bound" in send.text
    # Pulsar's maximum is where our client was bound: no broker-bound figure for it
    assert "no Pulsar data for this figure: no step saturated the broker" in send.text
    html = render([run], tmp_path / "r.html")
    assert "limited by" in html and "our client" in html
    table = html[html.index("Saturation and TPS limit") :]
    rows = table[: table.index("</table>")]
    assert rows.count("our client") == 1  # Pulsar's async curve
    assert rows.count("<td>broker</td>") == 2  # RocketMQ's async and oneway curves


@pytest.mark.parametrize(
    ("bound", "compared"),
    [
        ({"pulsar": ("async",), "rocketmq": ("sync", "oneway")}, None),
        ({"pulsar": ("async",), "rocketmq": ("async", "oneway")}, "sync"),
        ({"pulsar": (), "rocketmq": ()}, "async"),
        # Both saturate only with a new connection per batch: connection set-up, not capacity.
        (
            {
                "pulsar": ("async-shared", "sync-shared"),
                "rocketmq": ("async-shared", "sync-shared"),
            },
            "per_batch",
        ),
    ],
)
def test_broker_bound_maxima_are_compared_in_one_send_mode(
    tmp_path: Path, bound: dict[str, tuple[str, ...]], compared: str | None
) -> None:
    # Pulsar saturates the broker only with sync sends, RocketMQ only with async ones: the two
    # maxima measure different things (sender concurrency over the round trip vs throughput).
    spec = {**SMALL, "send_modes": ("async", "sync", "oneway")}
    conns = ("shared", "per_batch") if compared == "per_batch" else ("shared",)
    run = make_run(tmp_path, Spec(client_bound_modes=bound, connection_modes=conns, **spec))
    dims = {d.dimension: d for d in recommend(load_run(run).steps).dimensions}
    (top,) = [v for v in dims["send_frequency"].verdicts if "broker-bound maximum" in v.criterion]
    if compared == "per_batch":
        assert top.outcome == "undecided"
        assert "no Pulsar data for this figure: no step saturated the broker" in top.reason
    elif compared is None:
        assert top.outcome == "undecided"
        assert "only with send=sync, connections=shared" in top.reason
        assert "only with send=async, connections=shared" in top.reason
        assert "no send mode over shared connections in which both were" in top.reason
    else:
        assert top.outcome != "undecided", top.reason
        details = [f.detail for f in top.figures.values()]
        assert all(f"send={compared}-" in d for d in details), details


def test_runs_without_the_client_bound_metric_still_decide(tmp_path: Path) -> None:
    run = make_run(tmp_path, Spec(**SMALL))
    send = next(
        d for d in recommend(load_run(run).steps).dimensions if d.dimension == "send_frequency"
    )
    assert "client-bound" not in send.text
    html = render([run], tmp_path / "r.html")
    table = html[html.index("Saturation and TPS limit") :]
    assert "our client" not in table[: table.index("</table>")]


def test_an_unfinished_drain_does_not_void_publish_side_figures(tmp_path: Path) -> None:
    # Consumers that cannot keep up leave the publish TPS, lookups and creation figures intact.
    run = make_run(tmp_path, Spec(undrained_kinds=("topic-growth", "send-frequency"), **SMALL))
    dims = {d.dimension: d for d in recommend(load_run(run).steps).dimensions}
    for name in ("topic_growth", "send_frequency"):
        assert dims[name].outcome != "undecided", dims[name].text
        assert "steps with errors" not in dims[name].text


def test_send_errors_still_void_publish_side_figures(tmp_path: Path) -> None:
    spec = Spec(undrained_kinds=("topic-growth",), send_errors_kinds=("topic-growth",), **SMALL)
    dims = {d.dimension: d for d in recommend(load_run(make_run(tmp_path, spec)).steps).dimensions}
    assert dims["topic_growth"].outcome == "undecided"
    assert "send errors" in dims["topic_growth"].text


@pytest.mark.parametrize(
    ("batches", "comparable"),
    [({"pulsar": 1, "rocketmq": 100}, False), ({"pulsar": 1, "rocketmq": 1}, True), ({}, True)],
)
def test_creation_rates_are_compared_only_at_the_same_batch_size(
    tmp_path: Path, batches: dict[str, int], comparable: bool
) -> None:
    run = make_run(tmp_path, Spec(create_batch=batches, **SMALL))
    dims = {d.dimension: d for d in recommend(load_run(run).steps).dimensions}
    (creation,) = [v for v in dims["topic_growth"].verdicts if "topic-creation" in v.criterion]
    if comparable:
        assert creation.outcome != "undecided", creation.reason
    else:
        assert creation.outcome == "undecided"
        assert "created 100 topic(s) per request" in creation.reason
        assert "not comparable" in creation.reason


def test_a_broker_that_stops_creating_topics_is_measured_up_to_where_it_stopped(
    tmp_path: Path,
) -> None:
    # RocketMQ refuses more topics at 30,000 (the synthetic Pulsar's TPS knee is at 20,000).
    run = make_run(tmp_path, Spec(create_stops_at={"rocketmq": 30000}, **SMALL))
    steps = load_run(run).steps
    broke = steps[steps["create_stopped"].notna()]
    assert list(broke["status"]) == ["failed"]
    tg = next(d for d in recommend(steps).dimensions if d.dimension == "topic_growth")
    knee = tg.verdicts[0]
    assert knee.outcome != "undecided", knee.reason
    assert knee.figures["rocketmq"].values == [30000.0]  # where it broke off, not its target
    html = render([run], tmp_path / "r.html")
    assert "topic creation stopped at 30,000 topics" in html


def test_runs_table_gives_the_commit_and_a_partial_profile() -> None:
    md = {
        "profile": "full",
        "only": {"restart_policy": ["supervised"], "path": ["direct", "proxy"]},
        "git": {"commit": "4f34a290bf9fafcf66972d17ee2ad8bc7d721e65", "dirty": True},
    }
    assert (
        report_html._profile_cell(md) == "full (only restart_policy=supervised, path=direct|proxy)"
    )
    assert report_html._git_cell(md) == "4f34a290bf9f+dirty"
    assert report_html._profile_cell({"profile": "quick", "only": {}}) == "quick"
    assert report_html._git_cell({"git": {"commit": "abc", "dirty": False}}) == "abc"
    assert report_html._git_cell({}) == "-"


def test_an_outage_longer_than_its_step_shows_and_decides_as_a_lower_bound() -> None:
    def get(key: str, r: dict[str, Any]) -> str:
        return str(r.get(key))

    censored = {"unavailability_s": None, "unavailability_at_least_s": 37.5}
    assert kill_recovery._outage_cell(censored, lambda k: get(k, censored)) == ">= 37.5"
    measured = {"unavailability_s": 9.2, "unavailability_at_least_s": None}
    assert kill_recovery._outage_cell(measured, lambda k: get(k, measured)) == "9.2"
    df = pd.DataFrame(
        {"unavailability_s": [9.2, None, None], "unavailability_at_least_s": [None, 37.5, None]}
    )
    assert _outage(df, "unavailability_s").tolist()[:2] == [9.2, 37.5]
    assert pd.isna(_outage(df, "unavailability_s").tolist()[2])
    assert pd.isna(_outage(pd.DataFrame({"unavailability_s": [None]}), "unavailability_s")[0])


def test_the_same_runs_give_the_same_report(tmp_path: Path) -> None:
    # Committed reports are compared by diff: nothing but the header's generation line may move.
    run = make_run(tmp_path / "runs", Spec(kinds=("send-frequency",), **SMALL))
    first = render([run], tmp_path / "a.html")
    second = render([run], tmp_path / "b.html")
    generated = re.compile(r"Generated .*?</")
    assert generated.sub("", first) == generated.sub("", second)
