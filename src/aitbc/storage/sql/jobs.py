"""The SQL job store: every query on jobs, their events and their files, and every guarded transition."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, assert_never

from sqlalchemy import Connection, Row, bindparam, delete, func, insert, or_, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.expression import ClauseElement

from aitbc.domain.errors import AitbcError, Conflict, PaymentRequired, RateLimited, at_item
from aitbc.domain.events import JobEvent
from aitbc.domain.job import LEASED_STATUSES, TERMINAL_STATUSES, Job, JobStatus
from aitbc.domain.money import display, from_units
from aitbc.domain.moves import (
    Billed,
    CancelPending,
    Claim,
    Complete,
    ConfirmCancel,
    Expire,
    Fail,
    ForceCancel,
    MinerReport,
    RequestCancel,
    Requeue,
    Start,
    WriteSet,
)
from aitbc.domain.package import ResultsState
from aitbc.domain.plans import Plan
from aitbc.domain.spending import ALERT_EVENT, SpendingAlert, alert_data, month_of, over_limit
from aitbc.domain.transitions import transition
from aitbc.storage.interfaces import (
    Changed,
    GuardedMove,
    JobFilter,
    JobPage,
    LedgerEntry,
    NewJob,
    ResultFile,
    StoredFile,
    StoredResult,
)
from aitbc.storage.sql.database import Database
from aitbc.storage.sql.job_pages import ACCOUNT_PLAN, encode_cursor, page_statement
from aitbc.storage.sql.ledger import write_ledger
from aitbc.storage.sql.one_statement import every_row, first, rows_changed, scalar
from aitbc.storage.sql.prepared import run, run_first, run_many
from aitbc.storage.sql.rows import event_from_row, job_from_mapping, job_from_row
from aitbc.storage.sql.tables import (
    accounts,
    input_files,
    job_counts,
    job_events,
    job_results,
    job_tags,
    jobs,
    miners,
    result_files,
)

_LEASED = [s.value for s in LEASED_STATUSES]
_HELD = [*_LEASED, JobStatus.CANCELING.value]
_UNFINISHED = [s.value for s in JobStatus if s not in TERMINAL_STATUSES]


# The point reads of the hot path, built once (building a statement costs more than SQLite takes to run it).
_JOB = select(jobs).where(jobs.c.id == bindparam("job_id"))
_JOB_WITH_PLAN = (
    select(jobs, ACCOUNT_PLAN)
    .outerjoin(accounts, accounts.c.id == jobs.c.account_id)
    .where(jobs.c.id == bindparam("job_id"))
)


# The writes of the hot path, built once too: building and cache-keying a statement cost SQLAlchemy more than
# SQLite takes to run it (a submit's unit of work spent two thirds of its time there).
_UNFINISHED_OF_ACCOUNT = (
    select(func.coalesce(func.sum(job_counts.c.count), 0))
    .where(job_counts.c.account_id == accounts.c.id, or_(*(job_counts.c.status == status for status in _UNFINISHED)))
    .scalar_subquery()
)
# The account's standing, locked: its balance, unfinished jobs, and its spending cap with the totals it is checked
# against, all columns of the account's row (an account without a cap costs nothing more to read).
_STANDING = (
    select(
        accounts.c.balance_units,
        _UNFINISHED_OF_ACCOUNT,
        accounts.c.monthly_limit_units,
        accounts.c.held_units,
        accounts.c.charged_month,
        accounts.c.month_charged_units,
    )
    .where(accounts.c.id == bindparam("standing_account"))
    .with_for_update(of=accounts)
)
_NEXT_SEQS = (
    update(accounts)
    .where(accounts.c.id == bindparam("seq_account"))
    .values(event_seq=accounts.c.event_seq + bindparam("seq_count"))
    .returning(accounts.c.event_seq)
)
_INSERT_JOBS = insert(jobs)
_NO_COLUMNS = dict.fromkeys(jobs.c.keys())  # a new job's row: what it is inserted with, NULL elsewhere
_INSERT_EVENTS = insert(job_events)
_INSERT_TAGS = insert(job_tags)
_DELETE_RESULT = delete(job_results).where(job_results.c.job_id == bindparam("result_job"))
_INSERT_RESULT = insert(job_results)
_BY_IDEMPOTENCY_KEY = select(jobs).where(
    jobs.c.account_id == bindparam("key_account"), jobs.c.idempotency_key == bindparam("key")
)


def _plan(value: str | None) -> Plan:
    """The plan read with a job (an account that is gone counts as free, as `Retention.plan_of` has it)."""
    return Plan(value) if value is not None else Plan.FREE


def _next_seqs(connection: Connection, account_id: str, count: int) -> range:
    """Take the account's next `count` event numbers in one update."""
    ((last,),) = run(connection, _NEXT_SEQS, {"seq_account": account_id, "seq_count": count})
    last = int(last)
    return range(last - count + 1, last + 1)


def _write_events(
    connection: Connection, made: Sequence[Job], kind: str, now: datetime, data: Mapping[str, Any]
) -> list[JobEvent]:
    """One event per job, all of one account (a batch's jobs are), numbered in order and inserted at once."""
    if not made:
        return []
    seqs = _next_seqs(connection, made[0].account_id, len(made))
    rows: list[dict[str, Any]] = [
        {
            "account_id": job.account_id,
            "seq": seq,
            "job_id": job.id,
            "kind": kind,
            "status": job.status.value,
            "progress": job.progress,
            "at": now,
            "data": dict(data),
        }
        for job, seq in zip(made, seqs, strict=True)
    ]
    run_many(connection, _INSERT_EVENTS, rows)
    return [JobEvent(**row) for row in rows]


def _write_event(connection: Connection, job: Job, kind: str, now: datetime, data: Mapping[str, Any]) -> JobEvent:
    (event,) = _write_events(connection, [job], kind, now, data)
    return event


def _forget_unlisted_files(connection: Connection, result: StoredResult) -> None:
    """With the result, the job's files that its manifest does not list (other attempts', extra uploads) are
    no longer referenced; their blobs are left for the purge to remove."""
    listed = [str(entry["path"]) for entry in result.manifest.get("files", [])]
    connection.execute(
        delete(result_files).where(
            result_files.c.job_id == result.job_id,
            or_(result_files.c.lease_id != result.lease_id, result_files.c.path.not_in(listed)),
        )
    )


def _report_columns(report: MinerReport | None) -> dict[str, Any]:
    if report is None:
        return {}
    return {
        "result_lease_id": report.result_lease_id,
        "results_state": report.results_state.value,
        "exit_code": report.exit_code,
        "reported_started_at": report.started_at,
        "reported_ended_at": report.ended_at,
    }


def _move_columns(write: WriteSet) -> dict[str, Any]:
    """The job columns a move writes besides its status: the one place a write-set becomes column values."""
    match write:
        case Claim():
            return {
                "miner_id": write.miner_id,
                "lease_id": write.lease_id,
                "lease_expires_at": write.lease_expires_at,
                "assigned_at": write.assigned_at,
                "progress": 0,
                "progress_message": None,
                "attempt": jobs.c.attempt + 1,
            }
        case Start():
            return {"started_at": write.started_at, "lease_expires_at": write.lease_expires_at}
        case Complete():
            return {"completed_at": write.completed_at, "progress": 100, **_report_columns(write.report)}
        case Fail():
            return {
                "completed_at": write.completed_at,
                "failure_reason": write.failure_reason.value,
                "error": write.error,
                **_report_columns(write.report),
            }
        case Requeue():
            return {
                "miner_id": None,
                "lease_id": None,
                "lease_expires_at": None,
                "assigned_at": None,
                "started_at": None,
                "progress": 0,
                "progress_message": None,
                "estimated_completion": None,
                "error": write.error,
            }
        case Expire():
            return {
                "completed_at": write.completed_at,
                "failure_reason": write.failure_reason.value,
                "error": write.error,
            }
        case CancelPending():
            return {"completed_at": write.completed_at, "cancel_requested_at": write.completed_at}
        case RequestCancel():
            return {"cancel_requested_at": write.cancel_requested_at, "lease_expires_at": write.lease_expires_at}
        case ConfirmCancel():
            return {"completed_at": write.completed_at, **_report_columns(write.report)}
        case ForceCancel():
            return {
                "completed_at": write.completed_at,
                "lease_id": None,
                "lease_expires_at": None,
                "error": write.error,
            }
    assert_never(write)


# The queue's head for each set of runtimes a miner offers (see `SqlJobStore.queued`).
_QUEUE_HEADS: dict[tuple[str, ...], Any] = {}
# Pinned jobs (`--agent-id`), on the partial index `ix_jobs_pinned` (pinned jobs only): those whose miner is
# lost (the reaper fails them `no_miner`), and one miner's (checked when it registers again).
_PINNED = (jobs.c.status == JobStatus.PENDING.value, jobs.c.pinned_miner_id.is_not(None))
_PINNED_TO_LOST = (
    select(jobs)
    .select_from(jobs.outerjoin(miners, miners.c.id == jobs.c.pinned_miner_id))
    .where(*_PINNED, or_(miners.c.id.is_(None), miners.c.last_seen_at < bindparam("since")))
    .order_by(jobs.c.created_at, jobs.c.id)
    .limit(bindparam("batch"))
)
# The jobs held (assigned, running, canceling) by miners not heard from since `since`: a range of
# `ix_miners_last_seen_at`, each miner's held jobs on `ix_jobs_miner_status`. The reaper hands them back (see
# `Reaper.run_once`) once its own view agrees that the miner is lost.
_HELD_BY_LOST = (
    select(jobs)
    .select_from(jobs.join(miners, miners.c.id == jobs.c.miner_id))
    .where(jobs.c.status.in_(_HELD), miners.c.last_seen_at < bindparam("since"))
    .order_by(miners.c.last_seen_at, jobs.c.id)
    .limit(bindparam("batch"))
)
_PINNED_PENDING = (
    select(jobs)
    .where(*_PINNED, jobs.c.pinned_miner_id == bindparam("pinned_to"))
    .order_by(jobs.c.created_at, jobs.c.id)
    .limit(bindparam("batch"))
)
# Each shape of guarded UPDATE (a move, whether it checks a lease or an expiry, the columns it writes), built
# once and then run with the move's values as parameters. The shapes are few: moves × what they write.
_GUARDED_UPDATES: dict[tuple[Any, ...], Any] = {}


def _guarded_update(guarded: GuardedMove, now: datetime) -> tuple[Any, dict[str, Any]] | None:
    """The compare-and-set UPDATE … RETURNING for one move and its parameters, or None when it cannot apply
    (no lease named)."""
    rule = transition(guarded.move)
    if rule.needs_lease and guarded.lease_id is None:
        return None
    values = _move_columns(guarded.write)
    if guarded.billed is not None:
        billed = guarded.billed
        values.update(
            cost_units=billed.cost_units,
            billed_seconds=billed.billed_seconds,
            billed_from=billed.billed_from,
            billed_until=billed.billed_until,
        )
    values.update(status=rule.target.value, updated_at=now)
    expires = guarded.lease_expired_by is not None
    shape = (guarded.move, expires, tuple(values))
    statement = _GUARDED_UPDATES.get(shape)
    if statement is None:
        statement = update(jobs).where(
            jobs.c.id == bindparam("guard_job"), or_(*(jobs.c.status == source.value for source in rule.sources))
        )
        if rule.needs_lease:
            statement = statement.where(jobs.c.lease_id == bindparam("guard_lease"))
        if expires:
            statement = statement.where(jobs.c.lease_expires_at < bindparam("guard_expired_by"))
        columns = {
            name: value if isinstance(value, ClauseElement) else bindparam(f"set_{name}", type_=jobs.c[name].type)
            for name, value in values.items()
        }
        statement = _GUARDED_UPDATES[shape] = statement.values(columns).returning(*jobs.c)
    parameters = {f"set_{name}": value for name, value in values.items() if not isinstance(value, ClauseElement)}
    parameters.update(guard_job=guarded.job_id, guard_lease=guarded.lease_id, guard_expired_by=guarded.lease_expired_by)
    return statement, parameters


def _write_status_events(
    connection: Connection, moved: Sequence[tuple[Job, Mapping[str, Any]]], now: datetime
) -> list[JobEvent]:
    """The status event of each move, in order: one numbering update and one insert per account, however many
    moves the transaction made (a miner's batch is usually one account's jobs, or a few)."""
    by_account: dict[str, list[int]] = {}
    for index, (job, _) in enumerate(moved):
        by_account.setdefault(job.account_id, []).append(index)
    rows: list[dict[str, Any]] = [{} for _ in moved]
    for account_id, indexes in sorted(by_account.items()):
        for index, seq in zip(indexes, _next_seqs(connection, account_id, len(indexes)), strict=True):
            job, data = moved[index]
            rows[index] = {
                "account_id": job.account_id,
                "seq": seq,
                "job_id": job.id,
                "kind": "status",
                "status": job.status.value,
                "progress": job.progress,
                "at": now,
                "data": dict(data),
            }
    if rows:
        run_many(connection, _INSERT_EVENTS, rows)
    return [JobEvent(**row) for row in rows]


def _check_account_can_submit(
    connection: Connection,
    account_id: str,
    holds: Sequence[tuple[int, int]],
    max_active: int | None,
    batch: bool,
    month: int,
) -> None:
    """Whether the account may add these jobs (`holds`: each one's index in its request and what it holds),
    under the account's row lock (PostgreSQL; SQLite writes are serial anyway), so two submits racing for the
    last credit, or the last of the month's spending limit, cannot both pass. The balance, the unfinished jobs
    (from the maintained counts) and the spending cap with what counts toward it are read with the lock, in one
    statement. In a batch, the error names the first item that does not fit."""
    standing = run(connection, _STANDING, {"standing_account": account_id})
    found = standing[0] if standing else None
    balance, count = (int(found[0]), int(found[1])) if found is not None else (0, 0)
    if max_active is not None and count + len(holds) > max_active:
        if not batch:
            raise RateLimited(
                f"your plan allows {max_active} unfinished jobs at once and you have {count}: wait for some to "
                "finish or cancel them",
                retry_after=30,
            )
        capped = RateLimited(
            f"your plan allows {max_active} unfinished jobs at once; you have {count} and this batch would add "
            f"{len(holds)}: submit fewer, or wait for some to finish or cancel them",
            retry_after=30,
        )
        raise at_item(capped, holds[max(0, max_active - count)][0])
    total = sum(hold for _, hold in holds)
    if not total:
        return
    if balance < total:
        raise _short_balance(holds, balance, batch)
    if found is not None and found[2] is not None:
        limit, held = int(found[2]), int(found[3])
        charged = int(found[5]) if found[4] == month else 0
        if charged + held + total > limit:
            raise _over_limit(holds, limit, charged, held, batch)


def _short_balance(holds: Sequence[tuple[int, int]], balance: int, batch: bool) -> AitbcError:
    """The refusal of holds the balance cannot cover; in a batch, naming the first item that does not fit."""
    total = sum(hold for _, hold in holds)
    if not batch:
        return PaymentRequired(
            f"this job can cost up to {display(from_units(total))} AITBC (its timeout at its rate) but the "
            f"available balance is {display(from_units(balance))} AITBC: lower --timeout, or ask an admin for "
            "credits (aitbc admin credits grant)"
        )
    running = 0
    for index, hold in holds:
        running += hold
        if running > balance:
            short = PaymentRequired(
                f"this job can cost up to {display(from_units(hold))} AITBC (its timeout at its rate), "
                f"{display(from_units(running))} AITBC with the batch's jobs before it, but the available balance "
                f"is {display(from_units(balance))} AITBC: lower the timeouts, submit fewer jobs, or ask an admin "
                "for credits (aitbc admin credits grant)"
            )
            return at_item(short, index)
    raise AssertionError("the holds fit the balance")


def _over_limit(holds: Sequence[tuple[int, int]], limit: int, charged: int, held: int, batch: bool) -> AitbcError:
    """The refusal naming the cap, what is charged and held, and (in a batch) the first item that passes it."""
    running = 0
    for index, hold in holds:
        if charged + held + running + hold > limit:
            refused = over_limit(limit, charged, held, hold, running)
            return at_item(refused, index) if batch else refused
        running += hold
    raise AssertionError("the holds fit the limit")


def new_job_values(new: NewJob) -> dict[str, Any]:
    """The row a new job is inserted as: pending, at 0 %, no attempt yet and no results."""
    spec = new.spec
    return {
        "id": new.id,
        "account_id": new.account_id,
        "type": spec.type,
        "model": spec.model,
        "input": spec.input,
        "input_file_id": spec.input_file_id,
        "params": spec.params,
        "gpu_type": spec.requirements.gpu_type,
        "gpu_count": spec.requirements.gpu_count,
        "min_vram_gb": spec.requirements.min_vram_gb,
        "pinned_miner_id": spec.requirements.miner_id,
        "priority": spec.priority.value,
        "priority_rank": spec.priority.rank,
        "timeout_seconds": spec.timeout_seconds,
        "template": spec.template,
        "workflow": spec.workflow,
        "name": spec.name,
        "tags": list(spec.tags) or None,
        "status": JobStatus.PENDING.value,
        "progress": 0,
        "attempt": 0,
        "max_attempts": new.max_attempts,
        "created_at": new.created_at,
        "updated_at": new.created_at,
        "queue_expires_at": new.queue_expires_at,
        "results_state": ResultsState.NONE.value,
        "idempotency_key": new.idempotency_key,
        "request_hash": new.request_hash,
        "retry_of": new.retry_of,
        "max_cost_units": new.max_cost_units,
        "estimated_cost_units": new.estimated_cost_units,
        "estimated_time_seconds": new.estimated_time_seconds,
    }


def _replayed(new: NewJob, stored: Any, batch: bool) -> Job:
    """The job an idempotency key already made. In a batch, only if this item is the request that made it (a
    single submit checks that itself, after the answer: it has nothing else to roll back)."""
    if batch and stored.request_hash != new.request_hash:
        raise Conflict(
            f"Idempotency-Key {stored.idempotency_key!r} was already used for a different request (job {stored.id})"
        )
    return job_from_row(stored)


def _by_idempotency_keys(connection: Connection, account_id: str, keys: Sequence[str]) -> dict[str, Any]:
    if not keys:
        return {}
    if len(keys) == 1:  # a single submit's key: the statement built once
        found = connection.execute(_BY_IDEMPOTENCY_KEY, {"key_account": account_id, "key": keys[0]}).first()
        return {found.idempotency_key: found} if found is not None else {}
    query = select(jobs).where(jobs.c.account_id == account_id, jobs.c.idempotency_key.in_(list(keys)))
    return {row.idempotency_key: row for row in connection.execute(query)}


def _insert_jobs(
    connection: Connection,
    account_id: str,
    keys: Sequence[str],
    new: Sequence[NewJob],
    now: datetime,
    max_active: int | None,
    batch: bool,
) -> list[tuple[Job, JobEvent | None]]:
    stored = _by_idempotency_keys(connection, account_id, keys)
    answers: list[tuple[Job, JobEvent | None] | None] = []
    fresh: list[tuple[int, NewJob]] = []
    for index, item in enumerate(new):
        used = stored.get(item.idempotency_key or "")
        if used is None:
            answers.append(None)
            fresh.append((index, item))
            continue
        try:
            answers.append((_replayed(item, used, batch), None))
        except Conflict as error:
            raise at_item(error, index) from None
    if fresh:
        made = _insert_fresh(connection, account_id, fresh, now, max_active, batch)
        for (index, _), inserted in zip(fresh, made, strict=True):
            answers[index] = inserted
    return [answer for answer in answers if answer is not None]


def _insert_fresh(
    connection: Connection,
    account_id: str,
    fresh: Sequence[tuple[int, NewJob]],
    now: datetime,
    max_active: int | None,
    batch: bool,
) -> list[tuple[Job, JobEvent | None]]:
    holds = [(index, item.hold_units) for index, item in fresh]
    ledger = [
        LedgerEntry(account_id, "hold", -item.hold_units, item.id, "held until the job ends")
        for _, item in fresh
        if item.hold_units
    ]
    _check_account_can_submit(connection, account_id, holds, max_active, batch, month_of(now))
    if ledger:
        write_ledger(connection, ledger, now)
    rows = [new_job_values(item) for _, item in fresh]
    run_many(connection, _INSERT_JOBS, rows)
    tags = [
        {"account_id": item.account_id, "tag": tag, "created_at": item.created_at, "job_id": item.id}
        for _, item in fresh
        for tag in item.spec.tags
    ]
    if tags:  # a job without tags writes nothing here
        run_many(connection, _INSERT_TAGS, tags)
    made = [job_from_mapping(_NO_COLUMNS | row) for row in rows]
    events = _write_events(connection, made, "status", now, {})
    return list(zip(made, events, strict=True))


def _apply_moves(
    connection: Connection,
    moves: Sequence[GuardedMove],
    updates: Sequence[tuple[Any, dict[str, Any]] | None],
    now: datetime,
    postgres: bool,
) -> list[Changed | None]:
    """The guarded updates of `moves` (prepared as `updates`), with their results, ledger rows and events, on
    `connection` in the caller's transaction: an answer per move, None where its guard failed."""
    # Rows are locked in one order whatever order the caller gave: first the accounts of the jobs (by id),
    # then the jobs (by id, a job's own moves in turn), then what triggers keep per account (counts, stats
    # totals). A move takes its account's per-status rows; without the account first, two batches of one
    # account's jobs (or a batch and a single finish) could each hold a job the other waits for while
    # holding the totals the other needs. SQLite has one writer: nothing to order there.
    order = sorted(range(len(moves)), key=lambda index: moves[index].job_id)
    if postgres:
        job_ids = sorted({guarded.job_id for guarded in moves})
        owners = select(jobs.c.account_id).where(jobs.c.id.in_(job_ids)).scalar_subquery()
        locking = select(accounts.c.id).where(accounts.c.id.in_(owners)).order_by(accounts.c.id)
        connection.execute(locking.with_for_update())
    applied: list[tuple[int, Job, Mapping[str, Any]]] = []
    ledger: list[LedgerEntry] = []
    for index in order:
        guarded, prepared = moves[index], updates[index]
        if prepared is None:
            continue
        row = run_first(connection, *prepared)
        if row is None:
            continue
        job = job_from_mapping(row)
        ledger.extend(guarded.ledger)
        if guarded.result is not None:
            connection.execute(_DELETE_RESULT, {"result_job": job.id})
            connection.execute(_INSERT_RESULT, guarded.result.__dict__)
            _forget_unlisted_files(connection, guarded.result)
        applied.append((index, job, {"move": guarded.move.value, **(guarded.event_data or {})}))
    applied.sort(key=lambda item: item[0])  # events in the caller's order
    alerts = write_ledger(connection, ledger, now) if ledger else []
    events = _write_status_events(connection, [(job, data) for _, job, data in applied], now)
    alerted = _write_alert_events(connection, alerts, [job for _, job, _ in applied], now)
    answers: list[Changed | None] = [None] * len(moves)
    for (index, job, _), event in zip(applied, events, strict=True):
        answers[index] = Changed(job=job, event=event, alerts=tuple(alerted.get(job.id, ())))
    return answers


def _write_alert_events(
    connection: Connection, alerts: Sequence[SpendingAlert], moved: Sequence[Job], now: datetime
) -> dict[str, list[JobEvent]]:
    """The `billing.alert` event of each alert recorded, after the status events: numbered in its account's
    sequence (so a stream resumes across it), carrying the job whose settlement crossed the threshold, as it is
    now. By job id."""
    by_id = {job.id: job for job in moved}
    written: dict[str, list[JobEvent]] = {}
    for alert in alerts:
        job = by_id.get(alert.job_id)
        if job is not None:
            written.setdefault(job.id, []).append(_write_event(connection, job, ALERT_EVENT, now, alert_data(alert)))
    return written


class SqlJobStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def insert_job(
        self, new: NewJob, now: datetime, max_active: int | None = None
    ) -> tuple[Job, JobEvent | None]:
        job, event, _ = await self.insert_job_and_move(new, now, max_active)
        return job, event

    async def insert_job_and_move(
        self, new: NewJob, now: datetime, max_active: int | None = None, then: Sequence[GuardedMove] = ()
    ) -> tuple[Job, JobEvent | None, list[Changed | None]]:
        updates = [_guarded_update(guarded, now) for guarded in then]
        postgres = self._db.dialect == "postgresql"
        moved: list[Changed | None] = [None] * len(then)

        def and_move(connection: Connection, inserted: list[tuple[Job, JobEvent | None]]) -> None:
            moved[:] = [None] * len(then)
            if then and inserted[0][1] is not None:  # a replayed key inserted nothing: nothing of it to move
                moved[:] = _apply_moves(connection, then, updates, now, postgres)

        ((job, event),) = await self._insert([new], now, max_active, batch=False, then=and_move)
        return job, event, moved

    async def insert_jobs(
        self, new: Sequence[NewJob], now: datetime, max_active: int | None = None
    ) -> list[tuple[Job, JobEvent | None]]:
        return await self._insert(new, now, max_active, batch=True)

    async def _insert(
        self,
        new: Sequence[NewJob],
        now: datetime,
        max_active: int | None,
        batch: bool,
        then: Callable[[Connection, list[tuple[Job, JobEvent | None]]], None] | None = None,
    ) -> list[tuple[Job, JobEvent | None]]:
        """The one insert of jobs, one unit of work: replays of used idempotency keys answered from the store,
        the rest inserted with their events and holds in one transaction (or, if one does not fit, none of
        them); `then` runs in that transaction after them."""
        if not new:
            return []
        account_id = new[0].account_id
        keys = [item.idempotency_key for item in new if item.idempotency_key is not None]

        def work(connection: Connection) -> list[tuple[Job, JobEvent | None]]:
            inserted = _insert_jobs(connection, account_id, keys, new, now, max_active, batch)
            if then is not None:
                then(connection, inserted)
            return inserted

        try:
            return await self._db.write(work)
        except IntegrityError:
            if not keys:
                raise
            return await self._db.write(work)  # a concurrent submit used one of the keys first: a replay now

    async def average_billed_seconds(self, job_type: str, model: str | None, sample: int) -> float | None:
        recent = (
            select(jobs.c.billed_seconds)
            .where(
                jobs.c.type == job_type,
                jobs.c.model.is_(None) if model is None else jobs.c.model == model,
                jobs.c.status == JobStatus.COMPLETED.value,
                jobs.c.billed_seconds.is_not(None),
            )
            .order_by(jobs.c.completed_at.desc())
            .limit(sample)
            .subquery()
        )
        value = await self._db.read(scalar(select(func.avg(recent.c.billed_seconds))))
        return float(value) if value is not None else None

    async def request_hash(self, job_id: str) -> str | None:
        value = await self._db.read(scalar(select(jobs.c.request_hash).where(jobs.c.id == job_id)))
        return str(value) if value is not None else None

    async def get_job(self, job_id: str) -> Job | None:
        row = await self._db.read_first(_JOB, {"job_id": job_id})
        return job_from_mapping(row) if row is not None else None

    async def get_jobs(self, job_ids: Sequence[str]) -> dict[str, Job]:
        if not job_ids:
            return {}
        rows = await self._db.read(every_row(select(jobs).where(jobs.c.id.in_(sorted(set(job_ids))))))
        return {row.id: job_from_row(row) for row in rows}

    async def get_job_with_plan(self, job_id: str) -> tuple[Job, Plan] | None:
        row = await self._db.read_first(_JOB_WITH_PLAN, {"job_id": job_id})
        return (job_from_mapping(row), _plan(row["account_plan"])) if row is not None else None

    async def list_jobs(self, where: JobFilter, limit: int, cursor: str | None, with_total: bool = True) -> JobPage:
        """A page by keyset on the filter's index (see `job_pages`), with the plans of its jobs' accounts joined
        in. `total` is the sum of the maintained `job_counts` rows of the account (of the statuses asked for), not
        a count of its history; with a `from`/`to`, tag or name filter it is an exact count bounded by that
        range of the same index. One statement, whatever the history's size (the total a scalar subquery on
        it); two when the page is empty."""
        page, count = page_statement(where, limit, cursor, with_total)

        def work(connection: Connection) -> tuple[Sequence[Row[Any]], int]:
            rows = connection.execute(page).all()
            if with_total and rows:
                return rows, int(rows[0].matching_total)
            if with_total:  # an empty page (past the end, or nothing matches): the total on its own
                return rows, int(connection.execute(count).scalar_one())
            return rows, -1

        rows, total = await self._db.read(work)
        found = [job_from_row(row) for row in rows[:limit]]
        plans = {row.account_id: _plan(row.account_plan) for row in rows[:limit]}
        more = len(rows) > limit
        next_cursor = encode_cursor(found[-1].created_at, found[-1].id) if more and found else None
        return JobPage(jobs=found, total=total, next_cursor=next_cursor, plans=plans)

    async def job_counts(self, account_id: str) -> dict[JobStatus, int]:
        query = select(job_counts.c.status, job_counts.c.count).where(job_counts.c.account_id == account_id)
        rows = await self._db.read(every_row(query))
        return {JobStatus(row.status): int(row._mapping["count"]) for row in rows if row._mapping["count"]}

    async def transition(
        self,
        job_id: str,
        write: WriteSet,
        now: datetime,
        *,
        lease_id: str | None = None,
        event_data: Mapping[str, Any] | None = None,
        result: StoredResult | None = None,
        lease_expired_by: datetime | None = None,
        ledger: Sequence[LedgerEntry] = (),
        billed: Billed | None = None,
    ) -> Changed | None:
        (changed,) = await self.transitions(
            [
                GuardedMove(
                    job_id,
                    write,
                    lease_id=lease_id,
                    event_data=event_data,
                    result=result,
                    lease_expired_by=lease_expired_by,
                    ledger=ledger,
                    billed=billed,
                )
            ],
            now,
        )
        return changed

    async def transitions(self, moves: Sequence[GuardedMove], now: datetime) -> list[Changed | None]:
        updates = [_guarded_update(guarded, now) for guarded in moves]
        if all(update_ is None for update_ in updates):
            return [None] * len(moves)
        postgres = self._db.dialect == "postgresql"

        def work(connection: Connection) -> list[Changed | None]:
            return _apply_moves(connection, moves, updates, now, postgres)

        return await self._db.write(work)

    async def queued(self, types: Sequence[str], limit: int, miner_id: str = "") -> list[Job]:
        """The queue's head on `ix_jobs_queue`, as before pinning: a job pinned to another miner is skipped by
        the same scan (a filter on the rows it reads anyway), never handed out, and costs an unpinned queue
        nothing."""
        kinds = tuple(sorted(set(types)))
        query = _QUEUE_HEADS.get(kinds)
        if query is None:  # a miner's runtimes: few sets, each built once
            query = (
                select(jobs)
                .where(
                    jobs.c.status == JobStatus.PENDING.value,
                    or_(*(jobs.c.type == kind for kind in kinds)),
                    or_(jobs.c.pinned_miner_id.is_(None), jobs.c.pinned_miner_id == bindparam("claimer")),
                )
                .order_by(jobs.c.priority_rank.desc(), jobs.c.created_at, jobs.c.id)
                .limit(bindparam("head_size"))
            )
            if len(_QUEUE_HEADS) < 256:
                _QUEUE_HEADS[kinds] = query
        parameters = {"head_size": limit, "claimer": miner_id}
        return await self._db.read(
            lambda connection: [job_from_row(row) for row in connection.execute(query, parameters)]
        )

    async def pinned_to_lost_miners(self, since: datetime, limit: int) -> list[Job]:
        rows = await self._db.read(every_row(_PINNED_TO_LOST, {"since": since, "batch": limit}))
        return [job_from_row(row) for row in rows]

    async def held_by_lost_miners(self, since: datetime, limit: int) -> list[Job]:
        rows = await self._db.read(every_row(_HELD_BY_LOST, {"since": since, "batch": limit}))
        return [job_from_row(row) for row in rows]

    async def pinned_pending(self, miner_id: str, limit: int) -> list[Job]:
        rows = await self._db.read(every_row(_PINNED_PENDING, {"pinned_to": miner_id, "batch": limit}))
        return [job_from_row(row) for row in rows]

    async def record_progress(
        self,
        job_id: str,
        miner_id: str,
        lease_id: str,
        now: datetime,
        progress: int | None,
        message: str | None,
        estimated_completion: datetime | None,
        lease_expires_at: datetime,
    ) -> tuple[Job, JobEvent | None] | None:
        values: dict[str, Any] = {"lease_expires_at": lease_expires_at, "updated_at": now}
        if progress is not None:
            values["progress"] = progress
        if message is not None:
            values["progress_message"] = message
        if estimated_completion is not None:
            values["estimated_completion"] = estimated_completion
        held = (jobs.c.id == job_id, jobs.c.miner_id == miner_id, jobs.c.lease_id == lease_id)
        guarded = update(jobs).where(*held, jobs.c.status.in_(_LEASED))

        def work(connection: Connection) -> tuple[Job, JobEvent | None] | None:
            row = connection.execute(guarded.values(**values).returning(*jobs.c)).first()
            if row is not None:
                job = job_from_row(row)
                event = None
                if progress is not None or message is not None:
                    data = {
                        "message": message,
                        "estimated_completion": estimated_completion and estimated_completion.isoformat(),
                    }
                    event = _write_event(connection, job, "progress", now, data)
                return job, event
            current = connection.execute(select(jobs).where(*held, jobs.c.status == JobStatus.CANCELING.value)).first()
            return (job_from_row(current), None) if current is not None else None

        return await self._db.write(work)

    async def extend_leases(self, miner_id: str, lease_ids: Sequence[str], expires_at: datetime) -> list[Job]:
        if not lease_ids:
            return []
        extend = (
            update(jobs)
            .where(jobs.c.miner_id == miner_id, jobs.c.lease_id.in_(list(lease_ids)), jobs.c.status.in_(_LEASED))
            .values(lease_expires_at=expires_at)
        )
        held = select(jobs).where(jobs.c.miner_id == miner_id, jobs.c.lease_id.in_(list(lease_ids)))

        def work(connection: Connection) -> Sequence[Row[Any]]:
            connection.execute(extend)
            return connection.execute(held).all()

        rows = await self._db.write(work)
        return [job_from_row(row) for row in rows]

    async def renew_running_leases(self, until: datetime) -> int:
        renew = (
            update(jobs)
            .where(jobs.c.status.in_(_LEASED), jobs.c.lease_expires_at < until)
            .values(lease_expires_at=until)
        )
        return await self._db.write(rows_changed(renew))

    async def expired(self, status: JobStatus, now: datetime, limit: int) -> list[Job]:
        deadline = jobs.c.queue_expires_at if status is JobStatus.PENDING else jobs.c.lease_expires_at
        query = select(jobs).where(jobs.c.status == status.value, deadline < now).order_by(deadline).limit(limit)
        return [job_from_row(row) for row in await self._db.read(every_row(query))]

    async def append_event(self, job: Job, kind: str, now: datetime, data: Mapping[str, Any]) -> JobEvent:
        return await self._db.write(lambda connection: _write_event(connection, job, kind, now, data))

    async def events_since(self, account_id: str, after_seq: int, job_id: str | None, limit: int) -> list[JobEvent]:
        query = select(job_events).where(job_events.c.account_id == account_id, job_events.c.seq > after_seq)
        if job_id is not None:
            query = query.where(job_events.c.job_id == job_id)
        query = query.order_by(job_events.c.seq).limit(limit)
        return [event_from_row(row) for row in await self._db.read(every_row(query))]

    async def job_events(self, job_id: str, kinds: Sequence[str]) -> list[JobEvent]:
        query = select(job_events).where(job_events.c.job_id == job_id, job_events.c.kind.in_(list(kinds)))
        rows = await self._db.read(every_row(query.order_by(job_events.c.seq)))
        return [event_from_row(row) for row in rows]

    async def get_input_file(self, file_id: str) -> StoredFile | None:
        row = await self._db.read(first(select(input_files).where(input_files.c.id == file_id)))
        return StoredFile(**row._mapping) if row else None

    async def result_files(self, job_id: str, lease_id: str) -> list[ResultFile]:
        return (await self.result_files_of([(job_id, lease_id)])).get((job_id, lease_id), [])

    async def result_files_of(self, leases: Sequence[tuple[str, str]]) -> dict[tuple[str, str], list[ResultFile]]:
        if not leases:
            return {}
        pairs = sorted(set(leases))
        query = select(result_files).where(
            result_files.c.job_id.in_([job_id for job_id, _ in pairs]),
            tuple_(result_files.c.job_id, result_files.c.lease_id).in_(pairs),
        )
        found: dict[tuple[str, str], list[ResultFile]] = {}
        for r in await self._db.read(every_row(query.order_by(result_files.c.job_id, result_files.c.path))):
            found.setdefault((r.job_id, r.lease_id), []).append(
                ResultFile(
                    job_id=r.job_id,
                    lease_id=r.lease_id,
                    path=r.path,
                    size=r.size,
                    sha256=r.sha256,
                    blob_key=r.blob_key,
                    crc32=r.crc32,
                )
            )
        return found

    async def get_result(self, job_id: str) -> StoredResult | None:
        row = await self._db.read(first(select(job_results).where(job_results.c.job_id == job_id)))
        return StoredResult(**row._mapping) if row else None
