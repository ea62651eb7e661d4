"""`bench compare` on SYNTHETIC run directories (test fixtures, not measurements)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from click.testing import CliRunner

from bench.report.commands import compare_cmd
from bench.report.compare import compare_dirs, compare_runs, format_text
from bench.results.store import load_run
from tests.unit.synthetic_runs import Spec, make_run

SMALL: dict[str, Any] = {
    "kinds": ("send-frequency", "kill-9-recovery"),
    "rates": (1000, 10000, 50000),
    "send_modes": ("async",),
    "kill_points": (("direct", "supervised"),),
    "kill_reps": 4,
    "series_s": 20,
}


def test_same_run_has_no_difference_beyond_noise(tmp_path: Path) -> None:
    a = make_run(tmp_path / "a", Spec(seed=1, **SMALL))
    diffs, _, _ = compare_dirs(a, a)
    assert diffs and not any(d.beyond_noise for d in diffs)
    assert all(d.change_pct == 0 for d in diffs)
    assert "no differences beyond the noise" in format_text(diffs, only_beyond=True)


def test_a_30pct_tps_drop_is_worse_beyond_noise_by_threshold(tmp_path: Path) -> None:
    a = make_run(tmp_path / "a", Spec(seed=1, noise_pct=1.0, **SMALL))
    b = make_run(tmp_path / "b", Spec(seed=2, noise_pct=1.0, tps_factor=0.7, **SMALL))
    diffs, _, _ = compare_dirs(a, b)
    tps = [d for d in diffs if d.scenario == "send-frequency" and d.metric == "publish_tps"]
    assert tps and all(d.verdict == "worse" for d in tps)
    assert all(d.method == "threshold 10%" for d in tps)  # one value per side
    assert all(-34 < (d.change_pct or 0) < -26 for d in tps)  # 30% drop, 1% noise a side
    # Ordinary 1% noise on the latency figures stays within the threshold.
    lat = [d for d in diffs if d.metric == "publish_latency_us.p99"]
    assert lat and not any(d.beyond_noise for d in lat)


def test_repetitions_use_their_spread(tmp_path: Path) -> None:
    # Kill-9 repeats each point 4 times per run: Welch's t-test on the repetitions.
    a = make_run(tmp_path / "a", Spec(seed=1, noise_pct=2.0, **SMALL))
    b = make_run(tmp_path / "b", Spec(seed=2, noise_pct=2.0, **SMALL))
    c = make_run(tmp_path / "c", Spec(seed=3, noise_pct=2.0, advantage=-1.0, **SMALL))
    same = compare_runs([load_run(a)], [load_run(b)])
    outage = [d for d in same if d.metric == "unavailability_s"]
    assert len(outage) == 2  # one point per broker
    assert all(d.method.startswith("welch p=") and "(n=4/4)" in d.method for d in outage)
    assert not any(d.beyond_noise for d in outage)
    # advantage=-1 swaps the brokers' outages (8 s <-> 24 s): far beyond the noise.
    swapped = {
        d.broker: d
        for d in compare_runs([load_run(a)], [load_run(c)])
        if d.metric == "unavailability_s"
    }
    assert swapped["pulsar"].verdict == "worse" and swapped["rocketmq"].verdict == "better"


def test_figures_on_one_side_only(tmp_path: Path) -> None:
    a = make_run(tmp_path / "a", Spec(seed=1, **SMALL))
    b = make_run(tmp_path / "b", Spec(seed=1, brokers=("pulsar",), **SMALL))
    diffs, _, _ = compare_dirs(a, b)
    assert {d.verdict for d in diffs if d.broker == "rocketmq"} == {"only in A"}


def test_compare_command_prints_and_renders(tmp_path: Path) -> None:
    a = make_run(tmp_path / "a", Spec(seed=1, noise_pct=1.0, **SMALL))
    b = make_run(
        tmp_path / "b",
        Spec(
            seed=2,
            noise_pct=1.0,
            tps_factor=0.7,
            scenario_names={"kill-9-recovery": "<script>x</script>"},
            **SMALL,
        ),
    )
    out = tmp_path / "cmp.html"
    result = CliRunner().invoke(compare_cmd, [str(a), str(b), "--html", str(out)])
    assert result.exit_code == 0, result.output
    assert "beyond the noise" in result.output
    assert "WORSE" in result.output and "threshold 10%" in result.output
    assert f"wrote {out}" in result.output
    html = out.read_text()
    assert "<script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html
    assert "is synthetic" in html
    everything = CliRunner().invoke(compare_cmd, [str(a), str(a), "--all"])
    assert "within noise" in everything.output
