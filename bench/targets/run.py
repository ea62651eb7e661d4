"""Before a run on targets: every broker has one, every step can run on it, its credentials are
accepted; what run.json records of each."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import ConfigError
from bench.targets.loader import load_targets
from bench.targets.model import TargetsFile
from bench.targets.session import identify, missing_capabilities


@dataclass
class OnTargets:
    """A loaded targets file and what was read from its brokers."""

    file: TargetsFile
    identities: dict[str, dict[str, Any]]
    versions: dict[str, str]


def prepare_targets(
    path: str | Path,
    plan: Sequence[tuple[Any, str, Sequence[Any]]],
    engine: str | None,
    message: Callable[[str], None],
) -> OnTargets:
    """Load ``path`` and check it against ``plan`` ((scenario, broker, steps) triples).

    Raises :class:`ConfigError` (every step a target cannot run, one line each) before anything
    starts, and one line naming the target when its credentials are refused or it does not
    answer.
    """
    tf = load_targets(path)
    problems: list[str] = []
    for scenario, broker, steps in plan:
        target = tf.for_broker(broker)
        if target is None:
            problems.append(f"{path}: no target for {broker} (the run needs one; or --broker)")
            continue
        for step in steps:
            missing = missing_capabilities(target, scenario.kind, scenario.topology, step.params)
            if missing:
                problems.append(
                    f"target {target.name} cannot run {scenario.name} step {step.step_id}: "
                    f"it needs {'; '.join(missing)}"
                )
    if problems:
        raise ConfigError("\n".join(dict.fromkeys(problems)))
    identities: dict[str, dict[str, Any]] = {}
    versions: dict[str, str] = {}
    for broker in dict.fromkeys(b for _, b, _ in plan):
        target = tf.for_broker(broker)
        assert target is not None
        info = identify(target)
        identities[broker] = info
        versions[broker] = str(info.get("broker_version", "unknown"))
        message(f"target {target.name}: {broker} {versions[broker]}")
    return OnTargets(tf, identities, versions)
