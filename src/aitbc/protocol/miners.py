"""Miner-facing models: register, heartbeat, claim, start, progress, logs, complete, fail."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, StrictBool, model_validator

from aitbc.domain.job import FailureReason, JobStatus, Priority
from aitbc.domain.runtime_schemas import MAX_SCHEMA_BYTES, RuntimeSchemas, schema_problem
from aitbc.protocol.jobs import HardwareRequirements, JsonInput, Moment, Strict, Time
from aitbc.protocol.regions import Region

# The base64 text of 32 bytes: 43 characters, the last carrying 2 bits of padding, then one `=`.
ED25519_PUBLIC_KEY_PATTERN = r"^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$"
# The characters `check_package_path` refuses: Unicode categories Cc, Cf, Zl and Zp (a test holds this list to
# Python's Unicode database). Lone surrogates (Cs), refused too, cannot travel in a UTF-8 request at all.
FORBIDDEN_PATH_CHARACTERS = (
    (0x0, 0x1F), (0x7F, 0x9F), (0xAD, 0xAD), (0x600, 0x605), (0x61C, 0x61C), (0x6DD, 0x6DD), (0x70F, 0x70F),
    (0x890, 0x891), (0x8E2, 0x8E2), (0x180E, 0x180E), (0x200B, 0x200F), (0x2028, 0x202E), (0x2060, 0x2064),
    (0x2066, 0x206F), (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFB), (0x110BD, 0x110BD), (0x110CD, 0x110CD),
    (0x13430, 0x13438), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0001, 0xE0001), (0xE0020, 0xE007F),
)  # fmt: skip


def _escaped(code: int) -> str:
    """`\\uXXXX` or `\\UXXXXXXXX`: escapes both Python's `re` and the Rust regex engine of pydantic read."""
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


_FORBIDDEN = "".join(f"{_escaped(first)}-{_escaped(last)}" for first, last in FORBIDDEN_PATH_CHARACTERS)
_PLAIN = rf"[^/\\.{_FORBIDDEN}]"
_ANY = rf"[^/\\{_FORBIDDEN}]"
# One path segment of a result package: none of those characters, no slash or backslash, not `.` or `..`.
_SEGMENT = rf"(?:{_PLAIN}|\.{_PLAIN}|\.\.{_ANY}){_ANY}*"
# What `check_package_path` lets into a package, one path at a time: the fixed files, and anything under `logs/`
# or `artifacts/` (that no two paths of a package differ only by case, or are a file and a folder, is checked
# across the package).
RESULT_PATH_PATTERN = rf"^(?:output\.json|result\.txt|(?:logs|artifacts)(?:/{_SEGMENT})+)$"
RESULT_PATH_MAX_LENGTH = 500


class GpuSpec(Strict):
    model: str = Field(min_length=1, max_length=64)
    vram_gb: float = Field(ge=0, le=4096)


JsonSchema = dict[str, Any] | StrictBool


class RuntimeSchemaSpec(Strict):
    """What one runtime takes, as JSON Schemas (draft 2020-12); null: not declared (anything is taken)."""

    input: JsonSchema | None = Field(
        default=None, description="the job's inline `input` (a job whose input is an uploaded file skips it)"
    )
    parameters: JsonSchema | None = Field(
        default=None, description="the job's `params`, less the keys the coordinator adds itself (`output_config`)"
    )

    def declared(self) -> RuntimeSchemas:
        return RuntimeSchemas.of(self.input, self.parameters)


class RegisterRequest(Strict):
    name: str = Field(min_length=1, max_length=200)
    gpus: list[GpuSpec] = Field(default_factory=list, max_length=64)
    runtimes: list[str] = Field(min_length=1, max_length=32)
    models: list[str] = Field(default_factory=list, max_length=1000)
    max_concurrency: int = Field(default=1, ge=1, le=256)
    public_key: str = Field(pattern=ED25519_PUBLIC_KEY_PATTERN, description="Ed25519 public key, base64 (raw 32 bytes)")
    region: Region | None = Field(default=None, description="where the miner is (`us-west`), shown in the marketplace")
    schemas: dict[str, RuntimeSchemaSpec] | None = Field(
        default=None,
        max_length=32,
        description="by runtime (each one of `runtimes`): the JSON Schemas of the input and params it takes, each "
        f"at most {MAX_SCHEMA_BYTES} bytes of JSON; a job invalid for them is not given to this miner",
    )

    @model_validator(mode="after")
    def _valid_schemas(self) -> RegisterRequest:
        for runtime, spec in (self.schemas or {}).items():
            if runtime not in self.runtimes:
                raise ValueError(f"schemas names {runtime!r}, which is not one of this miner's runtimes")
            for part, schema in (("input", spec.input), ("parameters", spec.parameters)):
                problem = None if schema is None else schema_problem(schema)
                if problem is not None:
                    raise ValueError(f"schemas[{runtime!r}].{part} is not a usable JSON Schema: {problem}")
        return self

    def declared_schemas(self) -> dict[str, RuntimeSchemas]:
        return {runtime: spec.declared() for runtime, spec in (self.schemas or {}).items()}


class RegisterResponse(BaseModel):
    miner_id: str
    lease_seconds: int
    heartbeat_seconds: int = Field(
        description="heartbeat this often, idle or busy (the held heartbeat answers within it): a miner not heard "
        "from for the coordinator's lost window (three periods at least) is lost and its jobs go back to the queue"
    )


class HeartbeatRequest(Strict):
    lease_ids: list[str] = Field(default_factory=list, max_length=1024)
    wait_seconds: float = Field(default=0, ge=0, le=300, description="hold the answer until a job is canceled")


class LeaseState(BaseModel):
    job_id: str
    lease_id: str
    status: JobStatus
    active: bool
    cancel: bool
    lease_expires_at: Time | None


class HeartbeatResponse(BaseModel):
    leases: list[LeaseState]


class ClaimRequest(Strict):
    max_jobs: int = Field(default=1, ge=1, le=64)
    wait_seconds: float = Field(default=30, ge=0, le=300)
    start: bool = Field(
        default=False,
        description="also start every claimed job, in the claim's one transaction: the jobs come back `running` "
        "(billed from now, as a `start` call now would bill them), and no `start` call per job is needed",
    )


class InputFileRef(BaseModel):
    file_id: str
    name: str
    size: int
    sha256: str


class Assignment(BaseModel):
    job_id: str
    lease_id: str
    lease_expires_at: Time
    type: str
    model: str | None
    input: JsonInput
    input_file: InputFileRef | None
    params: dict[str, Any]
    requirements: HardwareRequirements
    priority: Priority
    timeout_seconds: int
    attempt: int
    status: JobStatus = Field(
        default=JobStatus.ASSIGNED, description="`running` when the claim also started the job (`start: true`)"
    )


class ClaimResponse(BaseModel):
    jobs: list[Assignment]


class LeaseRequest(Strict):
    lease_id: str = Field(min_length=1, max_length=40)


class ProgressRequest(LeaseRequest):
    progress: int | None = Field(default=None, ge=0, le=100)
    message: str | None = Field(default=None, max_length=2000)
    estimated_completion: Moment | None = None


class JobDirective(BaseModel):
    """The coordinator's answer to a miner about one job: carry on, or stop because it is being cancelled."""

    job_id: str
    status: JobStatus
    cancel: bool
    lease_expires_at: Time | None


class LogLine(Strict):
    stream: Literal["stdout", "stderr"] = "stdout"
    line: str = Field(max_length=16384)
    at: Moment | None = Field(default=None, description="when the job printed it (else: when it arrived)")


class LogsRequest(LeaseRequest):
    lines: list[LogLine] = Field(max_length=5000)


class ManifestFile(Strict):
    path: str = Field(max_length=RESULT_PATH_MAX_LENGTH, pattern=RESULT_PATH_PATTERN)
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Manifest(Strict):
    job_id: str
    miner_id: str
    files: list[ManifestFile] = Field(max_length=10000)


class UploadedFile(BaseModel):
    path: str
    size: int
    sha256: str


MAX_REPORTED_SECONDS = 10**7  # about 116 days: more than any job's timeout


class RunTimings(Strict):
    """How a job's time on the miner was spent, as the miner reports it: recorded in the receipt, never billed
    (billing uses `started_at`/`ended_at`, which a miner with a model starts once the model is ready)."""

    setup_seconds: float | None = Field(
        default=None,
        strict=True,
        ge=0,
        le=MAX_REPORTED_SECONDS,
        description="from the job's start to asking for its model",
    )
    model_load_seconds: float | None = Field(
        default=None,
        strict=True,
        ge=0,
        le=MAX_REPORTED_SECONDS,
        description="loading its model (0: warm; null: no model)",
    )
    model_warm: bool | None = Field(default=None, strict=True, description="whether its model was already loaded")
    run_seconds: float | None = Field(
        default=None,
        strict=True,
        ge=0,
        le=MAX_REPORTED_SECONDS,
        description="the work itself, from the model being ready",
    )
    upload_seconds: float | None = Field(
        default=None, strict=True, ge=0, le=MAX_REPORTED_SECONDS, description="uploading its result package"
    )


class FinishRequest(LeaseRequest):
    """Sent by `complete` and `fail`: the signed manifest of what was uploaded (possibly partial), when the
    work ran by the miner's clock (billing charges that, within the interval the coordinator observed), and
    how the job's time went (`timings`, for the receipt)."""

    manifest: Manifest | None = None
    signature: str | None = Field(default=None, max_length=200)
    exit_code: int | None = Field(default=None, ge=-(2**31), le=2**31 - 1)
    usage: dict[str, Any] = Field(default_factory=dict)
    started_at: Moment | None = Field(default=None, description="when the job's work began on the miner")
    ended_at: Moment | None = Field(default=None, description="when it ended (finished, failed or stopped)")
    timings: RunTimings | None = None

    @model_validator(mode="after")
    def _in_order(self) -> FinishRequest:
        if self.started_at is not None and self.ended_at is not None and self.ended_at < self.started_at:
            raise ValueError("ended_at is before started_at")
        return self


COMPLETE_BATCH_MAX = 64


class BatchCompleteItem(FinishRequest):
    """One job of a batch complete: its id, and exactly what `complete` takes for it."""

    job_id: str = Field(min_length=1, max_length=40)


class BatchCompleteRequest(Strict):
    jobs: list[BatchCompleteItem] = Field(min_length=1, max_length=COMPLETE_BATCH_MAX)

    @model_validator(mode="after")
    def _each_job_once(self) -> BatchCompleteRequest:
        seen: set[str] = set()
        for item in self.jobs:
            if item.job_id in seen:
                raise ValueError(f"job {item.job_id} is named twice")
            seen.add(item.job_id)
        return self


class ItemError(BaseModel):
    status: int = Field(description="the HTTP status the single `complete` would have answered (404, 409, 422)")
    code: str
    message: str


class BatchCompleteResult(BaseModel):
    """One job's answer: its directive, as the single `complete` answers, or the error that refused it alone."""

    job_id: str
    directive: JobDirective | None = None
    error: ItemError | None = None


class BatchCompleteResponse(BaseModel):
    results: list[BatchCompleteResult]


class FailRequest(FinishRequest):
    reason: FailureReason = FailureReason.RUNTIME_ERROR
    message: str = Field(default="", max_length=10000)
    retryable: bool = False
