"""The results store: append-only run directories, a strict step contract, safe reading back.

The records here are synthetic test data written to exercise the store, not measurements.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from bench.errors import RunInterrupted
from bench.metrics import histograms as H
from bench.results import schema
from bench.results.frames import point_key
from bench.results.store import RunWriter, load_run, redact
from bench.scenarios import model

T0 = 1_795_000_000.0


def step(**over: Any) -> dict[str, Any]:
    """A valid send-frequency step record (synthetic)."""
    rec: dict[str, Any] = {
        "step_id": "pulsar-sweep-send=async-conn=shared-rate=1000",
        "scenario": "send-frequency",
        "kind": "send-frequency",
        "profile": "quick",
        "broker": "pulsar",
        "topology": "standalone",
        "index": 0,
        "group": "pulsar-sweep-send=async-conn=shared-rate=1000",
        "params": {"rate_per_s": 1000.0, "send_mode": "async"},
        "status": "ok",
        "error": None,
        "started_at": T0,
        "ended_at": T0 + 60,
        "window": {"start": T0 + 10, "end": T0 + 60},
        "metrics": {
            "offered_rate_per_s": 1000.0,
            "publish_tps": 998.5,
            "send_errors": 0,
            "errors_by_kind": {"Timeout": 0},
            "publish_latency_us": {
                "p50": 800,
                "p90": 1500,
                "p99": 4000,
                "p999": 9000,
                "max": 12000,
                "count": 50_000,
                "min": 90,
                "mean": 950.5,
            },
            "send_mode": "async",
            "saturated": False,
        },
        "loss": {
            "acked": 50_000,
            "received": 50_000,
            "lost": 0,
            "duplicated": 0,
            "received_not_acked": 0,
            "reordered": 0,
        },
    }
    rec.update(over)
    return rec


def series_row(t: float, **over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "scenario": "send-frequency",
        "step_id": step()["step_id"],
        "broker": "pulsar",
        "t": t,
        "elapsed_s": t - T0,
        "sent": 1000,
        "acked": 999,
        "send_errors": 0,
        "received": 999,
        "publish_p50_us": 800,
        "publish_p99_us": 4000,
        "e2e_p99_us": 6000,
        "phase": "measure",
    }
    row.update(over)
    return row


@pytest.fixture
def writer(tmp_path: Path) -> RunWriter:
    return RunWriter.create(tmp_path / "runs", {"profile": "quick", "git_revision": "abc"}, now=T0)


def test_create_writes_run_json_and_refuses_to_overwrite(tmp_path: Path) -> None:
    w = RunWriter.create(tmp_path / "runs", {"profile": "quick"}, now=T0)
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", w.run_id)
    assert w.run_dir == tmp_path / "runs" / w.run_id
    doc = json.loads((w.run_dir / "run.json").read_text())
    assert doc["schema_version"] == 1
    assert doc["status"] == "running"
    assert (doc["run_id"], doc["started_at"], doc["ended_at"]) == (w.run_id, T0, None)
    for name in ("steps.jsonl", "series.jsonl", "resources.jsonl", "events.jsonl"):
        assert (w.run_dir / name).exists()
    with pytest.raises(schema.ResultsError, match="already exists; refusing to overwrite"):
        RunWriter.create(tmp_path / "runs", {}, run_id=w.run_id)


def test_step_is_readable_at_once_and_flattened(writer: RunWriter) -> None:
    writer.write_step(step())
    # Not finished: a reader (or a crash) sees the step already.
    run = load_run(writer.run_dir)
    assert run.status == "running"
    assert any("marked running" in w for w in run.warnings)
    row = run.steps.iloc[0]
    assert row["publish_latency_us.p99"] == 4000
    assert row["publish_tps"] == 998.5
    assert row["params.rate_per_s"] == 1000.0
    assert row["loss.lost"] == 0
    assert row["window.start"] == T0 + 10
    assert row["errors_by_kind.Timeout"] == 0
    assert row["run_id"] == writer.run_id
    assert row["point"] == step()["step_id"]
    assert run.step_records[0]["metrics"]["publish_latency_us"]["p99"] == 4000
    # Every line says which run and schema it belongs to.
    line = json.loads((writer.run_dir / "steps.jsonl").read_text().splitlines()[0])
    assert (line["schema_version"], line["run_id"]) == (1, writer.run_id)


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"status": "great"}, "status 'great' is not one of"),
        ({"broker": "kafka"}, "broker 'kafka'"),
        ({"index": True}, "index must be int"),
        ({"status": "failed", "error": None}, "must say why"),
        ({"window": {"start": T0 + 9, "end": T0}}, "window ends"),
        ({"metrics": {"publish_tps": "fast"}}, "publish_tps must be a finite number"),
        ({"metrics": {"topic_count": 5}}, "unknown metric for kind 'send-frequency'"),
        ({"metrics": {"e2e_latency_us": {"p50": 1}}}, "latency summary needs exactly"),
        ({"metrics": {"sent": 1.5}}, "sent must be an integer"),
        ({"loss": {"lost": 0}}, "missing key"),
        ({"extra": 1}, "unexpected key"),
    ],
)
def test_write_step_validates(writer: RunWriter, over: dict[str, Any], message: str) -> None:
    rec = step(**over)
    with pytest.raises(schema.ResultsError, match=message):
        writer.write_step(rec)
    assert (writer.run_dir / "steps.jsonl").read_text() == ""


def test_missing_key_is_named(writer: RunWriter) -> None:
    rec = step()
    del rec["window"]
    with pytest.raises(schema.ResultsError, match="missing key\\(s\\) window"):
        writer.write_step(rec)


def test_non_finite_metric_is_stored_as_not_measured(writer: RunWriter) -> None:
    rec = step()
    rec["metrics"]["broker_cpu_pct"] = float("nan")
    writer.write_step(rec)
    assert load_run(writer.run_dir).step_records[0]["metrics"]["broker_cpu_pct"] is None


def test_same_step_twice_is_refused_but_same_id_in_another_scenario_is_not(
    writer: RunWriter,
) -> None:
    writer.write_step(step())
    with pytest.raises(schema.ResultsError, match="already written"):
        writer.write_step(step())
    # Two kill-9 files expand to the same step ids: steps are keyed by (scenario, step_id).
    writer.write_step(step(scenario="send-frequency-copy"))
    assert len(load_run(writer.run_dir).steps) == 2


def test_context_manager_marks_complete_partial_failed(tmp_path: Path) -> None:
    with RunWriter.create(tmp_path, {}) as w:
        w.write_step(step())
    assert load_run(w.run_dir).status == "complete"

    for exc, status, kind in (
        (KeyboardInterrupt(), "partial", "interrupted"),
        (RunInterrupted("stop"), "partial", "interrupted"),
        (RuntimeError("boom"), "failed", "error"),
    ):
        with pytest.raises(type(exc)), RunWriter.create(tmp_path, {}) as w:
            w.write_step(step())
            raise exc
        run = load_run(w.run_dir)
        assert run.status == status
        assert run.meta["ended_at"] is not None
        assert list(run.events["kind"]) == [kind]
        assert len(run.steps) == 1  # finished steps are kept


def test_finished_run_refuses_steps_but_takes_late_events(writer: RunWriter) -> None:
    writer.finish("complete")
    with pytest.raises(schema.ResultsError, match="already finished"):
        writer.write_step(step())
    with pytest.raises(schema.ResultsError, match="already finished"):
        writer.finish("failed")
    writer.event("interrupted", detail="cleanup after the mark")
    ev = load_run(writer.run_dir).events
    assert ev.iloc[0]["detail"] == {"message": "cleanup after the mark"}


def test_series_resources_events(writer: RunWriter) -> None:
    writer.write_series([series_row(T0 + 2), series_row(T0 + 1, phase="warmup")])
    with pytest.raises(schema.ResultsError, match="phase 'cooldown'"):
        writer.write_series([series_row(T0, phase="cooldown")])
    with pytest.raises(schema.ResultsError, match="missing key"):
        writer.write_series([{"t": T0}])
    writer.write_resources(
        [
            {
                "kind": "host",
                "ts_ns": int(T0 * 1e9),
                "name": "host",
                "net_bytes_per_s": 5.0,
                "net_if_bytes_per_s": {"lo": 5.0},
            },
            {"kind": "process", "t": T0, "name": "pulsar-broker", "cpu_percent": 50.0},
        ]
    )
    with pytest.raises(schema.ResultsError, match="needs a 'name'"):
        writer.write_resources([{"t": T0}])
    writer.event("kill", t=T0 + 5, step_id="s", broker="pulsar", process="standalone")
    with pytest.raises(schema.ResultsError, match="kind 'explode'"):
        writer.event("explode")
    run = load_run(writer.run_dir)
    assert list(run.series["phase"]) == ["warmup", "measure"]  # sorted by time
    assert run.resources.loc[0, "net_if_bytes_per_s.lo"] == 5.0
    assert run.resources.loc[0, "t"] == pytest.approx(T0)
    e = run.events.iloc[0]
    assert (e["kind"], e["step_id"], e["detail"]) == ("kill", "s", {"process": "standalone"})


def test_histograms_round_trip(writer: RunWriter) -> None:
    h = H.new_histogram()
    for v in (100, 200, 300):
        H.record(h, v)
    path = writer.write_histograms("send-frequency", step()["step_id"], {"publish": H.encode(h)})
    assert path == writer.run_dir / "histograms" / "send-frequency" / f"{step()['step_id']}.json"
    doc = json.loads(path.read_text())
    assert (doc["schema_version"], doc["run_id"], doc["step_id"]) == (
        1,
        writer.run_id,
        step()["step_id"],
    )
    got = load_run(writer.run_dir).histograms("send-frequency", step()["step_id"])
    assert H.summary(H.decode(got["publish"]))["count"] == 3
    assert load_run(writer.run_dir).histograms("send-frequency", "nope") == {}
    with pytest.raises(schema.ResultsError, match="written once"):
        writer.write_histograms("send-frequency", step()["step_id"], {})
    with pytest.raises(schema.ResultsError, match="cannot be used as a histogram file name"):
        writer.write_histograms("send-frequency", "../escape", {})


def test_credentials_never_reach_the_disk(tmp_path: Path) -> None:
    meta = {
        "profile": "quick",
        "targets": {
            "pulsar": {
                "admin_url": "http://admin:hunter2@10.0.0.1:8080",
                "auth_token": "tok1",
                "authParams": "tok2",
            },
            "rocketmq": [{"secretKey": "tok3", "accessKey": "visible-id"}],
        },
        "PASSWORD": "tok4",
        "client": {"credentials": {"user": "u", "pass": "tok5"}, "Token": "tok6"},
    }
    w = RunWriter.create(tmp_path, meta)
    w.event("warning", detail={"password": "tok7", "url": "pulsar://u:tok8@host:6650"})
    w.finish("complete")
    text = "".join(p.read_text() for p in w.run_dir.iterdir() if p.is_file())
    for secret in ("hunter2", "tok1", "tok2", "tok3", "tok4", "tok5", "tok6", "tok7", "tok8"):
        assert secret not in text
    md = load_run(w.run_dir).metadata
    assert md["targets"]["pulsar"]["admin_url"] == "http://***@10.0.0.1:8080"
    assert md["targets"]["rocketmq"][0] == {"accessKey": "visible-id"}
    assert set(md["redacted_keys"]) == {
        "targets.pulsar.auth_token",
        "targets.pulsar.authParams",
        "targets.rocketmq[0].secretKey",
        "PASSWORD",
        "client.credentials",
        "client.Token",
    }
    assert redact({"a": 1}) == {"a": 1}


def test_unknown_schema_version_is_refused_naming_the_file(writer: RunWriter) -> None:
    writer.write_step(step())
    run_json = writer.run_dir / "run.json"
    doc = json.loads(run_json.read_text())
    doc["schema_version"] = 2
    run_json.write_text(json.dumps(doc))
    with pytest.raises(schema.ResultsError, match=r"run\.json: schema_version 2 is not understood"):
        load_run(writer.run_dir)
    doc["schema_version"] = 1
    run_json.write_text(json.dumps(doc))
    steps = writer.run_dir / "steps.jsonl"
    line = json.loads(steps.read_text())
    line["schema_version"] = 99
    steps.write_text(json.dumps(line) + "\n")
    with pytest.raises(schema.ResultsError, match=r"steps\.jsonl:1: schema_version 99"):
        load_run(writer.run_dir)


def test_torn_and_corrupt_lines_are_left_out_with_a_warning_naming_the_line(
    writer: RunWriter, tmp_path: Path
) -> None:
    writer.write_step(step())
    writer.write_step(step(step_id="b", group="b"))
    steps = writer.run_dir / "steps.jsonl"
    good = steps.read_text()
    with open(steps, "a") as f:  # a crash in the middle of an append
        f.write('{"schema_version": 1, "run_id": "x", "st')
    run = load_run(writer.run_dir)
    assert len(run.steps) == 2
    assert "steps.jsonl:3: last line is incomplete (a crash mid-write); left out" in run.warnings
    lines = good.splitlines()
    steps.write_text(lines[0] + "\n" + "{oops\n" + lines[1] + "\n" + "[1]\n")
    run = load_run(writer.run_dir)
    assert len(run.steps) == 2  # both good records, whatever lies between them
    assert any(w.startswith("steps.jsonl:2: not JSON") for w in run.warnings), run.warnings
    assert "steps.jsonl:4: not a JSON object; line left out" in run.warnings
    # The report shows what the run lacks.
    from bench.report.html import render_report

    html = render_report([writer.run_dir], tmp_path / "r.html").read_text()
    assert "steps.jsonl:2: not JSON" in html


def test_lines_of_another_run_are_refused(tmp_path: Path) -> None:
    a = RunWriter.create(tmp_path, {})
    b = RunWriter.create(tmp_path, {})
    a.write_step(step())
    with open(b.run_dir / "steps.jsonl", "a") as f:
        f.write((a.run_dir / "steps.jsonl").read_text())
    with pytest.raises(schema.ResultsError, match="another run"):
        load_run(b.run_dir)


def test_not_a_run_dir(tmp_path: Path) -> None:
    with pytest.raises(schema.ResultsError, match=r"run\.json: missing"):
        load_run(tmp_path)


def test_steps_are_fsynced(writer: RunWriter, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real = os.fsync

    def spy(fd: int) -> None:
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    writer.write_step(step())
    assert synced, "a finished step must be fsynced before write_step returns"


def test_empty_run_frames_have_the_contract_columns(writer: RunWriter) -> None:
    run = load_run(writer.run_dir)
    for col in ("scenario", "step_id", "broker", "status", "kind", "point"):
        assert col in run.steps.columns
    for col in ("t", "phase", "acked"):
        assert col in run.series.columns
    assert {"t", "kind", "step_id"} <= set(run.events.columns)


def test_point_key_drops_only_the_repetition() -> None:
    assert point_key("pulsar-path=direct-restart=manual-session_timeout_ms=30000-rep=3") == (
        "pulsar-path=direct-restart=manual-session_timeout_ms=30000"
    )
    assert point_key("pulsar-fanout=4") == "pulsar-fanout=4"


def test_schema_names_match_the_scenario_model() -> None:
    # results/ must not import scenarios/ (data flows one way), so the names are repeated.
    assert set(schema.KINDS) == set(model.KINDS)
    assert set(schema.BROKERS) == set(model.BROKERS)
    assert set(schema.PROFILES) == set(model.PROFILES)
    assert set(schema.KIND_METRICS) == set(model.KINDS)
    assert set(schema.HEADLINE_METRICS) == set(model.KINDS)
