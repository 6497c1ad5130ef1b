"""`ResultStore`, `ShareStore` and `UploadStore`: what a job's results become after the miner's upload —
cached CRC-32s, receipts, retiring results (delete, expire) with their purge queue, share links — and the
uploads themselves under their quotas, and what the purge may remove."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from aitbc.domain.accounts import Account
from aitbc.domain.job import JobStatus
from aitbc.domain.package import ResultsState
from aitbc.domain.plans import Plan
from aitbc.domain.transitions import Move
from aitbc.storage.interfaces import StoredFile
from aitbc.storage.results import Purge, Share, StoredReceipt
from tests.store_contract.conftest import T0, Stores, at, result_file


async def test_a_file_recorded_with_its_crc32_keeps_it(stores: Stores, alice: Account) -> None:
    job = await stores.claim(await stores.submit(alice))
    recorded = replace(result_file(job.id, "lease_1", "a.txt"), crc32=0xFFFFFFFF)
    assert (await stores.uploads.record_result_file(recorded, at(2), 10**9)).stored
    (found,) = await stores.jobs.result_files(job.id, "lease_1")
    assert found.crc32 == 0xFFFFFFFF


async def test_a_missing_crc32_is_saved_once_per_file(stores: Stores, alice: Account) -> None:
    job = await stores.with_results(alice, ("a.txt", "b.txt"))
    first, second = sorted(await stores.jobs.result_files(job.id, "lease_1"), key=lambda item: item.path)
    assert (first.crc32, second.crc32) == (None, None)  # recorded before CRCs were kept
    await stores.results.save_crc32(first, 0xFFFFFFFF)
    await stores.results.save_crc32(first, 1)  # a racing download: the first value stays
    await stores.results.save_crc32(second, 0)
    moved = replace(second, blob_key="results/elsewhere")  # a record that changed meanwhile is left alone
    await stores.results.save_crc32(moved, 7)
    found = {item.path: item.crc32 for item in await stores.jobs.result_files(job.id, "lease_1")}
    assert found == {"a.txt": 0xFFFFFFFF, "b.txt": 0}
    assert await stores.jobs.result_files(job.id, "lease_2") == []


async def test_files_and_jobs_of_a_batch_are_read_at_once(stores: Stores, alice: Account) -> None:
    """What a miner's batch of finishes reads in one statement each: every job named, and the files of every
    (job, lease) pair, no pair taking another's files."""
    first = await stores.with_results(alice, ("a.txt", "b.txt"))
    second = await stores.with_results(alice, ("c.txt",))
    found = await stores.jobs.get_jobs([first.id, second.id, "job_missing", first.id])
    assert set(found) == {first.id, second.id} and found[second.id].id == second.id
    files = await stores.jobs.result_files_of([(first.id, "lease_1"), (second.id, "lease_1"), (first.id, "lease_9")])
    assert {pair: [f.path for f in listed] for pair, listed in files.items()} == {
        (first.id, "lease_1"): ["a.txt", "b.txt"],
        (second.id, "lease_1"): ["c.txt"],
    }
    assert files[(first.id, "lease_1")] == await stores.jobs.result_files(first.id, "lease_1")
    assert await stores.jobs.get_jobs([]) == {} and await stores.jobs.result_files_of([]) == {}


async def test_a_job_has_one_receipt_and_the_unreceipted_are_found(stores: Stores, alice: Account) -> None:
    first = await stores.with_results(alice, when=10)
    second = await stores.with_results(alice, when=20)
    assert await stores.results.unreceipted(at(0), 10) == [first.id, second.id]
    assert await stores.results.unreceipted(at(15), 10) == [second.id]

    receipt = StoredReceipt(first.id, '{"job":1}', "signature-1", "key-1", at(30))
    assert await stores.results.add_receipt(receipt) == receipt
    late = StoredReceipt(first.id, '{"job":2}', "signature-2", "key-1", at(31))
    assert await stores.results.add_receipt(late) == receipt  # the one stored first is the receipt
    assert await stores.results.get_receipt(first.id) == receipt
    assert await stores.results.get_receipt(second.id) is None
    assert await stores.results.unreceipted(at(0), 10) == [second.id]


def share(job_id: str, account: Account, number: int, expires: float = 100) -> Share:
    return Share(f"share_{number}", job_id, account.id, f"{number:064d}", at(number), at(expires), None, 0, None)


async def test_share_links_are_found_by_token_revoked_once_and_counted(stores: Stores, alice: Account) -> None:
    job = await stores.with_results(alice)
    other = await stores.with_results(alice)
    for made in (share(job.id, alice, 1), share(job.id, alice, 2), share(job.id, alice, 3, expires=5)):
        await stores.shares.add_share(made)
    await stores.shares.add_share(share(other.id, alice, 4))
    assert await stores.shares.share_by_token_hash(f"{1:064d}") == share(job.id, alice, 1)
    assert await stores.shares.share_by_token_hash("9" * 64) is None
    assert [s.id for s in await stores.shares.shares(job.id)] == ["share_1", "share_2", "share_3"]

    await stores.shares.count_download("share_1", at(40))
    await stores.shares.count_download("share_1", at(50))
    counted = await stores.shares.share_by_token_hash(f"{1:064d}")
    assert counted is not None and (counted.download_count, counted.last_download_at) == (2, at(50))

    revoked = await stores.shares.revoke_share(job.id, "share_1", at(60))
    assert revoked is not None and revoked.revoked_at == at(60)
    again = await stores.shares.revoke_share(job.id, "share_1", at(70))
    assert again is not None and again.revoked_at == at(60)
    assert await stores.shares.revoke_share(other.id, "share_2", at(60)) is None  # not that job's share
    assert await stores.shares.revoke_share(job.id, "share_missing", at(60)) is None

    assert await stores.shares.revoke_shares(job.id, at(80)) == 1  # share_2; share_1 is revoked, share_3 expired
    assert [s.revoked_at for s in await stores.shares.shares(job.id)] == [at(60), at(80), None]
    assert [s.revoked_at for s in await stores.shares.shares(other.id)] == [None]


async def test_retiring_results_is_a_compare_and_set_that_revokes_shares_and_queues_a_purge(
    stores: Stores, alice: Account
) -> None:
    job = await stores.with_results(alice)
    await stores.shares.add_share(share(job.id, alice, 1))
    racers = await asyncio.gather(
        stores.results.retire_results(job.id, ResultsState.DELETED, at(50)),
        stores.results.retire_results(job.id, ResultsState.EXPIRED, at(50)),
    )
    (won,) = [retired for retired in racers if retired is not None]
    assert won.results_state in ("deleted", "expired")
    assert await stores.results.retire_results(job.id, ResultsState.DELETED, at(60)) is None
    assert [s.revoked_at for s in await stores.shares.shares(job.id)] == [at(50)]
    assert await stores.results.queued_purges(at(51), 10) == [Purge(job.id, at(50))]
    assert await stores.results.queued_purges(at(50), 10) == []
    await stores.results.finish_purge(job.id)
    assert await stores.results.queued_purges(at(51), 10) == []

    never = await stores.in_status(alice, JobStatus.FAILED)  # no results to retire
    assert await stores.results.retire_results(never.id, ResultsState.DELETED, at(50)) is None


async def test_results_expire_by_their_accounts_plan(stores: Stores, alice: Account) -> None:
    pro = await stores.account("bob", Plan.PRO)
    old = await stores.with_results(alice, when=10)
    recent = await stores.with_results(alice, when=100)
    kept = await stores.with_results(pro, when=10)
    cutoffs = {Plan.FREE.value: at(50)}  # plans not listed never expire
    assert [job.id for job in await stores.results.expired_results(cutoffs, 10)] == [old.id]
    assert await stores.results.expired_results({}, 10) == []
    assert await stores.results.retire_results(recent.id, ResultsState.EXPIRED, at(60), cutoffs) is None
    assert await stores.results.retire_results(kept.id, ResultsState.EXPIRED, at(60), cutoffs) is None
    expired = await stores.results.retire_results(old.id, ResultsState.EXPIRED, at(60), cutoffs)
    assert expired is not None and expired.results_state == "expired"
    assert await stores.results.expired_results(cutoffs, 10) == []


async def test_result_uploads_stay_under_the_jobs_limit_and_only_under_a_held_lease(
    stores: Stores, alice: Account
) -> None:
    job = await stores.claim(await stores.submit(alice), "lease_1")
    record = stores.uploads.record_result_file
    first = await record(result_file(job.id, "lease_1", "a.txt", 10, "blob/a1"), at(2), 100)
    assert (first.stored, first.used, first.replaced, first.lease_held) == (True, 0, None, True)
    assert (await record(result_file(job.id, "lease_1", "b.txt", 50), at(2), 100)).used == 10
    over = await record(result_file(job.id, "lease_1", "c.txt", 50), at(2), 100)
    assert (over.stored, over.used, over.lease_held) == (False, 60, True)
    replaced = await record(result_file(job.id, "lease_1", "a.txt", 20, "blob/a2"), at(3), 100)
    assert (replaced.stored, replaced.used, replaced.replaced) == (True, 50, "blob/a1")
    assert await stores.uploads.job_upload_bytes(job.id, "lease_1", "a.txt") == 50
    assert await stores.uploads.job_upload_bytes(job.id, "lease_1", "new.txt") == 70
    assert [(f.path, f.size) for f in await stores.jobs.result_files(job.id, "lease_1")] == [
        ("a.txt", 20),
        ("b.txt", 50),
    ]

    stale = await record(result_file(job.id, "lease_old", "d.txt", 1), at(3), 100)
    assert (stale.stored, stale.lease_held) == (False, False)
    await stores.move(job, Move.REQUEST_CANCEL)
    assert (await record(result_file(job.id, "lease_1", "partial.log", 1), at(4), 100)).stored  # still held
    await stores.move(job, Move.CONFIRM_CANCEL, "lease_1")
    late = await record(result_file(job.id, "lease_1", "late.txt", 1), at(5), 100)
    assert (late.stored, late.lease_held) == (False, False)


async def test_racing_uploads_cannot_both_take_the_last_bytes(stores: Stores, alice: Account) -> None:
    job = await stores.claim(await stores.submit(alice), "lease_1")
    answers = await asyncio.gather(
        *(
            stores.uploads.record_result_file(result_file(job.id, "lease_1", f"{n}.bin", 60), at(2), 100)
            for n in range(3)
        )
    )
    assert sum(answer.stored for answer in answers) == 1


async def test_input_files_stay_under_the_accounts_limit(stores: Stores, alice: Account) -> None:
    bob = await stores.account("bob")

    def file(number: int, account: Account, size: int) -> StoredFile:
        return StoredFile(f"file_{number}", account.id, f"{number}.bin", size, "e" * 64, f"inputs/{number}", T0)

    assert (await stores.uploads.record_input_file(file(1, alice, 60), 100)).stored
    refused = await stores.uploads.record_input_file(file(2, alice, 60), 100)
    assert (refused.stored, refused.used) == (False, 60)
    assert (await stores.uploads.record_input_file(file(3, bob, 60), 100)).stored
    assert await stores.uploads.account_input_bytes(alice.id) == 60
    assert await stores.jobs.get_input_file("file_2") is None


async def test_result_files_no_lease_or_available_result_refers_to_are_unreferenced(
    stores: Stores, alice: Account
) -> None:
    job = await stores.claim(await stores.submit(alice), "lease_1")
    await stores.uploads.record_result_file(result_file(job.id, "lease_1", "first.txt", blob="blob/first"), at(2), 100)
    await stores.move(job, Move.REQUEUE, "lease_1")
    job = await stores.claim(job, "lease_2")
    await stores.uploads.record_result_file(
        result_file(job.id, "lease_2", "second.txt", blob="blob/second"), at(3), 100
    )

    unreferenced = await stores.uploads.unreferenced_result_files(at(10), 10)
    assert [(f.lease_id, f.path) for f in unreferenced] == [("lease_1", "first.txt")]  # the requeued attempt's
    assert await stores.uploads.unreferenced_result_files(at(1), 10) == []  # recorded later than asked
    assert await stores.uploads.referenced_blob_keys(["blob/first", "blob/second", "blob/none"]) == {
        "blob/first",
        "blob/second",
    }
    await stores.uploads.forget_result_file(unreferenced[0])
    assert await stores.uploads.referenced_blob_keys(["blob/first"]) == set()

    done = await stores.with_results(alice, ("kept.txt",))
    assert await stores.uploads.unreferenced_result_files(at(100), 10) == []  # held, or listed by a result
    await stores.results.retire_results(done.id, ResultsState.DELETED, at(50))
    (retired,) = await stores.uploads.unreferenced_result_files(at(100), 10)
    assert (retired.job_id, retired.path) == (done.id, "kept.txt")

    replaced = result_file(done.id, "lease_1", "kept.txt", blob="blob/other")  # replaced since it was listed
    await stores.uploads.forget_result_file(replaced)
    assert await stores.uploads.unreferenced_result_files(at(100), 10) == [retired]
    await stores.uploads.forget_result_file(retired)
    assert await stores.uploads.unreferenced_result_files(at(100), 10) == []
    assert await stores.uploads.referenced_blob_keys([]) == set()


async def test_input_files_expire_by_plan_unless_an_unfinished_job_needs_them(stores: Stores, alice: Account) -> None:
    pro = await stores.account("bob", Plan.PRO)
    for number, account in ((1, alice), (2, alice), (3, pro)):
        stored = StoredFile(f"file_{number}", account.id, "in.bin", 5, "e" * 64, f"inputs/{number}", T0)
        assert (await stores.uploads.record_input_file(stored, 100)).stored
    needing = await stores.submit(alice, input_file_id="file_2")
    cutoffs = {Plan.FREE.value: at(10)}
    assert [f.id for f in await stores.uploads.expired_input_files(cutoffs, 10)] == ["file_1"]
    assert await stores.uploads.expired_input_files({}, 10) == []
    assert not await stores.uploads.forget_input_file("file_2", cutoffs)
    assert not await stores.uploads.forget_input_file("file_3", cutoffs)
    assert not await stores.uploads.forget_input_file("file_1", {})
    assert await stores.uploads.forget_input_file("file_1", cutoffs)
    assert await stores.jobs.get_input_file("file_1") is None

    await stores.move(needing, Move.CANCEL_PENDING)
    assert [f.id for f in await stores.uploads.expired_input_files(cutoffs, 10)] == ["file_2"]
    assert await stores.uploads.referenced_blob_keys(["inputs/2", "inputs/3"]) == {"inputs/2", "inputs/3"}
