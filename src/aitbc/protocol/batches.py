"""Batch submission: many jobs in one request and one transaction, a result per item, in order."""

from __future__ import annotations

from pydantic import BaseModel, Field

from aitbc.protocol.jobs import JobView, SubmitJobRequest

MAX_BATCH_JOBS = 1000
# A batch body may be this large (its items' inline inputs each still under the per-job limit).
MAX_BATCH_BYTES = 16 * 1024 * 1024


class BatchJobRequest(SubmitJobRequest):
    """One job of a batch: the fields of POST /v1/jobs, and the Idempotency-Key a single submit sends as a
    header (an item replayed with its key answers the job it made)."""

    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)

    def job_request(self) -> SubmitJobRequest:
        """The item without its key: what a single submit of the same job would have sent as its body."""
        fields = {name: getattr(self, name) for name in SubmitJobRequest.model_fields if name in self.model_fields_set}
        return SubmitJobRequest.model_construct(_fields_set=set(fields), **fields)


class SubmitBatchRequest(BaseModel):
    jobs: list[BatchJobRequest] = Field(
        min_length=1,
        max_length=MAX_BATCH_JOBS,
        description=f"1 to {MAX_BATCH_JOBS} jobs; all are stored or, if one is refused, none",
    )


class BatchItemResult(BaseModel):
    """What became of one item: its job, and whether this request made it (False: its key's replay)."""

    index: int
    created: bool
    job: JobView
    warnings: list[str] = Field(default_factory=list, description="as a single submit's answer says them")


class BatchResult(BaseModel):
    jobs: list[BatchItemResult] = Field(description="one result per item, in the order of the request")
    created: int = Field(description="how many jobs this request made (the rest were replays of their keys)")
