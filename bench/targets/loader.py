"""Reading a targets file strictly: every problem as ``<file>:<line>: <key.path>: <what>``.

The file is parsed within :mod:`bench.yamlio`'s bounds, every key path is mapped to its line,
and the pydantic models of :mod:`bench.targets.model` validate it. A value is never echoed for
the ``*_env`` keys beyond its name (they hold names, not secrets, but a person may paste a
secret there by mistake: the message then says what the key wants without repeating it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bench.errors import ConfigError
from bench.targets.model import TargetsFile
from bench.yamlio import load_bounded

Loc = tuple[str | int, ...]


def _lines(node: yaml.Node, loc: Loc, out: dict[Loc, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = (*loc, str(key_node.value))
            out.setdefault(key, key_node.start_mark.line + 1)
            _lines(value_node, key, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out.setdefault((*loc, i), item.start_mark.line + 1)
            _lines(item, (*loc, i), out)


def _index(text: str) -> dict[Loc, int]:
    out: dict[Loc, int] = {}
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return out
    if node is not None:
        _lines(node, (), out)
    return out


def _problem(path: Path, err: Any, lines: dict[Loc, int], data: Any) -> str:
    loc: Loc = tuple(err["loc"])
    # A discriminated union inserts the tag ("pulsar") into the location; the file has none.
    if len(loc) >= 3 and loc[0] == "targets" and loc[2] in ("pulsar", "rocketmq"):
        loc = (*loc[:2], *loc[3:])
    line = None
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            line = lines[loc[:end]]
            break
    where = f"{path}:{line}" if line is not None else str(path)
    dotted = ".".join(str(p) for p in loc) or "(top level)"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    if str(loc[-1] if loc else "").endswith("_env") and err["type"] != "extra_forbidden":
        msg = "must be the NAME of an environment variable (the file never holds a secret)"
    return f"{where}: {dotted}: {msg}".replace("\n", " ")


def load_targets(path: str | Path) -> TargetsFile:
    """Load and validate the targets file at ``path``.

    Raises :class:`ConfigError` listing every problem, one line each, with file, line and key.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the targets file: {exc}") from None
    data = load_bounded(path, text)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: the top level must be a mapping (schema_version, targets)")
    try:
        return TargetsFile.model_validate(data)
    except ValidationError as exc:
        lines = _index(text)
        problems = sorted(
            {_problem(path, e, lines, data) for e in exc.errors(include_url=False)},
            key=lambda s: (int(s.split(":")[1]) if s.split(":")[1].isdigit() else 0, s),
        )
        # Every problem at once, one line each (as the scenario loader does).
        raise ConfigError("\n".join(problems)) from None
