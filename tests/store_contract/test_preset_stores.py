"""The preset stores' contract (`TemplateStore`, `WorkflowStore`) on SQLite and PostgreSQL: a template per
(account, name), replaced only when asked, an account's cap held even by saves that race; workflow versions
numbered one past the newest, never overwritten."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from aitbc.domain.accounts import Account
from aitbc.domain.errors import Conflict
from aitbc.domain.job import Priority
from aitbc.domain.presets import JobSettings, JobTemplate, Workflow
from aitbc.storage.interfaces import AccountStore, TemplateStore, WorkflowStore
from aitbc.storage.sql.accounts import SqlAccountStore
from aitbc.storage.sql.database import open_database
from aitbc.storage.sql.presets import SqlTemplateStore, SqlWorkflowStore
from tests.store_contract.conftest import T0, Backend, at


@dataclass(frozen=True)
class PresetStores:
    accounts: AccountStore
    templates: TemplateStore
    workflows: WorkflowStore

    async def account(self, name: str) -> Account:
        return (await self.accounts.ensure_account(name, None, T0))[0]


@pytest.fixture
async def presets(backend: Backend) -> AsyncIterator[PresetStores]:
    backend.clear()
    database = open_database(backend.url)
    yield PresetStores(SqlAccountStore(database), SqlTemplateStore(database), SqlWorkflowStore(database))
    await database.dispose()


def template(account: Account, name: str, when: float = 0, **settings: object) -> JobTemplate:
    return JobTemplate(account.id, name, JobSettings(**settings), None, at(when), at(when))  # type: ignore[arg-type]


def workflow(name: str, version: int = 0, **settings: object) -> Workflow:
    return Workflow(name, version, JobSettings(type="command", **settings), ("a",), "", T0)  # type: ignore[arg-type]


async def test_a_template_is_kept_per_account_and_name_and_replaced_only_when_asked(presets: PresetStores) -> None:
    alice, bob = await presets.account("alice"), await presets.account("bob")
    saved, created = await presets.templates.save_template(template(alice, "t", model="m1", params={"k": 1}), 10, False)
    assert created and saved.settings.params == {"k": 1}
    with pytest.raises(Conflict):
        await presets.templates.save_template(template(alice, "t", model="m2"), 10, False)
    assert (await presets.templates.get_template(alice.id, "t")) == saved
    assert (await presets.templates.get_template(bob.id, "t")) is None
    replaced, created = await presets.templates.save_template(
        template(alice, "t", when=5, model="m2", priority=Priority.HIGH), 10, True
    )
    assert not created and replaced.created_at == at(0) and replaced.updated_at == at(5)
    assert await presets.templates.get_template(alice.id, "t") == replaced
    assert replaced.settings.priority is Priority.HIGH and replaced.settings.params == {}
    await presets.templates.save_template(template(bob, "t", model="b"), 10, False)
    await presets.templates.save_template(template(alice, "a", type="command"), 10, False)
    assert [each.name for each in await presets.templates.list_templates(alice.id)] == ["a", "t"]
    assert await presets.templates.delete_template(bob.id, "a") is None
    assert (await presets.templates.delete_template(alice.id, "t")) == replaced
    assert [each.name for each in await presets.templates.list_templates(alice.id)] == ["a"]
    assert [each.settings.model for each in await presets.templates.list_templates(bob.id)] == ["b"]


async def test_racing_saves_never_pass_the_cap(presets: PresetStores) -> None:
    alice = await presets.account("alice")
    await presets.templates.save_template(template(alice, "first", model="m"), 3, False)
    saves = [presets.templates.save_template(template(alice, f"t{n}", model="m"), 3, False) for n in range(8)]
    results = await asyncio.gather(*saves, return_exceptions=True)
    assert sum(not isinstance(result, BaseException) for result in results) == 2
    assert all(isinstance(result, Conflict) for result in results if isinstance(result, BaseException))
    assert len(await presets.templates.list_templates(alice.id)) == 3
    # At the cap a replace still goes through.
    _, created = await presets.templates.save_template(template(alice, "first", model="n"), 3, True)
    assert not created


async def test_workflow_versions_are_numbered_and_never_overwritten(presets: PresetStores) -> None:
    first = await presets.workflows.add_workflow(workflow("w", model="one"), next_version=True)
    second = await presets.workflows.add_workflow(workflow("w", model="two"), next_version=True)
    assert (first.version, second.version) == (1, 2)
    with pytest.raises(Conflict):
        await presets.workflows.add_workflow(workflow("w", 1, model="again"), next_version=False)
    assert (await presets.workflows.get_workflow("w", 1)) == first
    assert (await presets.workflows.get_workflow("w", None)) == second
    assert await presets.workflows.get_workflow("w", 3) is None
    assert await presets.workflows.get_workflow("other", None) is None
    pinned = await presets.workflows.add_workflow(workflow("w", 9), next_version=False)
    assert (await presets.workflows.add_workflow(workflow("w"), next_version=True)).version == 10
    await presets.workflows.add_workflow(workflow("a"), next_version=True)
    listed = [(each.name, each.version) for each in await presets.workflows.list_workflows()]
    assert listed == [("a", 1), ("w", 10), ("w", 9), ("w", 2), ("w", 1)]
    assert pinned.allowed_keys == ("a",)
