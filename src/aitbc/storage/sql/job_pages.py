"""The statements of a page of jobs (list, history, export, cancel by filter): which index a filter reads, the
keyset cursor over it, and the total that rides with the page.

A page is a keyset range, newest first, on an index that starts with what the filter fixes: (account_id,
created_at, id) for the whole history, (account_id, status, created_at, id) for `?status=`, the partial
(account_id, name, created_at, id) for `?name=`, and `job_tags`' key (account_id, tag, created_at, job_id) for
`?tag=`, joined to `jobs` by id for the rest. However long the history, a page reads about as many rows as it
shows.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.sql import ColumnElement, FromClause

from aitbc.domain.errors import InvalidInput
from aitbc.storage.interfaces import JobFilter
from aitbc.storage.sql.tables import accounts, job_counts, job_tags, jobs

ACCOUNT_PLAN = accounts.c.plan.label("account_plan")


def encode_cursor(created_at: datetime, job_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{job_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created, job_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return datetime.fromisoformat(created), job_id
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidInput("invalid cursor: pass back the next_cursor of a previous page") from error


@dataclass(frozen=True)
class PageShape:
    """What a filter reads: the rows it starts from, the conditions on them, and the (created_at, id) pair
    the page is ordered and continued by."""

    source: FromClause
    conditions: list[ColumnElement[bool]]
    created_at: ColumnElement[Any]
    job_id: ColumnElement[Any]
    counted_alone: FromClause  # enough to count the matches: `job_tags` alone when nothing asks for `jobs`


def page_shape(where: JobFilter) -> PageShape:
    conditions: list[ColumnElement[bool]] = []
    on_jobs: list[ColumnElement[bool]] = []
    if where.tag is not None:
        created_at, job_id = job_tags.c.created_at, job_tags.c.job_id
        source: FromClause = job_tags.join(jobs, jobs.c.id == job_tags.c.job_id)
        if where.account_id is not None:
            conditions.append(job_tags.c.account_id == where.account_id)
        conditions.append(job_tags.c.tag == where.tag)
    else:
        created_at, job_id = jobs.c.created_at, jobs.c.id
        source = jobs
        if where.account_id is not None:
            conditions.append(jobs.c.account_id == where.account_id)
    if where.name is not None:
        on_jobs.append(jobs.c.name == where.name)
    if where.statuses:
        on_jobs.append(jobs.c.status.in_([s.value for s in where.statuses]))
    if where.created_from is not None:
        conditions.append(created_at >= where.created_from)
    if where.created_to is not None:
        conditions.append(created_at < where.created_to)
    counted_alone = job_tags if where.tag is not None and not on_jobs else source
    return PageShape(source, conditions + on_jobs, created_at, job_id, counted_alone)


def total_statement(where: JobFilter, shape: PageShape) -> Select[Any]:
    """How many jobs match: from the maintained counts unless a date, a tag or a name bounds the filter (then
    a count over that range of the filter's own index)."""
    if where.created_from is not None or where.created_to is not None or where.labeled:
        return select(func.count()).select_from(shape.counted_alone).where(*shape.conditions)
    by_status: list[Any] = []
    if where.account_id is not None:
        by_status.append(job_counts.c.account_id == where.account_id)
    if where.statuses:
        by_status.append(job_counts.c.status.in_([s.value for s in where.statuses]))
    return select(func.coalesce(func.sum(job_counts.c.count), 0)).where(*by_status)


def page_statement(where: JobFilter, limit: int, cursor: str | None, with_total: bool) -> tuple[Select[Any], Any]:
    """One more row than `limit` (to know whether more follow), with the plan of each job's account and, with
    `with_total`, the total on every row (one statement, one snapshot); and the total's own statement, for a
    page that comes back empty."""
    shape = page_shape(where)
    page = (
        select(jobs, ACCOUNT_PLAN)
        .select_from(shape.source)
        .outerjoin(accounts, accounts.c.id == jobs.c.account_id)
        .where(*shape.conditions)
    )
    if cursor:
        created_at, job_id = decode_cursor(cursor)
        page = page.where(
            or_(shape.created_at < created_at, and_(shape.created_at == created_at, shape.job_id < job_id))
        )
    page = page.order_by(shape.created_at.desc(), shape.job_id.desc()).limit(limit + 1)
    total = total_statement(where, shape)
    if with_total:
        page = page.add_columns(total.scalar_subquery().label("matching_total"))
    return page, total
