"""Client-facing job models: submit, status, list, cancel, events."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
)

from aitbc.domain.clock import MOMENT_RANGE, in_moment_range, isoformat_z
from aitbc.domain.job import MAX_QUEUE_TIMEOUT_SECONDS, MAX_TIMEOUT_SECONDS, FailureReason, JobStatus, Priority
from aitbc.domain.labels import JOB_NAME_MAX_LENGTH, JOB_NAME_PATTERN, MAX_TAGS, TAG_MAX_LENGTH, TAG_PATTERN
from aitbc.domain.presets import NAME_MAX_LENGTH, NAME_PATTERN, WORKFLOW_REF_MAX_LENGTH, WORKFLOW_REF_PATTERN

JsonInput = str | dict[str, Any] | list[Any] | None
# AITBC amounts: exact decimals, written as fixed-point strings ("0.000083333"), never floats or exponents.
Money = Annotated[Decimal, PlainSerializer(lambda amount: format(amount, "f"), return_type=str, when_used="json")]
# A time an answer carries: ISO 8601 in UTC to the millisecond with a `Z` (`2026-12-01T13:24:10.123Z`). Typed
# on the fields that hold times, so serializing a model calls Python for those fields only.
Time = Annotated[
    datetime,
    PlainSerializer(isoformat_z, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}, mode="serialization"),
]


def _in_range(moment: datetime) -> datetime:
    if not in_moment_range(moment):
        raise ValueError(f"must be {MOMENT_RANGE}")
    return moment


# `from` and `to` of a filter: a day or a time, as `parse_moment` (in the API) reads them (a calendar-valid day
# is still checked there).
_DATE = r"[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
_TIME = r"[T ](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)?"
_ZONE = r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?"
MOMENT_PATTERN = rf"^(?:{_DATE}(?:{_TIME}{_ZONE})?)?$"

# A time a caller sends: with its zone (a naive time means nothing across machines), and in the range every
# conversion and both databases can hold.
Moment = Annotated[AwareDatetime, AfterValidator(_in_range)]


# A job's tag, as a request sends it (`domain.labels`).
Tag = Annotated[str, StringConstraints(min_length=1, max_length=TAG_MAX_LENGTH, pattern=TAG_PATTERN)]
JobName = Annotated[str, StringConstraints(min_length=1, max_length=JOB_NAME_MAX_LENGTH, pattern=JOB_NAME_PATTERN)]


class Strict(BaseModel):
    """Unknown fields are an error: a typo in a request should not be silently ignored."""

    model_config = ConfigDict(extra="forbid")


def _given(name: str) -> dict[str, Any]:
    """A JSON Schema clause: `name` is present and not null (a job needs its type, or a model to infer it, or a
    preset that gives them)."""
    return {"required": [name], "properties": {name: {"type": "string"}}}


class HardwareRequirements(Strict):
    """What hardware a job needs: what a miner is sent with each job it claims."""

    gpu_type: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9 _\-]+$")
    gpu_count: int = Field(default=1, ge=1, le=64)
    min_vram_gb: float | None = Field(default=None, ge=0, le=4096)


# A miner's id or name as a client names it: any text of a name but control characters.
MINER_REFERENCE_PATTERN = r"^[^\x00-\x1f\x7f]+$"


class JobRequirements(HardwareRequirements):
    miner_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        pattern=MINER_REFERENCE_PATTERN,
        description="run the job on this miner only (`--agent-id`): its id (`miner_…`) or its name; the status "
        "object shows the id it was resolved to. The miner must be connected and able to run the job",
    )


class OutputConfig(Strict):
    destination: str | None = Field(default=None, max_length=1000)
    format: str | None = Field(default=None, max_length=32)


class SubmitJobRequest(Strict):
    """A field the request sets wins over the template's and the workflow's (`params`: key by key); one it
    leaves out comes from them, else from the defaults here."""

    model_config = ConfigDict(
        json_schema_extra={"anyOf": [_given("type"), _given("model"), _given("template"), _given("workflow")]}
    )

    type: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    model: str | None = Field(default=None, min_length=1, max_length=200)
    input: JsonInput = None
    input_file_id: str | None = Field(default=None, max_length=40)
    params: dict[str, Any] = Field(default_factory=dict)
    requirements: JobRequirements = Field(default_factory=JobRequirements)
    priority: Priority = Priority.NORMAL
    timeout_seconds: int = Field(default=3600, ge=1, le=MAX_TIMEOUT_SECONDS)
    queue_timeout_seconds: int | None = Field(
        default=None,
        ge=1,
        le=MAX_QUEUE_TIMEOUT_SECONDS,
        description="how long the job may wait for a miner before it expires at no charge (default: the "
        "coordinator's queue TTL, 24 h). A job no connected miner can run is refused unless this is set; with "
        "it, the job is accepted with a warning and waits that long for one",
    )
    output_config: OutputConfig | None = None
    template: str | None = Field(
        default=None, min_length=1, max_length=NAME_MAX_LENGTH, pattern=NAME_PATTERN, description="your template"
    )
    workflow: str | None = Field(
        default=None,
        min_length=1,
        max_length=WORKFLOW_REF_MAX_LENGTH,
        pattern=WORKFLOW_REF_PATTERN,
        description="a workflow: NAME (its newest version) or NAME@VERSION; `params` may set only its allowed keys",
    )
    name: JobName | None = Field(default=None, description="your name for the job: one line, up to 200 characters")
    tags: list[Tag] = Field(
        default_factory=list,
        max_length=MAX_TAGS,
        description=f"up to {MAX_TAGS} labels to find the job by (letters, digits, `_ . : -`; up to 64 each)",
    )


class ResultLinks(BaseModel):
    """Where a completed job's result is: its main output, the package's listing and the whole package."""

    result_file: str = Field(description="GET: result.txt, the job's main output (Range honoured)")
    package: str = Field(description="GET: the package's files, sizes and sha256s")
    download: str = Field(description="GET: the whole package as a zip, streamed")


def result_links(job_id: str) -> ResultLinks:
    return ResultLinks(
        result_file=f"/v1/jobs/{job_id}/files/result.txt",
        package=f"/v1/jobs/{job_id}/results",
        download=f"/v1/jobs/{job_id}/download",
    )


class JobView(BaseModel):
    """The status object: the seed's fields and the rest of what a client needs to follow a job."""

    job_id: str
    status: JobStatus
    progress: int
    progress_message: str | None = None
    miner_id: str | None
    created_at: Time
    started_at: Time | None
    estimated_completion: Time | None
    completed_at: Time | None
    updated_at: Time
    type: str
    model: str | None
    priority: Priority
    timeout_seconds: int
    requirements: JobRequirements
    params: dict[str, Any] = Field(default_factory=dict)
    attempt: int
    max_attempts: int
    error: str | None
    failure_reason: FailureReason | None
    exit_code: int | None = None
    results: str
    results_expire_at: Time | None = None
    result: Any = Field(
        default=None,
        description="the text of the job's result.txt (up to 1 MiB of UTF-8), in the answer to a request that "
        "waited for the job (`Prefer: wait`) once it has ended; else null: download the results",
    )
    result_links: ResultLinks | None = Field(
        default=None, description="where a completed job's result is, while it is kept (result.txt, listing, zip)"
    )
    waiting_for: str | None = None
    retry_of: str | None = None
    template: str | None = Field(default=None, description="the template the job's settings came from")
    workflow: str | None = Field(default=None, description="the workflow they came from, as NAME@VERSION")
    name: str | None = Field(default=None, description="the name the client gave the job")
    tags: list[str] = Field(default_factory=list, description="the job's tags")
    estimated_cost: Money = Field(description="AITBC: the estimated run time at the job's rate")
    estimated_time_seconds: int
    max_cost: Money = Field(description="AITBC held at submit: the timeout at the job's rate")
    cost: Money | None = Field(default=None, description="AITBC charged, once the job has ended")
    billed_seconds: int | None = None


class SubmittedJobView(JobView):
    """The answer to a submit: the status object, and what the client should know about the job's prospects."""

    warnings: list[str] = Field(
        default_factory=list,
        description="e.g. that no connected miner can run the job now, so it waits (at most its queue timeout)",
    )


class JobList(BaseModel):
    jobs: list[JobView]
    total: int
    has_more: bool
    next_cursor: str | None


class CancelResult(BaseModel):
    """The outcome of a cancel: `canceling` (the miner is stopping it), `canceled`, or `failed` (the job had
    already finished; nothing changed)."""

    job_id: str
    outcome: Literal["canceling", "canceled", "failed"]
    status: JobStatus
    reason: str | None = None
    message: str
    job: JobView


# An input file's name: `upload_input` keeps the part after the last slash, which must not be blank or only dots
# (and at most 255 characters); no control character anywhere.
INPUT_FILE_NAME_PATTERN = r"^[^\x00-\x1f]*[^/\\\x00-\x1f.\s][^/\\\x00-\x1f]*$"
INPUT_FILE_NAME_MAX_LENGTH = 1024
# The body of a streamed upload (an input file, a result file): raw bytes, not JSON.
RAW_BODY = {
    "required": True,
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
}


class FileView(BaseModel):
    file_id: str
    name: str
    size: int
    sha256: str
    created_at: Time


class EventMessage(BaseModel):
    seq: int
    job_id: str
    kind: str
    status: JobStatus
    progress: int
    at: Time
    data: dict[str, Any] = Field(default_factory=dict)
