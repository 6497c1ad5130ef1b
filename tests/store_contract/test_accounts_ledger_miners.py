"""`AccountStore`, `LedgerStore` and `MinerStore`: accounts and keys, money as an append-only ledger with
running balances, and miner registrations."""

from __future__ import annotations

import pytest

from aitbc.domain.accounts import Account
from aitbc.domain.matching import Capabilities, Gpu
from aitbc.domain.plans import Plan, Role
from aitbc.domain.runtime_schemas import RuntimeSchemas
from aitbc.storage.interfaces import LedgerEntry
from tests.store_contract.conftest import T0, Stores, at


async def test_an_account_is_made_once_by_name(stores: Stores) -> None:
    made, created = await stores.accounts.ensure_account("alice", None, T0)
    again, created_again = await stores.accounts.ensure_account("alice", Plan.PRO, at(5))
    assert created and not created_again and again == made
    assert (made.name, made.plan, made.created_at) == ("alice", Plan.FREE, T0)
    pro, _ = await stores.accounts.ensure_account("bob", Plan.PRO, T0)
    assert pro.plan is Plan.PRO
    assert await stores.accounts.get_account(made.id) == made
    assert await stores.accounts.get_account_by_name("bob") == pro
    assert await stores.accounts.get_account("acct_missing") is None
    assert await stores.accounts.get_account_by_name("carol") is None
    assert [a.name for a in await stores.accounts.list_accounts()] == ["alice", "bob"]
    upgraded = await stores.accounts.set_plan(made.id, Plan.ENTERPRISE)
    assert upgraded is not None and upgraded.plan is Plan.ENTERPRISE
    assert await stores.accounts.get_account(made.id) == upgraded
    assert await stores.accounts.set_plan("acct_missing", Plan.PRO) is None


async def test_keys_are_found_by_hash_listed_and_revoked_once(stores: Stores, alice: Account) -> None:
    bob = await stores.account("bob")
    key = await stores.accounts.create_key("key_1", alice.id, "laptop", Role.CLIENT, "f" * 64, "aitbc_ab", T0)
    await stores.accounts.create_key("key_2", bob.id, "farm", Role.MINER, "0" * 64, "aitbc_cd", at(1))
    assert (key.id, key.role, key.prefix, key.revoked_at) == ("key_1", Role.CLIENT, "aitbc_ab", None)
    assert await stores.accounts.find_key("f" * 64) == (key, alice)
    assert await stores.accounts.find_key("9" * 64) is None
    assert [k.id for k in await stores.accounts.list_keys(None)] == ["key_1", "key_2"]
    assert [k.id for k in await stores.accounts.list_keys(bob.id)] == ["key_2"]
    assert await stores.accounts.count_keys() == 2

    revoked = await stores.accounts.revoke_key("key_1", at(10))
    assert revoked is not None and revoked.revoked_at == at(10)
    again = await stores.accounts.revoke_key("key_1", at(20))
    assert again is not None and again.revoked_at == at(10)  # the first revocation stands
    found = await stores.accounts.find_key("f" * 64)
    assert found is not None and found[0].revoked_at == at(10)  # found, so the caller can say it is revoked
    assert await stores.accounts.revoke_key("key_missing", at(10)) is None


async def test_balances_are_the_sum_of_each_accounts_entries(stores: Stores, alice: Account) -> None:
    bob = await stores.account("bob")
    await stores.ledger.append([LedgerEntry(alice.id, "grant", 1000), LedgerEntry(bob.id, "grant", 50)], at(1))
    await stores.ledger.append([LedgerEntry(alice.id, "fee", -10, "job_1", "platform fee")], at(2))
    await stores.ledger.append([LedgerEntry(alice.id, "payout", 7, "job_2")], at(3))
    assert await stores.ledger.balance_units(alice.id) == 997
    assert await stores.ledger.balance_units(bob.id) == 50
    assert await stores.ledger.balance_units("acct_missing") == 0
    assert await stores.ledger.totals_by_kind() == {"grant": 1050, "fee": -10, "payout": 7}

    mine = await stores.ledger.entries(alice.id, None, None, 10, 0)
    assert [(e.kind, e.amount_units, e.job_id, e.created_at) for e in mine] == [
        ("grant", 1000, None, at(1)),
        ("fee", -10, "job_1", at(2)),
        ("payout", 7, "job_2", at(3)),
    ]
    assert mine[1].memo == "platform fee"
    assert [e.kind for e in await stores.ledger.entries(alice.id, at(2), at(3), 10, 0)] == ["fee"]
    first_page = await stores.ledger.entries(None, None, None, 2, 0)
    rest = await stores.ledger.entries(None, None, None, 10, first_page[-1].id)
    assert len(first_page) == 2 and len(rest) == 2
    assert [e.id for e in first_page + rest] == sorted({e.id for e in first_page + rest})


async def test_a_hold_is_held_until_its_release(stores: Stores, alice: Account) -> None:
    await stores.ledger.append([LedgerEntry(alice.id, "grant", 1000)], T0)
    await stores.ledger.append(
        [LedgerEntry(alice.id, "hold", -300, "job_1"), LedgerEntry(alice.id, "hold", -200, "job_2")], T0
    )
    assert await stores.ledger.held_units(alice.id) == 500
    await stores.ledger.append([LedgerEntry(alice.id, "release", 300, "job_1")], at(1))
    assert await stores.ledger.held_units(alice.id) == 200
    assert await stores.ledger.balance_units(alice.id) == 800


async def test_a_job_is_settled_once_and_a_refused_batch_leaves_nothing(stores: Stores, alice: Account) -> None:
    await stores.ledger.append([LedgerEntry(alice.id, "fee", -10, "job_1")], T0)
    # The interface names no error for this: the store refuses, and keeps nothing of the batch.
    with pytest.raises(Exception):
        await stores.ledger.append([LedgerEntry(alice.id, "grant", 5), LedgerEntry(alice.id, "fee", -10, "job_1")], T0)
    assert await stores.ledger.balance_units(alice.id) == -10
    assert len(await stores.ledger.entries(alice.id, None, None, 10, 0)) == 1


async def test_a_miner_registers_and_registers_again_under_its_id(stores: Stores, alice: Account) -> None:
    gpus = Capabilities(frozenset({"command"}), frozenset(), (Gpu("a100", 80.0),))
    miner = await stores.miners.register("miner_1", alice.id, "rig", gpus, 2, "key-1", T0)
    assert (miner.id, miner.name, miner.max_concurrency, miner.public_key) == ("miner_1", "rig", 2, "key-1")
    assert miner.capabilities == gpus and miner.registered_at == miner.last_seen_at == T0

    more = Capabilities(frozenset({"command", "embedding"}), frozenset({"all-MiniLM-L6-v2"}))
    again = await stores.miners.register("miner_new", alice.id, "rig", more, 4, "key-2", at(10))
    assert again.id == "miner_1" and again.capabilities == more and again.public_key == "key-2"
    assert again.registered_at == T0 and again.last_seen_at == at(10)
    other = await stores.miners.register("miner_2", alice.id, "rig-2", more, 1, "key-3", at(10))
    assert other.id == "miner_2"

    assert await stores.miners.get_miner("miner_1") == again
    assert await stores.miners.get_miner_by_name(alice.id, "rig-2") == other
    assert await stores.miners.get_miner("miner_missing") is None
    assert await stores.miners.get_miner_by_name(alice.id, "nope") is None
    await stores.miners.touch("miner_2", at(100))
    assert [m.id for m in await stores.miners.seen_since(at(50))] == ["miner_2"]
    assert sorted(m.id for m in await stores.miners.seen_since(at(10))) == ["miner_1", "miner_2"]


async def test_a_miners_runtime_schemas_are_stored_and_replaced_whole_on_registering_again(
    stores: Stores, alice: Account
) -> None:
    text = RuntimeSchemas.of({"type": "string", "minLength": 1}, {"type": "object", "additionalProperties": False})
    upload_only = RuntimeSchemas.of(False, None)  # a boolean schema, and a part left undeclared
    declared = Capabilities.with_schemas(
        frozenset({"text-generation", "reencode", "command"}),
        schemas={"text-generation": text, "reencode": upload_only},
    )
    miner = await stores.miners.register("miner_1", alice.id, "rig", declared, 1, "key-1", T0)
    assert miner.capabilities == declared
    read = await stores.miners.get_miner("miner_1")
    assert read is not None and read.capabilities.schemas_by_runtime() == {
        "text-generation": text,
        "reencode": upload_only,
    }
    assert read.capabilities.schemas_for("command") is None  # declared none: takes anything

    plain = Capabilities(frozenset({"text-generation"}))  # registered again without schemas: none are kept
    again = await stores.miners.register("miner_new", alice.id, "rig", plain, 1, "key-1", at(1))
    assert again.capabilities == plain and again.capabilities.schemas == ()
    assert [m.capabilities for m in await stores.miners.seen_since(T0)] == [plain]
