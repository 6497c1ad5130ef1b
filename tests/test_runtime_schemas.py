"""Each built-in runtime's JSON Schemas say exactly what it runs: the runtime's own checks (run here, where they
are cheap: the command runtime's script and environment, reencode's ffmpeg arguments, the text-generation
params and the embedding input parsers) accept every value the schema accepts and refuse every value it
refuses; and the domain's checks word their reasons so a client can act on them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from aitbc.domain.job import JobSpec
from aitbc.domain.matching import Capabilities, unmet_requirements
from aitbc.domain.runtime_schemas import (
    MAX_SCHEMA_BYTES,
    MAX_SCHEMA_DEPTH,
    RuntimeSchemas,
    input_problem,
    params_problem,
    schema_problem,
    schemas_from_json,
    schemas_to_json,
)
from aitbc.miner.package import PackageLayout
from aitbc.miner.runtimes.command import CommandRuntime
from aitbc.miner.runtimes.embedding import EmbeddingRuntime, parse_texts
from aitbc.miner.runtimes.generation_params import GenerationParams
from aitbc.miner.runtimes.interface import JobContext, JobFailed, declared_schemas
from aitbc.miner.runtimes.reencode import ReencodeRuntime
from aitbc.miner.runtimes.text_generation import TextGenerationRuntime
from aitbc.miner.stop import StopSignal
from aitbc.protocol.miners import Assignment

RUNTIMES = (CommandRuntime, EmbeddingRuntime, TextGenerationRuntime, ReencodeRuntime)


def schemas_of(runtime: Any) -> RuntimeSchemas:
    return RuntimeSchemas.of(runtime.input_schema, runtime.params_schema)


def input_valid(runtime: Any, value: Any) -> bool:
    return input_problem(runtime.name, schemas_of(runtime), value, None) is None


def params_valid(runtime: Any, params: dict[str, Any]) -> bool:
    return params_problem(runtime.name, schemas_of(runtime), params) is None


def runs(check: Any, *arguments: Any) -> bool:
    try:
        check(*arguments)
    except JobFailed:
        return False
    return True


@pytest.mark.parametrize("runtime", RUNTIMES, ids=lambda runtime: runtime.name)
def test_every_built_in_schema_is_a_usable_json_schema(runtime: Any) -> None:
    assert schema_problem(runtime.input_schema) is None
    assert schema_problem(runtime.params_schema) is None
    declared = declared_schemas(runtime)
    assert declared is not None and declared.declared() == schemas_of(runtime)


# -- text-generation ---------------------------------------------------------------------------------------

GENERATION_PARAMS = [
    {},
    {"max_tokens": 1},
    {"max_tokens": 8192, "temperature": 0, "top_p": 0.0001, "seed": 7},
    {"max_tokens": 100.5},  # the runtime takes any number in range (and rounds it down)
    {"temperature": 10, "top_p": 1, "seed": None},
    {"max_tokens": 0},
    {"max_tokens": 8193},
    {"max_tokens": "10"},
    {"max_tokens": True},
    {"max_tokens": None},
    {"temperature": -0.1},
    {"temperature": 10.5},
    {"top_p": 0},
    {"top_p": 1.01},
    {"seed": "7"},
    {"seed": False},
]


@pytest.mark.parametrize("params", GENERATION_PARAMS, ids=repr)
def test_text_generation_params_schema_matches_what_the_runtime_reads(params: dict[str, Any]) -> None:
    assert params_valid(TextGenerationRuntime, params) == runs(GenerationParams.from_params, params)


def test_text_generation_refuses_unknown_keys_and_takes_a_non_empty_string_prompt() -> None:
    assert params_problem("text-generation", schemas_of(TextGenerationRuntime), {"temprature": 0.5}) == (
        "params for 'text-generation': unknown key 'temprature'"
    )
    assert input_valid(TextGenerationRuntime, "Once upon a time")
    assert input_problem("text-generation", schemas_of(TextGenerationRuntime), {"prompt": "hi"}, None) == (
        "input for 'text-generation': must be a string (got an object)"
    )
    for refused in ("", None, ["a"], 5):
        assert not input_valid(TextGenerationRuntime, refused)


# -- embedding ---------------------------------------------------------------------------------------------

EMBEDDING_INPUTS = [
    "one line",
    "first\n\nsecond\n",
    ["a", "b"],
    [""],  # a list is embedded as given, empty strings included
    "  \n\t\n",
    "",
    [],
    ["a", 2],
    [["a"]],
    {"texts": ["a"]},
    5,
    None,
]


@pytest.mark.parametrize("value", EMBEDDING_INPUTS, ids=repr)
def test_embedding_input_schema_matches_what_the_runtime_parses(value: Any) -> None:
    assert input_valid(EmbeddingRuntime, value) == runs(parse_texts, value)


def test_embedding_params_take_a_boolean_normalize_only() -> None:
    assert params_valid(EmbeddingRuntime, {"normalize": False})
    assert params_valid(EmbeddingRuntime, {})
    assert not params_valid(EmbeddingRuntime, {"normalize": "false"})  # would read as true
    assert not params_valid(EmbeddingRuntime, {"batch": 32})


# -- command -----------------------------------------------------------------------------------------------


def command_context(tmp_path: Path, value: Any, params: dict[str, Any]) -> JobContext:
    assignment = Assignment.model_validate(
        {
            "job_id": "job_1",
            "lease_id": "lease_1",
            "lease_expires_at": "2026-01-01T00:00:00Z",
            "type": "command",
            "model": None,
            "input": value,
            "input_file": None,
            "params": params,
            "requirements": {},
            "priority": "normal",
            "timeout_seconds": 60,
            "attempt": 1,
        }
    )
    package = PackageLayout(tmp_path / "package")
    return JobContext(assignment, tmp_path, package, None, StopSignal(), time.monotonic() + 60)  # type: ignore[arg-type]


def command_runs(tmp_path: Path, value: Any, params: dict[str, Any]) -> bool:
    """The command runtime's own reading of the job: its script and files written, its environment built."""
    runtime = CommandRuntime(None)  # type: ignore[arg-type]  # the sandbox is not reached by these checks
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    context = command_context(tmp_path, value, params)
    return runs(runtime._script, context, work) and runs(runtime._environment, context)


COMMAND_INPUTS = [
    "echo hi",
    {"script": "cat data.txt", "files": {"data.txt": "x", "b-1_2.csv": "y"}},
    {"script": "echo", "files": None},
    "   ",
    "",
    None,
    {"script": "echo", "files": {"../escape": "x"}},
    {"script": "echo", "files": {"a b": "x"}},
    {"script": "echo", "files": ["a"]},
    ["echo hi"],  # a job's input is text, an object or a list (JsonInput): never a bare number
]


@pytest.mark.parametrize("value", COMMAND_INPUTS, ids=repr)
def test_command_input_schema_matches_what_the_runtime_runs(tmp_path: Path, value: Any) -> None:
    assert input_valid(CommandRuntime, value) == command_runs(tmp_path, value, {})


COMMAND_PARAMS = [
    {},
    {"env": {"MODE": "fast", "N_2": 3}},
    {"env": None},
    {"anything": [1, 2], "the_script": {"reads": "$AITBC_PARAMS"}},
    {"env": {"lower": "x"}},
    {"env": {"AITBC_JOB_ID": "x"}},
    {"env": {"PATH": "/evil"}},
    {"env": {"HOME": "/root"}},
    {"env": {"9LIVES": "x"}},
    {"env": ["MODE=fast"]},
]


@pytest.mark.parametrize("params", COMMAND_PARAMS, ids=repr)
def test_command_params_schema_matches_the_environment_the_runtime_builds(
    tmp_path: Path, params: dict[str, Any]
) -> None:
    assert params_valid(CommandRuntime, params) == command_runs(tmp_path, "echo hi", params)


def test_a_blank_file_name_or_env_reason_names_what_is_wrong() -> None:
    reason = params_problem("command", schemas_of(CommandRuntime), {"env": {"AITBC_X": "1"}})
    assert reason == "params for 'command' at env: 'AITBC_X' is not allowed"
    reason = input_problem("command", schemas_of(CommandRuntime), {"scirpt": "echo"}, None)
    assert reason == "input for 'command': unknown key 'scirpt'"


# -- reencode ----------------------------------------------------------------------------------------------

REENCODE_PARAMS = [
    {},
    {"format": "webm", "codec": "libvpx-vp9", "audio_codec": "libopus", "video_bitrate": "2M"},
    {"audio_bitrate": 128000, "width": 640, "height": None, "fps": 30, "sample_rate": 48000},
    {"format": "image2", "width": 16384},
    {"format": "hls"},
    {"format": None},
    {"codec": "libx264 -i /etc/passwd"},
    {"codec": "X264"},
    {"video_bitrate": "800x"},
    {"video_bitrate": 1000000},
    {"video_bitrate": -1},
    {"width": 0},
    {"width": 16385},
    {"fps": 29.97},
    {"fps": True},
    {"sample_rate": "48000"},
]


@pytest.mark.parametrize("params", REENCODE_PARAMS, ids=repr)
def test_reencode_params_schema_matches_the_ffmpeg_arguments_it_builds(params: dict[str, Any]) -> None:
    runtime = ReencodeRuntime("ffmpeg", "ffprobe", None)  # type: ignore[arg-type]  # no sandbox to build arguments
    assert params_valid(ReencodeRuntime, params) == runs(runtime.command_line, params, "input.mp4")


@pytest.mark.parametrize(
    ("runtime", "params"),
    [(ReencodeRuntime, {"preset": "slow"}), (TextGenerationRuntime, {"temprature": 0.2}), (EmbeddingRuntime, {"n": 1})],
    ids=lambda value: getattr(value, "name", repr(value)),
)
def test_a_key_the_runtime_would_silently_ignore_is_refused_as_a_typo(runtime: Any, params: dict[str, Any]) -> None:
    """The one place a schema is stricter than the runtime: these runtimes know every key they read, so a key
    they do not know is a mistake the client should hear of, not a setting silently dropped."""
    assert not params_valid(runtime, params)
    if runtime is ReencodeRuntime:
        assert runs(ReencodeRuntime("ffmpeg", "ffprobe", None).command_line, params, "input.mp4")  # type: ignore[arg-type]
    elif runtime is TextGenerationRuntime:
        assert runs(GenerationParams.from_params, params)


def test_reencode_takes_its_media_as_an_uploaded_file_only() -> None:
    schemas = schemas_of(ReencodeRuntime)
    assert input_problem("reencode", schemas, None, "file_1") is None
    expected = "input for 'reencode': takes no inline input, only an uploaded file (input_file_id)"
    assert input_problem("reencode", schemas, "movie.mp4", None) == expected
    assert input_problem("reencode", schemas, None, None) == expected


# -- the domain's checks -----------------------------------------------------------------------------------


def test_an_uploaded_input_skips_the_input_schema_and_coordinator_keys_skip_the_params_schema() -> None:
    schemas = schemas_of(TextGenerationRuntime)
    assert input_problem("text-generation", schemas, None, "file_1") is None
    assert params_problem("text-generation", schemas, {"output_config": {"format": "json"}, "top_p": 0.5}) is None


def test_unmet_requirements_adds_schema_reasons_only_for_a_runtime_with_schemas() -> None:
    declared = Capabilities.with_schemas(
        frozenset({"text-generation", "command"}),
        schemas={"text-generation": schemas_of(TextGenerationRuntime)},
    )
    bad = JobSpec(type="text-generation", model=None, input={"x": 1}, params={"temprature": 1})
    assert unmet_requirements(bad, declared) == [
        "input for 'text-generation': must be a string (got an object)",
        "params for 'text-generation': unknown key 'temprature'",
    ]
    assert unmet_requirements(bad, declared, inputs=False) == []
    undeclared = JobSpec(type="command", model=None, input={"anything": True})
    assert unmet_requirements(undeclared, declared) == []
    legacy = Capabilities(frozenset({"text-generation"}))  # registered before schemas: takes anything
    assert unmet_requirements(bad, legacy) == []
    good = JobSpec(type="text-generation", model=None, input="hi", params={"temperature": 0})
    assert unmet_requirements(good, declared) == []


def test_reasons_are_cut_short_and_name_where_the_error_is() -> None:
    schemas = RuntimeSchemas.of({"type": "array", "items": {"type": "string", "maxLength": 3}})
    assert (
        input_problem("x", schemas, ["ok", "a" * 5000], None) == "input for 'x' at [1]: must have at most 3 characters"
    )
    enum = RuntimeSchemas.of({"enum": [f"value-{index}" for index in range(200)]})
    reason = input_problem("x", enum, "nope", None)
    assert reason is not None and len(reason) < 260 and reason.endswith("…")


def test_equal_schemas_compare_equal_whatever_their_key_order() -> None:
    one = RuntimeSchemas.of({"type": "string", "minLength": 1}, {"type": "object"})
    other = RuntimeSchemas.of({"minLength": 1, "type": "string"}, {"type": "object"})
    assert one == other and hash(one) == hash(other)
    assert schemas_from_json(schemas_to_json({"r": one})) == {"r": one}
    assert schemas_from_json(None) == {} and schemas_to_json({}) is None


def nested(depth: int) -> dict[str, Any]:
    """`{"items": {"items": … {}}}`: `depth` objects within each other."""
    schema: dict[str, Any] = {}
    for _ in range(depth - 1):
        schema = {"items": schema}
    return schema


def test_a_schema_nested_up_to_the_limit_is_taken() -> None:
    assert schema_problem(nested(MAX_SCHEMA_DEPTH)) is None


def test_a_self_referring_schema_on_a_value_nested_too_deep_gives_a_reason_not_an_error() -> None:
    schemas = RuntimeSchemas.of({"type": ["array", "string"], "items": {"$ref": "#"}})
    deep: Any = "x"
    for _ in range(5000):
        deep = [deep]
    assert input_problem("x", schemas, [[["a"]]], None) is None
    assert input_problem("x", schemas, deep, None) == "input for 'x': nested too deeply to check"


@pytest.mark.parametrize(
    ("schema", "words"),
    [
        ({"type": "strin"}, "is not valid under any of the given schemas"),
        ({"minimum": "a"}, "'a' is not of type 'number' at minimum"),
        ({"$ref": "https://example.com/schema.json"}, "points outside the schema"),
        ({"items": {"$ref": "other.json#/x"}}, "points outside the schema"),
        ({"$schema": "http://json-schema.org/draft-07/schema#"}, "draft 2020-12"),
        ({"enum": ["x" * 100] * (MAX_SCHEMA_BYTES // 100)}, f"over the limit of {MAX_SCHEMA_BYTES}"),
        (nested(MAX_SCHEMA_DEPTH + 1), f"nested over {MAX_SCHEMA_DEPTH} levels deep"),
        (nested(5000), f"nested over {MAX_SCHEMA_DEPTH} levels deep"),  # never a RecursionError (a 500)
    ],
)
def test_a_schema_that_is_not_usable_says_why(schema: Any, words: str) -> None:
    problem = schema_problem(schema)
    assert problem is not None and words in problem


def test_a_local_reference_is_followed_and_one_that_names_nothing_is_the_schemas_fault() -> None:
    local = {"$defs": {"prompt": {"type": "string"}}, "$ref": "#/$defs/prompt"}
    assert schema_problem(local) is None
    assert input_problem("x", RuntimeSchemas.of(local), "hi", None) is None
    assert input_problem("x", RuntimeSchemas.of(local), 5, None) == "input for 'x': must be a string (got an integer)"
    dangling = RuntimeSchemas.of({"$ref": "#/$defs/missing"})
    reason = input_problem("x", dangling, "hi", None)
    assert reason is not None and "its schema has a reference that names nothing" in reason


def test_a_pattern_that_backtracks_in_python_is_matched_in_linear_time() -> None:
    """`^(a+)+$` on a run of a's ending in `!` takes Python's `re` about 2**n steps (n = 26 here: seconds; 40
    would be days): a miner declaring it would stall the coordinator's loop at every check. RE2 answers at once,
    and the answers are the ones the pattern means."""
    schema = {"type": "string", "pattern": "^(a+)+$"}
    assert schema_problem(schema) is None
    schemas = RuntimeSchemas.of(schema)
    assert input_problem("x", schemas, "a" * 26, None) is None
    refused = input_problem("x", schemas, "a" * 26 + "!", None)
    assert refused is not None and "does not match" in refused
    params = RuntimeSchemas.of(None, {"type": "object", "propertyNames": {"pattern": "^[a-z]+$"}})
    assert params_problem("x", params, {"ok": 1}) is None  # propertyNames' pattern goes through RE2 too
    assert params_problem("x", params, {"NO": 1}) is not None


@pytest.mark.parametrize(
    ("schema", "says"),
    [
        ({"type": "string", "pattern": "^(?=a)a$"}, "not one RE2 compiles"),
        ({"type": "string", "pattern": r"^(a)\1$"}, "not one RE2 compiles"),
        ({"type": "object", "properties": {"k": {"pattern": "(?<!x)y"}}}, "not one RE2 compiles"),
        ({"type": "object", "patternProperties": {"^a": {}}}, "patternProperties is not supported"),
    ],
)
def test_patterns_re2_cannot_match_and_pattern_properties_are_refused(schema: dict[str, Any], says: str) -> None:
    problem = schema_problem(schema)
    assert problem is not None and says in problem


def test_a_pattern_key_in_data_is_not_taken_for_a_pattern() -> None:
    assert schema_problem({"enum": [{"pattern": "(?=not-a-pattern)"}]}) is None


def test_dollar_ends_the_text_as_in_json_schema_not_before_a_final_newline_as_in_python() -> None:
    """ECMA-262 (what JSON Schema's `pattern` means) and RE2 end `$` at the end of the text; Python's `re` also
    before a final newline, which would let `"run.sh\\n"` pass a file-name pattern."""
    schemas = RuntimeSchemas.of({"type": "string", "pattern": "^[a-z.]+$"})
    assert input_problem("x", schemas, "run.sh", None) is None
    assert input_problem("x", schemas, "run.sh\n", None) is not None
