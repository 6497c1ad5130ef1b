"""Statements run on SQLite's driver connection (`aitbc.storage.sql.prepared`) write and answer exactly what
SQLAlchemy's own execution of them does: the same rows stored, the same values back, literals the statement
carries included; and a statement that would need what the driver path does not do is refused when prepared,
not run wrong."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, bindparam, func, insert, select, update

from aitbc.storage.sql.database import migrate, sqlite_url, sync_engine
from aitbc.storage.sql.prepared import Prepared, run, run_first, run_many
from aitbc.storage.sql.tables import accounts, job_events, jobs

MOMENT = datetime(2026, 12, 1, 10, 30, 15, 123456, tzinfo=UTC)
INSERT_EVENT = insert(job_events)
NEXT = (
    update(accounts)
    .where(accounts.c.id == bindparam("who"))
    .values(event_seq=accounts.c.event_seq + bindparam("step"))
    .returning(accounts.c.id, accounts.c.event_seq, accounts.c.created_at)
)
SUMMED = select(func.coalesce(func.sum(job_events.c.progress), 0)).where(job_events.c.account_id == bindparam("who"))


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    url = sqlite_url(tmp_path)
    migrate(url)
    return sync_engine(url)


def _account(connection: Connection, account_id: str) -> None:
    connection.execute(
        insert(accounts).values(id=account_id, name=account_id, plan="free", created_at=MOMENT, balance_units=0)
    )


def _event(account_id: str, seq: int) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "seq": seq,
        "job_id": f"job_{seq}",
        "kind": "status",
        "status": "pending",
        "progress": seq * 10,
        "at": MOMENT + timedelta(seconds=seq),
        "data": {"move": "submit", "nested": [1, 2.5, None, "é"]},
    }


def test_driver_writes_and_reads_match_sqlalchemys(engine: Engine) -> None:
    with engine.begin() as connection:
        for account_id in ("by_driver", "by_sqlalchemy"):
            _account(connection, account_id)
        run_many(connection, INSERT_EVENT, [_event("by_driver", 1)])
        run_many(connection, INSERT_EVENT, [_event("by_driver", 2), _event("by_driver", 3)])
        connection.execute(INSERT_EVENT, [_event("by_sqlalchemy", seq) for seq in (1, 2, 3)])
        driver_row = run_first(connection, NEXT, {"who": "by_driver", "step": 3})
        expected = connection.execute(NEXT, {"who": "by_sqlalchemy", "step": 3}).one()._mapping
        assert driver_row is not None and driver_row["event_seq"] == expected["event_seq"] == 3
        assert driver_row["created_at"] == expected["created_at"] == MOMENT
        assert run(connection, SUMMED, {"who": "by_driver"}) == [(60,)]  # coalesce's 0 is the statement's own
        assert run(connection, SUMMED, {"who": "nobody"}) == [(0,)]
        assert run_first(connection, NEXT, {"who": "nobody", "step": 1}) is None
    with engine.connect() as connection:
        stored = {
            account_id: [
                {key: value for key, value in row._mapping.items() if key != "account_id"}
                for row in connection.execute(
                    select(job_events).where(job_events.c.account_id == account_id).order_by(job_events.c.seq)
                )
            ]
            for account_id in ("by_driver", "by_sqlalchemy")
        }
    assert stored["by_driver"] == stored["by_sqlalchemy"]
    assert stored["by_driver"][0]["at"] == MOMENT + timedelta(seconds=1)
    assert stored["by_driver"][0]["data"] == {"move": "submit", "nested": [1, 2.5, None, "é"]}


def test_a_write_rolled_back_with_its_transaction_is_gone(engine: Engine) -> None:
    """The driver path runs inside SQLAlchemy's transaction, not beside it."""

    def abandoned_unit() -> None:
        with engine.begin() as connection:
            _account(connection, "alice")
            run_many(connection, INSERT_EVENT, [_event("alice", 1)])
            raise RuntimeError("abandon the unit")

    with pytest.raises(RuntimeError):
        abandoned_unit()
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(job_events)).scalar_one() == 0


def test_what_the_driver_path_cannot_run_is_refused_when_prepared(engine: Engine) -> None:
    dialect = engine.dialect
    with pytest.raises(ValueError, match="progress"):  # a column's Python default would be left out
        Prepared(insert(jobs), dialect, ["id", "account_id"])
    with pytest.raises(ValueError, match="IN list"):
        Prepared(select(jobs.c.id).where(jobs.c.id.in_(bindparam("ids", expanding=True))), dialect)
    assert Prepared(INSERT_EVENT, dialect, list(_event("alice", 1))).sql.startswith("INSERT INTO job_events")
