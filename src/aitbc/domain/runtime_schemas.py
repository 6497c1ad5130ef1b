"""The JSON Schemas (draft 2020-12) a miner declares for each runtime it offers: of a job's inline `input` and
of its `params`. A job whose input or params a miner's schema refuses is not that miner's to take: refused
at submit (when no live miner could take it) rather than billed for a failure on the miner.

A schema is kept as canonical JSON text (sorted keys, no spaces): immutable inside `Capabilities`, stored and
relayed as is, and the key of the compiled-validator cache. The claim path checks every candidate job, so each
distinct schema is compiled once, however many miners declare it. jsonschema is imported on first use only.

Choices, so that every schema means the same everywhere:
- keys the coordinator itself adds to `params` (`COORDINATOR_PARAMS`: `output_config`, from the submit's
  `output_config`) are not the runtime's: they are left out of the check, so no schema has to allow them;
- a job whose input is an uploaded file (`input_file_id`, no inline input) skips the input schema;
- a `$ref` must point inside its schema (`#…`), and `$schema`, if given, must be draft 2020-12: the
  coordinator never fetches anything a miner names;
- a `pattern` is matched with RE2 (linear time), not Python's backtracking `re`: a miner's pattern runs on the
  coordinator's loop at every submit and claim it is checked on, and one that backtracks (`(a+)+b`) would stall
  it. A pattern RE2 cannot compile (lookaround, backreferences) is refused at registration, and so is
  `patternProperties` (jsonschema matches those with `re` in several places).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError
    from jsonschema.protocols import Validator

DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
MAX_SCHEMA_BYTES = 64 * 1024  # of one schema's canonical JSON
MAX_SCHEMA_DEPTH = 64  # objects and arrays within each other: checking a deeper one would exhaust the stack
COORDINATOR_PARAMS = frozenset({"output_config"})
MESSAGE_CHARACTERS = 200  # a reason quotes the validator's message cut to this
VALUE_CHARACTERS = 40  # and a value it quotes to this
COMPILED_SCHEMAS = 512  # distinct schemas whose validators are kept
COMPILED_PATTERNS = 1024  # distinct patterns kept compiled
# What a schema's keyword holds as data, not as schemas: a `pattern` key in there is not a pattern.
_DATA_KEYWORDS = frozenset({"enum", "const", "default", "examples"})


def canonical_json(value: Any) -> str:
    """One text per JSON value, whatever the order of its keys: what is stored, compared and cached on."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


@dataclass(frozen=True)
class RuntimeSchemas:
    """A runtime's schemas on one miner, as canonical JSON; None: that part was not declared (anything goes)."""

    input: str | None = None
    parameters: str | None = None

    @classmethod
    def of(cls, input_schema: Any = None, parameters_schema: Any = None) -> RuntimeSchemas:
        return cls(
            input=None if input_schema is None else canonical_json(input_schema),
            parameters=None if parameters_schema is None else canonical_json(parameters_schema),
        )

    def as_json(self) -> dict[str, Any]:
        """`{"input": schema, "parameters": schema}` (each null when not declared), as registration sends it."""
        return {
            "input": None if self.input is None else json.loads(self.input),
            "parameters": None if self.parameters is None else json.loads(self.parameters),
        }


def schemas_from_json(stored: Any) -> dict[str, RuntimeSchemas]:
    """`{runtime: {"input": schema, "parameters": schema}}` as stored and relayed (None, for a miner registered
    before schemas existed: no schemas, any input goes)."""
    if not stored:
        return {}
    return {
        str(runtime): RuntimeSchemas.of(declared.get("input"), declared.get("parameters"))
        for runtime, declared in stored.items()
    }


def schemas_to_json(schemas: dict[str, RuntimeSchemas]) -> dict[str, Any] | None:
    """The other way round; None when there are none."""
    return {runtime: declared.as_json() for runtime, declared in schemas.items()} or None


def schema_problem(schema: Any) -> str | None:
    """Why `schema` is not a JSON Schema the coordinator takes (too large, not a valid draft 2020-12 schema, a
    reference outside itself); None when it is."""
    if _depth(schema) > MAX_SCHEMA_DEPTH:
        return f"nested over {MAX_SCHEMA_DEPTH} levels deep"
    try:
        text = canonical_json(schema)
    except (TypeError, ValueError) as error:
        return f"not JSON: {error}"
    if len(text.encode()) > MAX_SCHEMA_BYTES:
        return f"{len(text.encode())} bytes of JSON, over the limit of {MAX_SCHEMA_BYTES}"
    if isinstance(schema, dict) and schema.get("$schema", DRAFT_2020_12) != DRAFT_2020_12:
        return f"$schema must be {DRAFT_2020_12} (draft 2020-12), got {_short(schema['$schema'])}"
    for reference in _references(schema):
        if not reference.startswith("#"):
            return f"$ref {_short(reference)} points outside the schema: only references inside it (#…) are followed"
    for keyword, value in _keywords(schema):
        if keyword == "patternProperties":
            return "patternProperties is not supported: name the keys in properties, or check them with propertyNames"
        if keyword == "pattern" and isinstance(value, str) and _pattern(value) is None:
            return (
                f"pattern {_short(value)} is not one RE2 compiles (no lookaround or backreferences): the coordinator "
                "matches patterns in linear time"
            )
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        return _cut(f"{error.message}{_at(error.absolute_path, ' at ')}")
    return None


def _depth(value: Any) -> int:
    """How deep objects and arrays nest in `value`, counted without recursion (stops past the limit)."""
    deepest, stack = 0, [(value, 1)]
    while stack and deepest <= MAX_SCHEMA_DEPTH:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is not None:
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in children)
    return deepest


def _keywords(schema: Any, data: frozenset[str] = _DATA_KEYWORDS) -> Iterator[tuple[str, Any]]:
    """Every (key, value) of a schema and its subschemas, not descending into the keywords named in `data`."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            yield key, value
            if key not in data:
                yield from _keywords(value, data)
    elif isinstance(schema, list):
        for item in schema:
            yield from _keywords(item, data)


@lru_cache(maxsize=COMPILED_PATTERNS)
def _pattern(text: str) -> Any:
    """`text` compiled by RE2, or None when RE2 cannot compile it."""
    import re2

    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile(text, options)
    except re2.error:
        return None


def _matches_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    """The `pattern` keyword, matched by RE2 (a pattern it cannot compile never passed `schema_problem`)."""
    from jsonschema.exceptions import ValidationError

    if not validator.is_type(instance, "string"):
        return
    compiled = _pattern(pattern)
    if compiled is None or compiled.search(instance) is None:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _references(schema: Any) -> Iterator[str]:
    """Every `$ref` and `$dynamicRef`, wherever it stands (data keywords included, as a resolver might look)."""
    for key, value in _keywords(schema, frozenset()):
        if key in ("$ref", "$dynamicRef") and isinstance(value, str):
            yield value


@lru_cache(maxsize=COMPILED_SCHEMAS)
def _validator(text: str) -> Validator:
    """The compiled validator of one schema (its canonical JSON), with an empty registry: nothing is fetched."""
    from referencing import Registry

    return _linear_validator()(json.loads(text), registry=Registry())


@lru_cache(maxsize=1)
def _linear_validator() -> type[Validator]:
    """Draft 2020-12's validator with `pattern` matched by RE2 (`_matches_pattern`)."""
    from jsonschema import Draft202012Validator, validators

    extended: type[Validator] = validators.extend(  # type: ignore[no-untyped-call]
        Draft202012Validator, {"pattern": _matches_pattern}
    )
    return extended


def input_problem(runtime: str, schemas: RuntimeSchemas, value: Any, input_file_id: str | None) -> str | None:
    """Why this miner's `runtime` cannot take the job's inline input; None when it can (or it is a file)."""
    if schemas.input is None or (value is None and input_file_id is not None):
        return None
    if schemas.input == "false":  # the runtime reads an uploaded file only
        return f"input for '{runtime}': takes no inline input, only an uploaded file (input_file_id)"
    problem = _first_error(schemas.input, value)
    return None if problem is None else f"input for '{runtime}'{problem}"


def params_problem(runtime: str, schemas: RuntimeSchemas, params: dict[str, Any]) -> str | None:
    """Why this miner's `runtime` cannot take the job's params (less the coordinator's own keys); None: it can."""
    if schemas.parameters is None:
        return None
    own = {key: value for key, value in params.items() if key not in COORDINATOR_PARAMS}
    problem = _first_error(schemas.parameters, own)
    return None if problem is None else f"params for '{runtime}'{problem}"


def _first_error(schema: str, value: Any) -> str | None:
    """`[at PATH]: message` of the most relevant error, or None when `value` is valid."""
    from jsonschema.exceptions import best_match
    from referencing.exceptions import Unresolvable

    try:
        error = best_match(_validator(schema).iter_errors(value))
    except Unresolvable as unresolvable:  # a `#…` that names nothing: the miner's schema is at fault
        return f": its schema has a reference that names nothing ({_short(str(unresolvable))})"
    except RecursionError:  # a schema that refers to itself, on a value nested deeper than the stack allows
        return ": nested too deeply to check"
    if error is None:
        return None
    return f"{_at(error.absolute_path, ' at ')}: {_cut(describe(error))}"


def describe(error: ValidationError) -> str:
    """A short sentence for one validation error: `must be a string (got an object)`, `unknown key 'x'`."""
    keyword, expected, instance = error.validator, error.validator_value, error.instance
    if keyword == "type":
        wanted = expected if isinstance(expected, list) else [expected]
        return f"must be {' or '.join(_article(str(kind)) for kind in wanted)} (got {_article(_json_type(instance))})"
    if keyword in ("additionalProperties", "unevaluatedProperties") and isinstance(instance, dict):
        extra = _extra_keys(error.schema, instance) if keyword == "additionalProperties" else []
        if extra:
            return f"unknown key{'s' if len(extra) > 1 else ''} {', '.join(_short(key) for key in extra)}"
    if keyword == "required" and isinstance(expected, list) and isinstance(instance, dict):
        missing = [key for key in expected if key not in instance]
        return f"needs the key{'s' if len(missing) > 1 else ''} {', '.join(_short(key) for key in missing)}"
    if keyword == "enum" and isinstance(expected, list):
        return f"must be one of {', '.join(_short(item) for item in expected)} (got {_short(instance)})"
    if keyword in _BOUNDS:
        return f"must be {_BOUNDS[keyword]} {_number(expected)} (got {_short(instance)})"
    if keyword in _LENGTHS:
        unit = "character" if isinstance(instance, str) else "item"
        return f"must have {_LENGTHS[keyword]} {expected} {unit}{'' if expected == 1 else 's'}"
    if keyword == "not":
        return f"{_short(instance)} is not allowed"
    if keyword == "pattern":
        return f"{_short(instance)} does not match {_short(expected)}"
    if error.schema is False:
        return "is not allowed here"
    return error.message


_BOUNDS = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "over", "exclusiveMaximum": "under"}
_LENGTHS = {"minLength": "at least", "maxLength": "at most", "minItems": "at least", "maxItems": "at most"}


def _extra_keys(schema: Any, instance: dict[str, Any]) -> list[str]:
    if not isinstance(schema, dict):
        return []
    known = schema.get("properties") or {}
    return [key for key in instance if key not in known]  # no patternProperties: `schema_problem` refuses them


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _article(kind: str) -> str:
    if kind == "null":
        return "null"
    return f"{'an' if kind[:1] in 'aeiou' else 'a'} {kind}"


def _at(path: Any, prefix: str) -> str:
    """`prefix` and where in the value (`temperature`, `files.name`, `[2]`), or nothing at the root."""
    parts = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path)
    return f"{prefix}{parts.lstrip('.')}" if parts else ""


def _short(value: Any) -> str:
    """A value as a message quotes it: a string in quotes, anything else as JSON, cut short."""
    if isinstance(value, str):
        text = repr(value)
    else:
        try:
            text = canonical_json(value)
        except (TypeError, ValueError):
            text = repr(value)
    return text if len(text) <= VALUE_CHARACTERS else text[: VALUE_CHARACTERS - 1] + "…"


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _cut(text: str) -> str:
    return text if len(text) <= MESSAGE_CHARACTERS else text[: MESSAGE_CHARACTERS - 1] + "…"
