"""YAML input with bounds: a file that expands past what a configuration can need is refused.

YAML aliases let a few lines stand for billions of values (each alias repeats a whole subtree);
the parser shares the subtree, but everything that walks the data afterwards (validation,
indexing) pays for every copy. So the expanded size of a document is computed from its node
graph, each node counted once per reference, before anything walks it: a scenario has a few
hundred values, and at :data:`MAX_VALUES` the file is refused in milliseconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import yaml

from bench.errors import ConfigError

MAX_VALUES: Final = 100_000
"""Values (scalars, lists, mappings) a document may expand to; a scenario has a few hundred."""
MAX_BYTES: Final = 1024 * 1024
"""Input files are a few kilobytes; a megabyte is no configuration."""
MAX_DEPTH: Final = 64
"""Nesting (lists and mappings) a document may have; a scenario nests four or five deep."""


def check_depth(path: Path | str, text: str) -> None:
    """Raise :class:`ConfigError` if ``text`` nests deeper than :data:`MAX_DEPTH`.

    Other YAML errors are left to the parse that follows (it names them with their line).
    Read from the parser's events (an iterative state machine), before the composer, which
    recurses once per level: refused in time linear in the input, not after the interpreter's
    recursion limit was reached and unwound (a second of CPU for 5,000 levels here). libyaml's
    parser when PyYAML has it: the pure-Python scanner looks up to 1,024 characters ahead for a
    key at every bracket (0.25 s of CPU for 5,000 levels; libyaml stops at 1,000 by itself)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    depth = 0
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    line = event.start_mark.line + 1 if event.start_mark else "?"
                    raise _too_deep(path, line)
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                depth -= 1
    except yaml.MarkedYAMLError as exc:
        if "maximum nesting depth" in str(exc.problem):
            raise _too_deep(path, exc.problem_mark.line + 1 if exc.problem_mark else "?") from None
        return  # any other problem: the parse that follows reports it in its own words
    finally:
        loader.dispose()


def _too_deep(path: Path | str, line: int | str) -> ConfigError:
    return ConfigError(
        f"{path}:{line}: nested too deeply to be a configuration file "
        f"(more than {MAX_DEPTH} levels)"
    )


def expanded_size(node: yaml.Node, limit: int = MAX_VALUES) -> int:
    """How many values ``node`` stands for once every alias is expanded (stops past ``limit``).

    Each node's size is computed once (memoised), so the cost is the size of the node graph,
    not of its expansion. A node that contains itself counts once where it recurs.
    """
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(n: yaml.Node) -> int:
        key = id(n)
        if key in sizes:
            return sizes[key]
        if key in active:
            return 1
        active.add(key)
        total = 1
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                total += size(k) + size(v)
                if total > limit:
                    break
        elif isinstance(n, yaml.SequenceNode):
            for item in n.value:
                total += size(item)
                if total > limit:
                    break
        active.discard(key)
        sizes[key] = total
        return total

    return size(node)


def check_expansion(path: Path | str, node: yaml.Node) -> None:
    """Raise :class:`ConfigError` if ``node`` expands past :data:`MAX_VALUES` values."""
    try:
        n = expanded_size(node)
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a configuration file") from None
    if n > MAX_VALUES:
        raise ConfigError(
            f"{path}:{node.start_mark.line + 1}: expands to more than {MAX_VALUES:,} values "
            "(YAML aliases repeat whole subtrees); a configuration has a few hundred"
        )


def load_bounded(path: Path | str, text: str) -> Any:
    """Parse one YAML (or JSON) document from ``text`` within the bounds above.

    Raises :class:`ConfigError` naming ``path`` for oversized input, alias bombs, nesting
    too deep, or invalid YAML.
    """
    if len(text.encode()) > MAX_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_BYTES:,} bytes; not a configuration file")
    loader = yaml.SafeLoader(text)
    try:
        check_depth(path, text)
        node = loader.get_single_node()
        if node is None:
            return None
        check_expansion(path, node)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: not valid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a configuration file") from None
    finally:
        loader.dispose()
