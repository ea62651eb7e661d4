"""Scenario files: the shipped ones load and expand; malformed ones fail with a precise line."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from bench.errors import ConfigError
from bench.scenarios.loader import discover, load_many, load_scenario, scenario_hash
from bench.scenarios.model import KillRecoveryScenario, SendFrequencyScenario, TopicGrowthScenario
from bench.scenarios.steps import Step, check_only_keys, expand_steps, parse_only, select_steps

SCENARIO_DIR = Path(__file__).resolve().parents[2] / "scenarios"
SHIPPED = sorted(SCENARIO_DIR.glob("*.yaml"))

# Valid bases; the malformed cases below are one edit away from them, so the line numbers in
# the expected messages can be read off these texts.
TOPIC_GROWTH = """\
schema_version: 1
name: tg
kind: topic-growth
description: test scenario
brokers: [pulsar, rocketmq]
topology: standalone
message_size: 1024
profiles:
  quick:
    topic_counts: [100, 500]
    mode: precreate
    create_concurrency: 4
    active_topics: 10
    rate_per_s: 100
    lookup_sample: 10
    lookup_timeout_s: 30
    pulsar_bundles: [4]
    warmup_s: 2
    duration_s: 10
  full:
    topic_counts: [1000, 5000]
    mode: create_under_load
    create_concurrency: 8
    active_topics: 20
    rate_per_s: 300
    lookup_sample: 20
    lookup_timeout_s: 30
    pulsar_bundles: [4, 64]
    warmup_s: 5
    duration_s: 30
"""

SEND_FREQUENCY = """\
schema_version: 1
name: sf
kind: send-frequency
description: test scenario
brokers: [pulsar, rocketmq]
topology: standalone
message_size: 256
warmup_s: 1
duration_s: 5
profiles:
  quick:
    rates_per_s: [100, 200]
    send_modes: [async, oneway]
    connection_modes: [shared]
    producers: 1
    topics: 1
    max_in_flight: 10
  full:
    rates_per_s: [100, 200, 400]
    ramp: {start_per_s: 100, factor: 2, max_per_s: 1000, stop_when_achieved_below: 0.9}
    send_modes: [sync, async, oneway]
    connection_modes: [shared, per_batch]
    batch_size_for_per_batch: 10
    producers: 2
    topics: 2
    max_in_flight: 10
    warmup_s: 3
"""

SUBSCRIBE_FREQUENCY = """\
schema_version: 1
name: sub
kind: subscribe-frequency
description: test scenario
topology: standalone
message_size: 128
warmup_s: 1
duration_s: 5
profiles:
  quick:
    publish_rate_per_s: 10
    topics: 1
    fanout: [1, 2]
    churn_per_s: [1]
    churn_base_fanout: 1
  full:
    publish_rate_per_s: 10
    topics: 2
    fanout: [1, 2, 4]
    churn_per_s: [1, 10]
    churn_base_fanout: 1
"""

KILL_RECOVERY = """\
schema_version: 1
name: kr
kind: kill-9-recovery
description: test scenario
topology: standalone
message_size: 128
profiles:
  quick:
    rate_per_s: 50
    producers: 1
    topics: 1
    warmup_s: 1
    kill_after_s: 5
    restart_policy: [supervised]
    paths: [direct]
    repetitions: 1
    observe_after_restart_s: 5
    drain_timeout_s: 5
    pulsar_session_timeout_ms: [30000]
    rocketmq_route_refresh_s: [20]
  full:
    rate_per_s: 80
    producers: 2
    topics: 2
    warmup_s: 2
    kill_after_s: 6
    restart_policy: [manual, supervised]
    manual_restart_after_s: 3
    paths: [direct, proxy]
    repetitions: 2
    observe_after_restart_s: 5
    drain_timeout_s: 5
    pulsar_session_timeout_ms: [30000, 5000]
    rocketmq_route_refresh_s: [20]
"""


def edit(base: str, old: str, new: str) -> str:
    """``base`` with the one occurrence of ``old`` replaced (a no-op edit is a test bug)."""
    assert base.count(old) == 1, f"{old!r} occurs {base.count(old)} times"
    return base.replace(old, new)


def write(tmp_path: Path, content: str | bytes, name: str = "case.yaml") -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


# -- shipped scenarios -------------------------------------------------------------------------


def test_all_four_kinds_are_shipped() -> None:
    names = {p.stem for p in SHIPPED}
    assert names == {
        "topic-growth",
        "send-frequency",
        "subscribe-frequency",
        "kill-9-recovery",
        "kill-9-recovery-cluster",
    }


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_scenario_loads_and_expands(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.name == path.stem  # `bench run <name>` finds the file by its name
    for profile in ("quick", "full"):
        steps = expand_steps(scenario, profile)
        assert steps, profile
        ids = [s.step_id for s in steps]
        assert len(set(ids)) == len(ids)
        assert [s.index for s in steps] == list(range(len(steps)))
        assert {s.broker for s in steps} == set(scenario.brokers)
        assert all(s.scenario == scenario.name and s.profile == profile for s in steps)
        assert expand_steps(scenario, profile) == steps  # deterministic


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_quick_profile_takes_minutes_not_hours(path: Path) -> None:
    """Quick profiles run in nightly CI on a 2-core machine: at most ~3 minutes per broker."""
    scenario = load_scenario(path)
    for broker in scenario.brokers:
        steps = [s for s in expand_steps(scenario, "quick") if s.broker == broker]
        if isinstance(scenario, KillRecoveryScenario):
            seconds = sum(
                s.params["kill_after_s"]
                + s.params.get("manual_restart_after_s", 0)
                + s.params["observe_after_restart_s"]
                + s.params["drain_timeout_s"]
                for s in steps
            )
        else:
            seconds = sum(s.params["duration_s"] for s in steps)
        assert 30 <= seconds <= 180, (broker, seconds)


def test_shipped_full_profiles_reach_the_design_targets() -> None:
    tg = load_scenario(SCENARIO_DIR / "topic-growth.yaml")
    assert isinstance(tg, TopicGrowthScenario)
    assert tg.profiles.full.topic_counts == [1000, 5000, 10000, 20000, 50000, 100000]
    pulsar_counts = {
        s.params["topic_count"] for s in expand_steps(tg, "full") if s.broker == "pulsar"
    }
    assert max(pulsar_counts) == 100_000

    sf = load_scenario(SCENARIO_DIR / "send-frequency.yaml")
    assert isinstance(sf, SendFrequencyScenario)
    assert sf.profiles.full.ramp is not None and sf.profiles.full.rates_per_s
    assert set(sf.profiles.full.send_modes) == {"sync", "async", "oneway"}

    sub = load_scenario(SCENARIO_DIR / "subscribe-frequency.yaml")
    steps = expand_steps(sub, "full")
    assert max(s.params["fanout"] for s in steps) == 64
    assert max(s.params["churn_per_s"] for s in steps) == 100

    for name, topology in (
        ("kill-9-recovery", "standalone"),
        ("kill-9-recovery-cluster", "cluster"),
    ):
        kr = load_scenario(SCENARIO_DIR / f"{name}.yaml")
        assert isinstance(kr, KillRecoveryScenario)
        assert kr.topology == topology
        full = kr.profiles.full
        assert {"manual", "supervised"} <= set(full.restart_policy)
        assert set(full.paths) == {"direct", "proxy"}
        assert full.repetitions == 3


def test_discover_lists_every_shipped_file_with_its_description() -> None:
    infos = discover(SCENARIO_DIR)
    assert [i.path for i in infos] == SHIPPED
    for info in infos:
        assert info.name == info.path.stem
        assert info.description and "\n" not in info.description


# -- expansion ---------------------------------------------------------------------------------


def test_topic_growth_expands_broker_outermost_with_bundles_for_pulsar_only(
    tmp_path: Path,
) -> None:
    scenario = load_scenario(write(tmp_path, TOPIC_GROWTH))
    steps = expand_steps(scenario, "full")
    assert [s.step_id for s in steps] == [
        "pulsar-mode=create_under_load-bundles=4-topics=1000",
        "pulsar-mode=create_under_load-bundles=4-topics=5000",
        "pulsar-mode=create_under_load-bundles=64-topics=1000",
        "pulsar-mode=create_under_load-bundles=64-topics=5000",
        "rocketmq-mode=create_under_load-topics=1000",
        "rocketmq-mode=create_under_load-topics=5000",
    ]
    assert [s.group for s in steps] == [
        "pulsar-mode=create_under_load-bundles=4",
        "pulsar-mode=create_under_load-bundles=4",
        "pulsar-mode=create_under_load-bundles=64",
        "pulsar-mode=create_under_load-bundles=64",
        "rocketmq-mode=create_under_load",
        "rocketmq-mode=create_under_load",
    ]
    assert steps[0].params == {
        "topic_count": 1000,
        "pulsar_bundles": 4,
        "mode": "create_under_load",
        "create_concurrency": 8,
        "active_topics": 20,
        "rate_per_s": 300.0,
        "lookup_sample": 20,
        "lookup_timeout_s": 30.0,
        "warmup_s": 5.0,
        "duration_s": 30.0,
        "message_size": 1024,
    }
    assert "pulsar_bundles" not in steps[-1].params
    assert steps[-1].params["rocketmq_create_batch"] == 1  # one topic per request by default
    assert steps[0] == Step(
        scenario="tg",
        kind="topic-growth",
        profile="full",
        broker="pulsar",
        topology="standalone",
        index=0,
        step_id=steps[0].step_id,
        group=steps[0].group,
        params=dict(steps[0].params),
    )


def test_send_frequency_runs_oneway_on_rocketmq_only_and_ramps_to_max(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, SEND_FREQUENCY))
    quick = expand_steps(scenario, "quick")
    assert [s.step_id for s in quick] == [
        "pulsar-sweep-send=async-conn=shared-rate=100",
        "pulsar-sweep-send=async-conn=shared-rate=200",
        "rocketmq-sweep-send=async-conn=shared-rate=100",
        "rocketmq-sweep-send=async-conn=shared-rate=200",
        "rocketmq-sweep-send=oneway-conn=shared-rate=100",
        "rocketmq-sweep-send=oneway-conn=shared-rate=200",
    ]
    # Top-level warmup_s/duration_s are inherited; full overrides warmup_s.
    assert quick[0].params["warmup_s"] == 1.0 and quick[0].params["duration_s"] == 5.0
    full = expand_steps(scenario, "full")
    assert full[0].params["warmup_s"] == 3.0 and full[0].params["duration_s"] == 5.0
    ramp = [s for s in full if s.group == "pulsar-ramp-send=sync-conn=per_batch"]
    assert [s.params["rate_per_s"] for s in ramp] == [100, 200, 400, 800, 1000]
    assert all(s.params["stop_when_achieved_below"] == 0.9 for s in ramp)
    assert all(s.params["batch_size_for_per_batch"] == 10 for s in ramp)
    shared = [s for s in full if s.params["connection_mode"] == "shared"]
    assert all("batch_size_for_per_batch" not in s.params for s in shared)
    assert not [s for s in full if s.broker == "pulsar" and s.params["send_mode"] == "oneway"]
    # 3 sweep rates + 5 ramp rates, per (send mode, connection mode): 2x2 Pulsar, 3x2 RocketMQ
    assert len(full) == 8 * 4 + 8 * 6


def test_subscribe_frequency_runs_fanout_then_churn(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, SUBSCRIBE_FREQUENCY))
    steps = expand_steps(scenario, "full")
    pulsar = [(s.step_id, s.params["fanout"], s.params["churn_per_s"]) for s in steps[:5]]
    assert pulsar == [
        ("pulsar-fanout=1", 1, 0.0),
        ("pulsar-fanout=2", 2, 0.0),
        ("pulsar-fanout=4", 4, 0.0),
        ("pulsar-churn=1", 1, 1.0),
        ("pulsar-churn=10", 1, 10.0),
    ]
    assert [s.broker for s in steps] == ["pulsar"] * 5 + ["rocketmq"] * 5


def test_kill_recovery_sweeps_each_brokers_own_setting(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, KILL_RECOVERY))
    steps = expand_steps(scenario, "full")
    pulsar = [s for s in steps if s.broker == "pulsar"]
    rocketmq = [s for s in steps if s.broker == "rocketmq"]
    assert len(pulsar) == 2 * 2 * 2 * 2  # paths x policies x session timeouts x repetitions
    assert len(rocketmq) == 2 * 2 * 1 * 2
    assert pulsar[0].step_id == "pulsar-path=direct-restart=manual-session_timeout_ms=30000-rep=1"
    assert pulsar[0].params["manual_restart_after_s"] == 3.0
    assert rocketmq[-1].step_id == "rocketmq-path=proxy-restart=supervised-route_refresh_s=20-rep=2"
    assert "manual_restart_after_s" not in rocketmq[-1].params
    assert all("rocketmq_route_refresh_s" not in s.params for s in pulsar)
    assert all("pulsar_session_timeout_ms" not in s.params for s in rocketmq)


def test_only_selects_matching_steps_and_keeps_their_indexes(tmp_path: Path) -> None:
    steps = expand_steps(load_scenario(write(tmp_path, KILL_RECOVERY)), "full")
    only = parse_only(["restart_policy=supervised", "broker=rocketmq"])
    picked = select_steps(steps, only)
    assert picked and all(
        s.broker == "rocketmq" and s.params["restart_policy"] == "supervised" for s in picked
    )
    assert len(picked) == 2 * 2  # paths x repetitions
    by_id = {s.step_id: s for s in steps}
    assert all(by_id[s.step_id].index == s.index for s in picked)
    # A key given twice takes either value; a number matches as it appears in step ids.
    reps = select_steps(steps, parse_only(["repetition=1", "repetition=2", "path=proxy"]))
    assert len(reps) == len([s for s in steps if s.params["path"] == "proxy"])
    assert select_steps(steps, {}) == steps


def test_only_brings_along_the_earlier_steps_a_step_builds_on(tmp_path: Path) -> None:
    steps = expand_steps(load_scenario(write(tmp_path, SEND_FREQUENCY)), "full")
    ramp = [s for s in steps if s.group == "pulsar-ramp-send=sync-conn=per_batch"]
    picked = select_steps(steps, parse_only([f"step_id={ramp[2].step_id}"]))
    assert [s.step_id for s in picked] == [s.step_id for s in ramp[:3]]
    # A stand-alone sweep step brings nothing along.
    sweep = steps[1]
    assert select_steps(steps, parse_only([f"step_id={sweep.step_id}"])) == [sweep]


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (["restart_policy"], "expected KEY=VALUE"),
        (["=manual"], "expected KEY=VALUE"),
        (["restart_policy="], "expected KEY=VALUE"),
        (["restart=manual"], "no step of k9.yaml has a parameter 'restart'; known: step_id"),
        (["restart_policy=sometimes"], "its values: manual, supervised"),
    ],
)
def test_only_with_a_bad_key_or_value_says_what_exists(
    tmp_path: Path, specs: list[str], message: str
) -> None:
    path = tmp_path / "k9.yaml"
    path.write_text(KILL_RECOVERY)
    steps = expand_steps(load_scenario(path), "full")
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_only_keys([(path.name, steps)], parse_only(specs))


def test_expand_unknown_profile_is_a_config_error(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, KILL_RECOVERY))
    with pytest.raises(
        ConfigError, match=r"^kr: unknown profile 'smoke'; choose one of: quick, full$"
    ):
        expand_steps(scenario, "smoke")


# -- loader helpers ----------------------------------------------------------------------------


def test_scenario_hash_is_sha256_of_the_bytes(tmp_path: Path) -> None:
    path = write(tmp_path, TOPIC_GROWTH)
    assert scenario_hash(path) == hashlib.sha256(TOPIC_GROWTH.encode()).hexdigest()
    path.write_text(TOPIC_GROWTH + "# a comment changes the hash\n", encoding="utf-8")
    assert scenario_hash(path) != hashlib.sha256(TOPIC_GROWTH.encode()).hexdigest()


def test_load_many_rejects_two_files_with_one_name(tmp_path: Path) -> None:
    a = write(tmp_path, TOPIC_GROWTH, "a.yaml")
    b = write(
        tmp_path, edit(TOPIC_GROWTH, "description: test scenario", "description: b"), "b.yaml"
    )
    with pytest.raises(ConfigError) as err:
        load_many([a, b])
    assert str(err.value) == (
        f"{b}: name: 'tg' is already the name of {a}; scenario names must be unique"
    )


def test_discover_reports_an_invalid_file(tmp_path: Path) -> None:
    write(tmp_path, TOPIC_GROWTH, "a.yaml")
    bad = write(tmp_path, edit(KILL_RECOVERY, "repetitions: 1", "repetitions: 0"), "b.yaml")
    (tmp_path / "notes.txt").write_text("not a scenario", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        discover(tmp_path)
    assert str(err.value) == f"{bad}:16: profiles.quick.repetitions: must be >= 1 (got 0)"
    bad.unlink()
    assert [(i.name, i.description) for i in discover(tmp_path)] == [("tg", "test scenario")]


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_scenario(tmp_path / "nope.yaml")
    assert str(err.value) == (
        f"{tmp_path / 'nope.yaml'}: no such scenario file (`bench list` shows the shipped ones)"
    )
    with pytest.raises(ConfigError) as err:
        load_scenario(tmp_path)
    assert str(err.value) == f"{tmp_path}: is a directory; pass a scenario .yaml file"
    with pytest.raises(ConfigError) as err:
        discover(tmp_path / "absent")
    assert str(err.value) == f"{tmp_path / 'absent'}: no such scenario directory"


# -- malformed files: each message names file, line, key and reason -------------------------

TG, SF, SUB, KR = TOPIC_GROWTH, SEND_FREQUENCY, SUBSCRIBE_FREQUENCY, KILL_RECOVERY

MALFORMED = [
    pytest.param(
        edit(TG, "rate_per_s: 100\n", "rate_per_s: 100\n    rate_per_s: 200\n"),
        ":15: profiles.quick.rate_per_s: duplicate key (first at line 14); "
        "YAML would silently keep only the last value",
        id="duplicate-key",
    ),
    pytest.param(
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        ": binary file (NUL byte at offset 8); expected YAML text",
        id="binary-file",
    ),
    pytest.param(
        "name: caf\xe9\n".encode("latin-1"),
        ": not UTF-8 text (byte 0xe9 at offset 9); expected YAML text",
        id="not-utf8",
    ),
    pytest.param(
        "",
        ": file is empty; expected a scenario mapping "
        "(schema_version, name, kind, description, brokers, topology, profiles)",
        id="empty-file",
    ),
    pytest.param(
        "# only a comment\n\n",
        ": file is empty; expected a scenario mapping "
        "(schema_version, name, kind, description, brokers, topology, profiles)",
        id="comments-only",
    ),
    pytest.param(
        edit(TG, "    mode: precreate\n", "    mode: precreate: now\n"),
        ":11: YAML syntax error: mapping values are not allowed here",
        id="yaml-syntax-error",
    ),
    pytest.param(
        edit(TG, "[100, 500]", "[100, 500"),
        ":11: YAML syntax error: expected ',' or ']', but got ':' "
        "(while parsing a flow sequence at line 10)",
        id="yaml-unclosed-list",
    ),
    pytest.param(
        TG + "---\nname: second\n",
        ":31: YAML syntax error: expected a single document in the stream, "
        "but found another document",
        id="two-documents",
    ),
    pytest.param(
        "- schema_version: 1\n- name: x\n",
        ":1: the top level must be a mapping of keys (schema_version, name, kind, ...), got a list",
        id="top-level-list",
    ),
    pytest.param(
        edit(TG, "kind: topic-growth", "kind: topic-grwoth"),
        ":3: kind: unknown kind 'topic-grwoth' (did you mean 'topic-growth'?); known kinds: "
        "topic-growth, send-frequency, subscribe-frequency, kill-9-recovery",
        id="unknown-kind",
    ),
    pytest.param(
        edit(TG, "kind: topic-growth\n", ""),
        ": kind: missing required key; known kinds: "
        "topic-growth, send-frequency, subscribe-frequency, kill-9-recovery",
        id="missing-kind",
    ),
    pytest.param(
        edit(TG, "brokers: [pulsar, rocketmq]", "brokrs: [pulsar, rocketmq]"),
        ":5: brokrs: unknown key (did you mean 'brokers'?); allowed keys: schema_version, "
        "name, kind, description, brokers, topology, warmup_s, message_size, duration_s, "
        "profiles",
        id="unknown-top-level-key-with-suggestion",
    ),
    pytest.param(
        edit(SF, "    producers: 1\n", "    producer: 1\n"),
        ":15: profiles.quick.producer: unknown key (did you mean 'producers'?); allowed keys: "
        "warmup_s, message_size, broker_heap_mb, engine, broker_warmup_s, duration_s, "
        "rates_per_s, ramp, send_modes, connection_modes, producers, topics, "
        "batch_size_for_per_batch, max_in_flight",
        id="unknown-profile-key-with-suggestion",
    ),
    pytest.param(
        edit(SUB, "message_size: 128\n", "message_size: 128\nfanout: [1]\n"),
        ":7: fanout: unknown key; allowed keys: schema_version, name, kind, description, "
        "brokers, topology, warmup_s, message_size, duration_s, profiles; "
        "kind parameters go under profiles.quick and profiles.full",
        id="kind-parameter-at-top-level",
    ),
    pytest.param(
        edit(KR, "message_size: 128\n", "message_size: 128\nduration_s: 60\n"),
        ":7: duration_s: unknown key: a kill-9-recovery step has no fixed duration: it lasts "
        "kill_after_s, the restart, observe_after_restart_s and the drain; allowed keys: "
        "schema_version, name, kind, description, brokers, topology, warmup_s, message_size, "
        "profiles",
        id="kill-recovery-has-no-duration",
    ),
    pytest.param(
        TG + "  smoke: {}\n",
        ":31: profiles.smoke: unknown key; allowed keys: quick, full",
        id="unknown-profile-name",
    ),
    pytest.param(
        edit(TG, "rate_per_s: 100\n", "rate_per_s: -5\n"),
        ":14: profiles.quick.rate_per_s: must be > 0 (got -5)",
        id="negative-rate",
    ),
    pytest.param(
        edit(SF, "[100, 200]\n", "[100, 0]\n"),
        ":12: profiles.quick.rates_per_s[1]: must be > 0 (got 0)",
        id="zero-rate-in-sweep",
    ),
    pytest.param(
        edit(TG, "rate_per_s: 100\n", "rate_per_s: .nan\n"),
        ":14: profiles.quick.rate_per_s: must be a finite number (got nan)",
        id="nan-rate",
    ),
    pytest.param(
        edit(TG, "pulsar_bundles: [4]", "pulsar_bundles: []"),
        ":17: profiles.quick.pulsar_bundles: must not be empty: a sweep needs at least one value",
        id="empty-sweep",
    ),
    pytest.param(
        edit(SUB, "fanout: [1, 2]", "fanout: 2"),
        ":13: profiles.quick.fanout: wrong type: expected a list, got integer 2; "
        "a sweep is a list, e.g. [2]",
        id="scalar-instead-of-sweep",
    ),
    pytest.param(
        edit(TG, "[100, 500]", "[100, 500, 500]"),
        ":10: profiles.quick.topic_counts[2]: must be strictly increasing: 500 follows 500",
        id="non-increasing-topic-counts",
    ),
    pytest.param(
        edit(
            TG,
            "    topic_counts: [1000, 5000]\n",
            "    topic_counts:\n      - 5000\n      - 1000\n",
        ),
        ":23: profiles.full.topic_counts[1]: must be strictly increasing: 1000 follows 5000",
        id="decreasing-topic-counts-block-list",
    ),
    pytest.param(
        edit(TG, "warmup_s: 2", "warmup_s: 10"),
        ":18: profiles.quick.warmup_s: warmup_s (10 s) must be shorter than duration_s (10 s): "
        "warm-up is excluded, so nothing would be measured",
        id="warmup-not-shorter-than-duration",
    ),
    pytest.param(
        edit(SF, "warmup_s: 1\n", "warmup_s: 5\n"),
        ":8: profiles.quick.warmup_s: warmup_s (5 s) must be shorter than duration_s (5 s): "
        "warm-up is excluded, so nothing would be measured "
        "(value inherited from the top-level warmup_s)",
        id="inherited-warmup-not-shorter-than-duration",
    ),
    pytest.param(
        edit(KR, "warmup_s: 1\n", "warmup_s: 5\n"),
        ":12: profiles.quick.warmup_s: warmup_s (5 s) must be shorter than kill_after_s (5 s): "
        "the pre-kill baseline would be empty",
        id="warmup-not-before-kill",
    ),
    pytest.param(
        edit(SF, "brokers: [pulsar, rocketmq]", "brokers: [pulsar]"),
        ":13: profiles.quick.send_modes[1]: oneway needs rocketmq in brokers: "
        "Pulsar has no one-way send (brokers is [pulsar])",
        id="oneway-with-pulsar-only",
    ),
    pytest.param(
        edit(TG, "schema_version: 1", "schema_version: 2"),
        ":1: schema_version: 2 is not understood; this build reads schema_version 1",
        id="wrong-schema-version",
    ),
    pytest.param(
        edit(TG, "schema_version: 1\n", ""),
        ": schema_version: missing required key; this build reads schema_version 1",
        id="missing-schema-version",
    ),
    pytest.param(
        edit(TG, "create_concurrency: 4", "create_concurrency: '4'"),
        ":12: profiles.quick.create_concurrency: wrong type: expected an integer, "
        "got string '4' (drop the quotes)",
        id="wrong-type-quoted-number",
    ),
    pytest.param(
        edit(KR, "topics: 1\n", "topics: yes\n"),
        ":11: profiles.quick.topics: wrong type: expected an integer, got boolean true",
        id="wrong-type-yaml-boolean",
    ),
    pytest.param(
        edit(SUB, "    topics: 1\n", "    topics: 1.5\n"),
        ":12: profiles.quick.topics: wrong type: expected an integer, got number 1.5",
        id="wrong-type-fraction",
    ),
    pytest.param(
        TG[: TG.index("  quick:")] + "  other: {}\n",
        ":9: profiles.other: unknown key; allowed keys: quick, full",
        id="no-profile",
    ),
    pytest.param(
        edit(TG, "    topic_counts: [100, 500]\n", ""),
        ":9: profiles.quick.topic_counts: missing required key",
        id="missing-profile-key",
    ),
    pytest.param(
        edit(TG, "    mode: precreate\n", ""),
        ":9: profiles.quick.mode: missing required key",
        id="missing-mode",
    ),
    pytest.param(
        edit(TG, "[pulsar, rocketmq]", "[pulsar, kafka]"),
        ":5: brokers[1]: unknown value 'kafka'; expected one of: pulsar, rocketmq",
        id="unknown-broker",
    ),
    pytest.param(
        edit(TG, "[pulsar, rocketmq]", "[]"),
        ":5: brokers: must not be empty: a sweep needs at least one value",
        id="no-brokers",
    ),
    pytest.param(
        edit(TG, "[pulsar, rocketmq]", "[rocketmq, rocketmq]"),
        ":5: brokers[1]: duplicate value 'rocketmq': each sweep point runs once",
        id="duplicate-broker",
    ),
    pytest.param(
        edit(TG, "topology: standalone", "topology: clustered"),
        ":6: topology: unknown value 'clustered'; expected one of: standalone, cluster",
        id="unknown-topology",
    ),
    pytest.param(
        edit(TG, "mode: precreate", "mode: pre-create"),
        ":11: profiles.quick.mode: unknown value 'pre-create'; "
        "expected one of: precreate, autocreate, create_under_load",
        id="unknown-mode",
    ),
    pytest.param(
        edit(TG, "message_size: 1024", "message_size: 10"),
        ":7: message_size: must be >= 64 (got 10)",
        id="message-too-small",
    ),
    pytest.param(
        edit(TG, "active_topics: 10\n", "active_topics: 200\n"),
        ":13: profiles.quick.active_topics: active_topics (200) exceeds the first step's "
        "topic count (100)",
        id="more-active-topics-than-topics",
    ),
    pytest.param(
        edit(TG, "description: test scenario", "description: |\n  two\n  lines"),
        ":4: description: must be one line (it is what `bench list` shows)",
        id="multi-line-description",
    ),
    pytest.param(
        edit(TG, "name: tg", "name: My Scenario"),
        ":2: name: 'My Scenario' is not a valid name: use lower-case letters, digits, '.', '_' "
        "and '-', starting with a letter or digit",
        id="bad-name",
    ),
    pytest.param(
        edit(TG, "topology: standalone\n", "topology: standalone\non: true\n"),
        ":7: (top level): key 'on' is not a string "
        "(YAML reads yes/no/on/off and bare numbers as other types; quote the key)",
        id="non-string-key",
    ),
    pytest.param(
        edit(SF, "factor: 2", "factor: 1"),
        ":20: profiles.full.ramp.factor: must be > 1 (got 1)",
        id="ramp-factor-not-above-one",
    ),
    pytest.param(
        edit(SF, "    rates_per_s: [100, 200]\n", ""),
        ":11: profiles.quick.rates_per_s: missing required key: "
        "give rates_per_s (a sweep), ramp, or both",
        id="neither-rates-nor-ramp",
    ),
    pytest.param(
        edit(SF, "    batch_size_for_per_batch: 10\n", ""),
        ":18: profiles.full.batch_size_for_per_batch: missing required key: "
        "connection_modes includes per_batch",
        id="per-batch-without-batch-size",
    ),
    pytest.param(
        edit(KR, "restart_policy: [supervised]", "restart_policy: [supervised, none]"),
        ":14: profiles.quick.restart_policy[1]: restart policy none needs topology: cluster; "
        "in standalone nothing is left to fail over to and the ledger could never drain",
        id="no-restart-in-standalone",
    ),
    pytest.param(
        edit(KR, "    manual_restart_after_s: 3\n", ""),
        ":21: profiles.full.manual_restart_after_s: missing required key: "
        "restart_policy includes manual",
        id="manual-restart-without-delay",
    ),
    pytest.param(
        edit(KR, "paths: [direct, proxy]", "paths: [direct, proxy, direct]"),
        ":29: profiles.full.paths[2]: duplicate value 'direct': each sweep point runs once",
        id="duplicate-path",
    ),
    pytest.param(
        "schema_version: 1\nname: \x07\n",
        ":2: not YAML text: character #x0007 at offset 24 is not allowed "
        "(special characters are not allowed)",
        id="control-character",
    ),
    pytest.param(
        edit(TG, "  full:\n", "  full:\n  fullx:\n"),
        ":20: profiles.full: empty profile: give it its keys, or leave it out",
        id="empty-profile",
    ),
    pytest.param(
        edit(TG, "brokers: [pulsar, rocketmq]", "brokers: pulsar"),
        ":5: brokers: wrong type: expected a list, got string 'pulsar'; "
        "a sweep is a list, e.g. [pulsar]",
        id="broker-not-a-list",
    ),
    pytest.param(
        edit(SF, "max_per_s: 1000", "max_per_s: 50"),
        ":20: profiles.full.ramp.max_per_s: max_per_s (50) is below start_per_s (100)",
        id="ramp-max-below-start",
    ),
    pytest.param(
        edit(TG, "    mode: precreate\n", "    mode: precreate\n    brokers: [pulsar]\n"),
        ":12: profiles.quick.brokers: unknown key; allowed keys: warmup_s, message_size, "
        "broker_heap_mb, engine, broker_warmup_s, duration_s, topic_counts, mode, "
        "create_concurrency, active_topics, rate_per_s, "
        "lookup_sample, lookup_timeout_s, pulsar_bundles, rocketmq_create_batch; brokers is a "
        "top-level key",
        id="top-level-key-in-profile",
    ),
    pytest.param(
        edit(TG, "mode: precreate", "mode: !!python/object/apply:os.system [ls]"),
        ":11: YAML error: could not determine a constructor for the tag "
        "'tag:yaml.org,2002:python/object/apply:os.system'",
        id="python-tag-refused",
    ),
]


@pytest.mark.parametrize(("content", "expected"), MALFORMED)
def test_malformed_scenario_names_file_line_key_and_reason(
    tmp_path: Path, content: str | bytes, expected: str
) -> None:
    path = write(tmp_path, content, "broken.yaml")
    with pytest.raises(ConfigError) as err:
        load_scenario(path)
    lines = str(err.value).splitlines()
    # The first problem is the expected one; every other line is a problem of the same file.
    assert lines[0] == f"{path}{expected}"
    assert all(line.startswith(f"{path}") for line in lines)


def test_every_problem_of_a_file_is_listed_at_once(tmp_path: Path) -> None:
    text = edit(
        SF,
        "    producers: 1\n    topics: 1\n    max_in_flight: 10\n",
        "    producer: 1\n    topics: 1000000000000\n    max_in_flight: -3\n",
    )
    path = write(tmp_path, text, "broken.yaml")
    with pytest.raises(ConfigError) as err:
        load_scenario(path)
    lines = str(err.value).splitlines()
    assert len(lines) >= 3, lines
    joined = "\n".join(lines)
    assert "profiles.quick.producer: unknown key" in joined
    assert "profiles.quick.max_in_flight: must be > 0 (got -3)" in joined
    assert (
        "profiles.quick.topics: must be <= 1000000 (got 1000000000000): 100,000 topics already"
        in joined
    )


def test_enough_malformed_cases() -> None:
    assert len(MALFORMED) >= 15


@pytest.mark.parametrize("base", [TG, SF, SUB, KR], ids=["tg", "sf", "sub", "kr"])
def test_the_test_bases_are_valid(tmp_path: Path, base: str) -> None:
    """Each malformed case is one edit from a valid base, so the error is that edit's."""
    scenario = load_scenario(write(tmp_path, base))
    assert expand_steps(scenario, "quick") and expand_steps(scenario, "full")


def test_broker_heap_of_a_profile_reaches_the_infra_settings(tmp_path: Path) -> None:
    from bench.runner.api import infra_settings_for

    text = (SCENARIO_DIR / "topic-growth.yaml").read_text()
    assert "broker_heap_mb" in text  # the full profile sizes the heap for 100,000 topics
    scenario = load_scenario(write(tmp_path, text, "tg.yaml"))
    full = expand_steps(scenario, "full")[0]
    quick = expand_steps(scenario, "quick")[0]
    assert infra_settings_for(scenario, full, 0).heap_mb == scenario.profile("full").broker_heap_mb
    assert infra_settings_for(scenario, quick, 0).heap_mb == 768  # infra's default
    # A bundle group is a broker of its own: a new bundle count means fresh settings.
    by_bundles = {
        s.params["pulsar_bundles"]: infra_settings_for(scenario, s, 0)
        for s in expand_steps(scenario, "full")
        if s.broker == "pulsar"
    }
    assert sorted(by_bundles) == [4, 64]
    assert by_bundles[4].pulsar_bundles == 4 and by_bundles[64].pulsar_bundles == 64
    assert by_bundles[4] != by_bundles[64]


def test_broker_heap_below_what_a_broker_starts_with_is_refused(tmp_path: Path) -> None:
    text = (SCENARIO_DIR / "topic-growth.yaml").read_text()
    bad = text.replace(
        "    mode: create_under_load\n", "    mode: create_under_load\n    broker_heap_mb: 64\n", 1
    )
    with pytest.raises(ConfigError, match=r"profiles\.quick\.broker_heap_mb: .*256"):
        load_scenario(write(tmp_path, bad, "tg.yaml"))


@pytest.mark.parametrize(
    ("kind", "sweep"),
    [
        ("topic-growth", "topic_counts: [100]\n    mode: precreate"),
        ("send-frequency", "rates_per_s: [100]"),
        ("subscribe-frequency", "fanout: [1, 2]\n    churn_per_s: [5]"),
        ("kill-9-recovery", "restart_policy: [supervised]"),
    ],
)
def test_a_file_with_only_its_sweep_gets_sensible_defaults(
    tmp_path: Path, kind: str, sweep: str
) -> None:
    """Every knob with a sensible default has one: the sweep is all a file must say."""
    text = (
        f"schema_version: 1\nname: mini\nkind: {kind}\ndescription: d\n"
        f"topology: standalone\nprofiles:\n  quick:\n    {sweep}\n"
    )
    scenario = load_scenario(write(tmp_path, text))
    steps = expand_steps(scenario, "quick")
    assert steps
    prof = scenario.profile("quick")
    assert prof.message_size == 1024 and prof.warmup_s == 3.0


@pytest.mark.parametrize(
    "kind", ["topic-growth", "send-frequency", "subscribe-frequency", "kill-9-recovery"]
)
def test_bench_new_writes_a_valid_documented_template(tmp_path: Path, kind: str) -> None:
    from bench.scenarios.template import template

    text = template(kind)
    scenario = load_scenario(write(tmp_path, text))
    assert expand_steps(scenario, "quick")
    assert "# default: Bytes of every payload" in text  # keys carry their documentation
