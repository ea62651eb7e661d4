"""``bench new KIND``: a scenario file to start from, written from the profile model itself.

Every profile key appears with its default (or, where it has none, an example marked
``required``) and the first line of its documentation, so the template never drifts from what
the loader accepts: a test validates the template of every kind.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic_core import PydanticUndefined

from bench.scenarios.model import SCENARIO_MODELS, ScenarioBase

# Values for the keys that have no default: each kind's sweep, small enough to run in minutes.
_EXAMPLES: dict[str, Any] = {
    "topic_counts": [100, 500, 1000],
    "mode": "create_under_load",
    "rates_per_s": [500, 2000, 8000],
    "fanout": [1, 4, 16],
    "churn_per_s": [5, 20],
}


def _yaml(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value).replace('"', "")


def template(kind: str) -> str:
    """A valid scenario file of ``kind`` with one ``quick`` profile, every key documented."""
    model: type[ScenarioBase] = SCENARIO_MODELS[kind]
    profile = model.profile_model
    lines = [
        f"# A {kind} scenario: edit the sweep, run `bench validate` on it, then `bench run`.",
        "schema_version: 1",
        f"name: my-{kind}",
        f"kind: {kind}",
        f"description: my {kind} scenario",
        "brokers: [pulsar, rocketmq]",
        "topology: standalone  # or cluster (two brokers; kill -9 of one)",
        "profiles:",
        "  quick:  # a full: profile may follow, with the same keys",
    ]
    for name, field in profile.model_fields.items():
        doc = (field.description or "").strip().splitlines()
        if field.default is PydanticUndefined and field.default_factory is None:
            value, note = _EXAMPLES.get(name), "required"
        else:
            value = field.get_default(call_default_factory=True)
            note = "default"
            if value is None and name in _EXAMPLES:
                value, note = _EXAMPLES[name], "optional"
        if value is None:
            continue
        comment = f"  # {note}" + (f": {doc[0]}" if doc else "")
        lines.append(f"    {name}: {_yaml(value)}{comment}")
    return "\n".join(lines) + "\n"
