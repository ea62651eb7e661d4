"""Bad input that must be refused fast and clearly: alias bombs, oversized files, deep nesting,
absurd counts. Each is one clear line, exit 2 through the CLI, no traceback, within a second."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import cli
from bench.errors import ConfigError
from bench.report.recommend import load_settings
from bench.scenarios.loader import load_scenario

BOMB = "\n".join(
    [
        "a0: &a0 [x, x, x, x, x, x, x, x, x, x]",
        *(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)),
        "schema_version: 1",
        "kind: send-frequency",
        "profiles: {quick: *a8}",
    ]
)


def _timed(fn: object, *args: object) -> tuple[BaseException, float]:
    """The refusal and the CPU seconds it cost this process: the bound is on the suite's own
    work, which wall time on a shared machine does not measure (other processes' load)."""
    started = time.process_time()
    with pytest.raises(ConfigError) as err:
        fn(*args)  # type: ignore[operator]
    return err.value, time.process_time() - started


def test_a_yaml_alias_bomb_is_refused_within_a_second(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    exc, seconds = _timed(load_scenario, path)
    assert seconds < 1.0
    assert "expands to more than 100,000 values (YAML aliases" in str(exc)
    assert "\n" not in str(exc)


@pytest.mark.parametrize("levels", [65, 999, 5000])
def test_deep_nesting_is_refused_before_the_composer(tmp_path: Path, levels: int) -> None:
    # Refused by the depth check on parser events ("more than 64 levels"), not by the composer's
    # recursion unwinding (which costs a second of CPU and says only "nested too deeply").
    path = tmp_path / "deep.yaml"
    path.write_text("a: " + "[" * levels + "]" * levels + "\n")
    with pytest.raises(ConfigError) as err:
        load_scenario(path)
    assert str(err.value) == (
        f"{path}:1: nested too deeply to be a configuration file (more than 64 levels)"
    )


def test_weights_files_are_bounded_too(tmp_path: Path) -> None:
    bomb = tmp_path / "weights.yaml"
    bomb.write_text(BOMB.replace("profiles: {quick: *a8}", "weights: {x: *a8}"))
    exc, seconds = _timed(load_settings, bomb)
    assert seconds < 1.0 and "expands to more than" in str(exc)
    big = tmp_path / "big.json"
    big.write_text(" " * (2 << 20))
    exc, _ = _timed(load_settings, big)
    assert "larger than 1,048,576 bytes" in str(exc)


def test_the_cli_says_one_line_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    started = time.process_time()
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert time.process_time() - started < 1.0
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "expands to more than 100,000 values" in result.output
