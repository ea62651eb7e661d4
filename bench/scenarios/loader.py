"""Load scenario files: YAML in, a validated :data:`~bench.scenarios.model.Scenario` out.

Every problem is a :class:`~bench.errors.ConfigError` with one line of the form
``<file>:<line>: <key.path>: <what is wrong>`` (``<file>: ...`` when no line applies), so the
CLI can print it as is. Line numbers come from the YAML node tree, which PyYAML builds anyway:
each key path of the document is mapped to the line of its key (or of its list item), and a
pydantic error location is looked up there, falling back to the nearest enclosing key.

PyYAML silently keeps the last of two equal keys in a mapping; here that is an error, because
one of the two values is a mistake the user would never see.
"""

from __future__ import annotations

import difflib
import hashlib
import types
import typing
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from pydantic import BaseModel, ValidationError

from bench.errors import ConfigError
from bench.scenarios.model import (
    COMMON_KNOBS,
    KINDS,
    SCENARIO_MODELS,
    SCHEMA_VERSIONS,
    FieldProblem,
    Scenario,
    ScenarioBase,
    bound_reason,
)
from bench.yamlio import check_depth, check_expansion

__all__ = ["ScenarioInfo", "discover", "load_many", "load_scenario", "scenario_hash"]

# Scenario files are a few kilobytes; a huge file is the wrong file (or an alias bomb).
_MAX_BYTES = 1024 * 1024
_STR_TAG = "tag:yaml.org,2002:str"

Loc = tuple[str | int, ...]


class ScenarioInfo(NamedTuple):
    """One line of ``bench list``."""

    path: Path
    name: str
    description: str


def scenario_hash(path: str | Path) -> str:
    """The sha256 hex digest of the file's bytes, recorded with every result."""
    return hashlib.sha256(_read_bytes(Path(path))).hexdigest()


def load_scenario(path: str | Path) -> Scenario:
    """Read, parse and validate one scenario file.

    Raises ``ConfigError`` with a one-line message naming the file, the line, the key and the
    problem.
    """
    path = Path(path)
    raw = _read_bytes(path)
    text = _decode(path, raw)
    node, data = _parse_yaml(path, text)
    lines: dict[Loc, int] = {}
    _index_nodes(path, node, (), lines, set())

    if not isinstance(data, dict):
        got = _describe_type(data)
        raise ConfigError(
            f"{path}:{node.start_mark.line + 1}: the top level must be a mapping of keys "
            f"(schema_version, name, kind, ...), got a {got}"
        )
    model = _pick_model(path, data, lines)
    try:
        scenario = model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_first_problem(path, exc, model, lines)) from None
    return typing.cast(Scenario, scenario)


def load_many(paths: Iterable[str | Path]) -> list[Scenario]:
    """Load several scenario files, in the given order; their names must be distinct.

    The first invalid file raises its ``ConfigError``.
    """
    scenarios: list[Scenario] = []
    seen: dict[str, Path] = {}
    for p in paths:
        scenario = load_scenario(p)
        if scenario.name in seen:
            raise ConfigError(
                f"{p}: name: {scenario.name!r} is already the name of {seen[scenario.name]}; "
                "scenario names must be unique"
            )
        seen[scenario.name] = Path(p)
        scenarios.append(scenario)
    return scenarios


def discover(dir: str | Path = "scenarios") -> list[ScenarioInfo]:
    """The scenario files in ``dir`` (``*.yaml``, ``*.yml``; relative to the current
    directory), sorted by file name.

    Every file is validated, so ``bench list`` only ever shows scenarios that will run; an
    invalid file raises its ``ConfigError``.
    """
    directory = Path(dir)
    if not directory.is_dir():
        raise ConfigError(f"{directory}: no such scenario directory")
    files = sorted(
        (p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()),
        key=lambda p: p.name,
    )
    return [
        ScenarioInfo(f, s.name, s.description) for f, s in zip(files, load_many(files), strict=True)
    ]


# -- reading -----------------------------------------------------------------------------------


def _read_bytes(path: Path) -> bytes:
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory; pass a scenario .yaml file")
    try:
        with path.open("rb") as f:
            raw = f.read(_MAX_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such scenario file (`bench list` shows the shipped ones)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > _MAX_BYTES:
        raise ConfigError(f"{path}: larger than {_MAX_BYTES} bytes; not a scenario file")
    return raw


def _decode(path: Path, raw: bytes) -> str:
    if b"\x00" in raw:
        offset = raw.index(b"\x00")
        raise ConfigError(f"{path}: binary file (NUL byte at offset {offset}); expected YAML text")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start : exc.start + 1].hex()
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{bad} at offset {exc.start}); expected YAML text"
        ) from None


def _parse_yaml(path: Path, text: str) -> tuple[yaml.Node, Any]:
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)  # the reader checks for unprintable characters here
        check_depth(path, text)
        node = loader.get_single_node()
        if node is None:
            raise ConfigError(
                f"{path}: file is empty; expected a scenario mapping "
                "(schema_version, name, kind, description, brokers, topology, profiles)"
            )
        check_expansion(path, node)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        raise ConfigError(_yaml_problem(path, exc)) from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a scenario file") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError(
            f"{path}:{line}: not YAML text: character #x{exc.character:04x} at offset "
            f"{exc.position} is not allowed ({exc.reason})"
        ) from None
    finally:
        if loader is not None:
            loader.dispose()
    return node, data


def _yaml_problem(path: Path, exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
    # Scanner, parser and composer errors are about syntax; constructor errors are about tags.
    what = (
        "YAML error" if isinstance(exc, yaml.constructor.ConstructorError) else "YAML syntax error"
    )
    problem = exc.problem or "invalid YAML"
    if exc.context and problem.startswith("but "):
        problem = f"{exc.context}, {problem}"  # "expected a single document ..., but found ..."
    elif exc.context and exc.context_mark is not None and exc.context_mark is not mark:
        problem += f" ({exc.context} at line {exc.context_mark.line + 1})"
    return _one_line(f"{where}: {what}: {problem}")


def _index_nodes(
    path: Path, node: yaml.Node, loc: Loc, lines: dict[Loc, int], active: set[int]
) -> None:
    """Record the line of every key path, and reject duplicate or non-string keys."""
    if id(node) in active:
        raise ConfigError(
            f"{path}:{node.start_mark.line + 1}: {_dotted(loc)}: a YAML alias refers to itself"
        )
    active.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first_seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != _STR_TAG:
                shown = key_node.value if isinstance(key_node, yaml.ScalarNode) else "(complex)"
                raise ConfigError(
                    f"{path}:{line}: {_dotted(loc)}: key {shown!r} is not a string "
                    "(YAML reads yes/no/on/off and bare numbers as other types; quote the key)"
                )
            key = key_node.value
            if key == "<<":  # a merge key: its keys are indexed where they are defined
                _index_nodes(path, value_node, loc, {}, active)
                continue
            if key in first_seen:
                raise ConfigError(
                    f"{path}:{line}: {_dotted((*loc, key))}: duplicate key (first at line "
                    f"{first_seen[key]}); YAML would silently keep only the last value"
                )
            first_seen[key] = line
            lines[(*loc, key)] = line
            _index_nodes(path, value_node, (*loc, key), lines, active)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*loc, i)] = item.start_mark.line + 1
            _index_nodes(path, item, (*loc, i), lines, active)
    active.discard(id(node))


# -- validation --------------------------------------------------------------------------------


def _pick_model(path: Path, data: dict[Any, Any], lines: dict[Loc, int]) -> type[ScenarioBase]:
    """Check schema_version and kind by hand: they decide which model applies at all."""
    understood = ", ".join(str(v) for v in SCHEMA_VERSIONS)
    if "schema_version" not in data:
        raise ConfigError(
            f"{path}: schema_version: missing required key; this build reads "
            f"schema_version {understood}"
        )
    version = data["schema_version"]
    # bool is an int in Python; `schema_version: true` is still not a version.
    if type(version) is not int or version not in SCHEMA_VERSIONS:
        raise ConfigError(
            f"{_where(path, lines, ('schema_version',))}: schema_version: "
            f"{_show(version)} is not understood; this build reads schema_version {understood}"
        )
    kinds = ", ".join(KINDS)
    if "kind" not in data:
        raise ConfigError(f"{path}: kind: missing required key; known kinds: {kinds}")
    kind = data["kind"]
    if not isinstance(kind, str) or kind not in SCENARIO_MODELS:
        hint = _suggest(kind, KINDS) if isinstance(kind, str) else ""
        raise ConfigError(
            f"{_where(path, lines, ('kind',))}: kind: unknown kind {_show(kind)}{hint}; "
            f"known kinds: {kinds}"
        )
    return SCENARIO_MODELS[kind]


class _Problem(NamedTuple):
    exact: bool  # the key path itself is in the file (not just an enclosing key)
    line: int | None
    loc: Loc
    text: str


def _first_problem(
    path: Path, exc: ValidationError, model: type[BaseModel], lines: dict[Loc, int]
) -> str:
    problems = [_problem(path, err, model, lines) for err in exc.errors(include_url=False)]
    # A top-level default copied into both profiles fails three times; report it once, at the
    # top level where it is written.
    failing = {p.loc for p in problems}
    problems = [
        p
        for p in problems
        if p.exact or not (len(p.loc) == 3 and p.loc[0] == "profiles" and (p.loc[2],) in failing)
    ]
    problems.sort(key=lambda p: (not p.exact, p.line or 0, len(p.loc)))
    # Every problem at once, one line each: a user fixes them all in one pass.
    return "\n".join(dict.fromkeys(p.text for p in problems))


def _problem(path: Path, err: Any, model: type[BaseModel], lines: dict[Loc, int]) -> _Problem:
    loc: Loc = tuple(err["loc"])
    etype: str = err["type"]
    ctx: dict[str, Any] = err.get("ctx") or {}
    value = err.get("input")
    reason: str
    if etype == "value_error" and isinstance(ctx.get("error"), FieldProblem):
        problem: FieldProblem = ctx["error"]
        loc = (*loc, *problem.keys)
        reason = str(problem)
    elif etype == "value_error":
        reason = str(ctx.get("error", err["msg"]))
    elif etype == "extra_forbidden":
        reason = _unknown_key(loc, model)
    elif etype == "missing":
        reason = "missing required key"
        if loc[-1] in COMMON_KNOBS and loc[0] == "profiles":
            reason += " (set it in the profile, or once at the top level for both profiles)"
    elif etype == "literal_error":
        reason = f"unknown value {_show(value)}; expected one of: {_choices(ctx)}"
    elif etype in _TYPE_NAMES:
        reason = f"wrong type: expected {_TYPE_NAMES[etype]}, got {_describe_type(value)}"
        scalar = value is not None and not isinstance(value, dict | list)
        if scalar:
            reason += f" {_show(value)}"
        if etype == "list_type" and scalar:
            shown = value if isinstance(value, str) else _show(value)
            reason += f"; a sweep is a list, e.g. [{shown}]"
        elif isinstance(value, str) and _numeric(value):
            reason += " (drop the quotes)"
    elif etype == "too_short":
        reason = "must not be empty: a sweep needs at least one value"
    elif etype in _BOUNDS:
        op, key = _BOUNDS[etype]
        reason = f"must be {op} {_show(ctx.get(key))} (got {_show(value)})"
        why = bound_reason(loc)
        if why and etype in ("less_than_equal", "too_long"):
            reason += f": {why}"
    elif etype == "finite_number":
        reason = f"must be a finite number (got {_show(value)})"
    elif etype == "string_pattern_mismatch":
        reason = (
            f"{_show(value)} is not a valid name: use lower-case letters, digits, '.', '_' "
            "and '-', starting with a letter or digit"
        )
    elif etype == "string_too_long":
        reason = f"too long: at most {ctx.get('max_length')} characters"
    elif etype == "string_too_short":
        reason = "must not be empty"
    else:
        reason = _one_line(err["msg"])
    line, exact = _line_of(loc, lines)
    if not exact and len(loc) == 3 and loc[0] == "profiles" and (loc[2],) in lines:
        # The value was inherited from the top-level default: point there.
        line = lines[(loc[2],)]
        reason += f" (value inherited from the top-level {loc[2]})"
    where = f"{path}:{line}" if line is not None else str(path)
    return _Problem(exact, line, loc, _one_line(f"{where}: {_dotted(loc)}: {reason}"))


_TYPE_NAMES = {
    "int_type": "an integer",
    "float_type": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}

_BOUNDS = {
    "greater_than": (">", "gt"),
    "greater_than_equal": (">=", "ge"),
    "less_than": ("<", "lt"),
    "less_than_equal": ("<=", "le"),
}


def _unknown_key(loc: Loc, root: type[BaseModel]) -> str:
    key = loc[-1]
    parent = _model_at(root, loc[:-1])
    if parent is None:
        return "unknown key"
    # Pydantic lists a field that a subclass narrows (kind, profiles) last; list top-level keys
    # in the order a scenario file is written instead.
    base = list(ScenarioBase.model_fields)
    allowed = sorted(
        parent.model_fields, key=lambda k: (k == "profiles", base.index(k) if k in base else 99)
    )
    hints: dict[str, str] = getattr(parent, "unknown_key_hints", {})
    if key in hints:
        return f"unknown key: {hints[str(key)]}; allowed keys: {', '.join(allowed)}"
    profile_model: type[BaseModel] | None = getattr(root, "profile_model", None)
    # A key of the other level gets that said instead of a look-alike key of this one.
    where = ""
    if len(loc) == 1 and profile_model is not None and key in profile_model.model_fields:
        where = "; kind parameters go under profiles.quick and profiles.full"
    elif len(loc) == 3 and loc[0] == "profiles" and key in root.model_fields:
        where = f"; {key} is a top-level key"
    hint = "" if where else _suggest(str(key), allowed)
    text = f"unknown key{hint}; allowed keys: {', '.join(allowed)}{where}"
    return text


def _model_at(root: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The model class validating the mapping at ``loc``, found through the annotations."""
    current: Any = root
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, int):
            args = typing.get_args(current)
            if typing.get_origin(current) is not list or not args:
                return None
            current = args[0]
        elif isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part)
            if field is None:
                return None
            current = field.annotation
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """Strip ``Annotated`` and ``X | None`` down to the one real type."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            real = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(real) != 1:
                return annotation
            annotation = real[0]
        else:
            return annotation


def _line_of(loc: Loc, lines: dict[Loc, int]) -> tuple[int | None, bool]:
    if loc in lines:
        return lines[loc], True
    for end in range(len(loc) - 1, 0, -1):
        if loc[:end] in lines:
            return lines[loc[:end]], False
    return None, False


def _where(path: Path, lines: dict[Loc, int], loc: Loc) -> str:
    line, _ = _line_of(loc, lines)
    return f"{path}:{line}" if line is not None else str(path)


# -- wording -----------------------------------------------------------------------------------


def _dotted(loc: Sequence[str | int]) -> str:
    """``('profiles', 'quick', 'rates_per_s', 2)`` -> ``profiles.quick.rates_per_s[2]``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "(top level)"


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _choices(ctx: dict[str, Any]) -> str:
    # pydantic words it as "'a', 'b' or 'c'"; a plain comma list reads better after "one of".
    return str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if isinstance(value, dict | list):
        return _describe_type(value)
    return str(value)


def _describe_type(value: Any) -> str:
    if value is None:
        return "null (empty value)"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _one_line(text: str) -> str:
    return " ".join(text.split())
