"""The SQL preset stores: clients' job templates and the admins' versioned workflows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace as replaced
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from aitbc.domain.errors import Conflict
from aitbc.domain.job import Priority
from aitbc.domain.presets import JobSettings, JobTemplate, Workflow
from aitbc.storage.sql.database import Database
from aitbc.storage.sql.one_statement import every_row, first
from aitbc.storage.sql.tables import accounts, job_templates, workflows


def _settings_values(settings: JobSettings) -> dict[str, Any]:
    return {
        "type": settings.type,
        "model": settings.model,
        "params": dict(settings.params),
        "gpu_type": settings.gpu_type,
        "gpu_count": settings.gpu_count,
        "min_vram_gb": settings.min_vram_gb,
        "priority": settings.priority.value if settings.priority is not None else None,
        "timeout_seconds": settings.timeout_seconds,
    }


def _settings(m: Mapping[str, Any]) -> JobSettings:
    return JobSettings(
        type=m["type"],
        model=m["model"],
        params=dict(m["params"] or {}),
        gpu_type=m["gpu_type"],
        gpu_count=m["gpu_count"],
        min_vram_gb=m["min_vram_gb"],
        priority=Priority(m["priority"]) if m["priority"] else None,
        timeout_seconds=m["timeout_seconds"],
    )


def _template(row: Any) -> JobTemplate:
    m = row._mapping
    return JobTemplate(
        account_id=m["account_id"],
        name=m["name"],
        settings=_settings(m),
        workflow=m["workflow"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


def _workflow(row: Any) -> Workflow:
    m = row._mapping
    keys = m["allowed_keys"]
    return Workflow(
        name=m["name"],
        version=m["version"],
        settings=_settings(m),
        allowed_keys=tuple(keys) if keys is not None else None,
        description=m["description"],
        created_at=m["created_at"],
    )


def _template_key(account_id: str, name: str) -> tuple[Any, ...]:
    return (job_templates.c.account_id == account_id, job_templates.c.name == name)


class SqlTemplateStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def save_template(self, template: JobTemplate, max_count: int, replace: bool) -> tuple[JobTemplate, bool]:
        key = _template_key(template.account_id, template.name)
        values = {
            **_settings_values(template.settings),
            "workflow": template.workflow,
            "updated_at": template.updated_at,
        }
        # Saves of one account take turns on its row (PostgreSQL; SQLite has one writer): the count and the name
        # checked below are still true when the row is written.
        lock = select(accounts.c.id).where(accounts.c.id == template.account_id).with_for_update()

        def work(connection: Connection) -> tuple[JobTemplate, bool]:
            connection.execute(lock)
            existing = connection.execute(select(job_templates.c.created_at).where(*key)).first()
            if existing is not None:
                if not replace:
                    raise Conflict(
                        f"template {template.name!r} already exists: replace it (`replace`: true; --replace on the "
                        "command line) or delete it first"
                    )
                connection.execute(update(job_templates).where(*key).values(**values))
                return replaced(template, created_at=existing.created_at), False
            held = (
                select(func.count()).select_from(job_templates).where(job_templates.c.account_id == template.account_id)
            )
            if int(connection.execute(held).scalar_one()) >= max_count:
                raise Conflict(
                    f"this account already has {max_count} templates, the most it may keep: delete one first"
                )
            row = {"account_id": template.account_id, "name": template.name, "created_at": template.created_at}
            connection.execute(insert(job_templates).values(**row, **values))
            return template, True

        return await self._db.write(work)

    async def get_template(self, account_id: str, name: str) -> JobTemplate | None:
        row = await self._db.read(first(select(job_templates).where(*_template_key(account_id, name))))
        return _template(row) if row is not None else None

    async def list_templates(self, account_id: str) -> list[JobTemplate]:
        query = select(job_templates).where(job_templates.c.account_id == account_id).order_by(job_templates.c.name)
        return [_template(row) for row in await self._db.read(every_row(query))]

    async def delete_template(self, account_id: str, name: str) -> JobTemplate | None:
        gone = delete(job_templates).where(*_template_key(account_id, name)).returning(*job_templates.c)
        row = await self._db.write(first(gone))
        return _template(row) if row is not None else None


class SqlWorkflowStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def add_workflow(self, workflow: Workflow, next_version: bool) -> Workflow:
        newest = select(func.max(workflows.c.version)).where(workflows.c.name == workflow.name)

        def work(connection: Connection) -> Workflow:
            version = (connection.execute(newest).scalar() or 0) + 1 if next_version else workflow.version
            taken = select(workflows.c.version).where(workflows.c.name == workflow.name, workflows.c.version == version)
            if connection.execute(taken).first() is not None:
                raise _exists(workflow.name, version)
            row = {
                "name": workflow.name,
                "version": version,
                **_settings_values(workflow.settings),
                "allowed_keys": list(workflow.allowed_keys) if workflow.allowed_keys is not None else None,
                "description": workflow.description,
                "created_at": workflow.created_at,
            }
            connection.execute(insert(workflows).values(**row))
            return replaced(workflow, version=version)

        try:
            return await self._db.write(work)
        except IntegrityError:  # another admin made the same version meanwhile (PostgreSQL)
            raise _exists(workflow.name, workflow.version if not next_version else None) from None

    async def get_workflow(self, name: str, version: int | None) -> Workflow | None:
        query = select(workflows).where(workflows.c.name == name)
        if version is None:
            query = query.order_by(workflows.c.version.desc()).limit(1)
        else:
            query = query.where(workflows.c.version == version)
        row = await self._db.read(first(query))
        return _workflow(row) if row is not None else None

    async def list_workflows(self) -> list[Workflow]:
        query = select(workflows).order_by(workflows.c.name, workflows.c.version.desc())
        return [_workflow(row) for row in await self._db.read(every_row(query))]


def _exists(name: str, version: int | None) -> Conflict:
    if version is None:
        return Conflict(f"another version of workflow {name!r} was created at the same moment: try again")
    return Conflict(
        f"workflow {name}@{version} already exists, and a version never changes: create the next version "
        "(leave the version out) instead"
    )
