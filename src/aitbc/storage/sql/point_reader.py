"""Point reads on PostgreSQL from the event loop itself.

A status GET on PostgreSQL went to a worker thread, through SQLAlchemy's execution, to psycopg and back: a
thread hop each way and most of a millisecond of CPU for a statement the server answers in tens of
microseconds. Here the same statement (compiled once, `prepared.PreparedRows`) runs on an asynchronous
psycopg connection in autocommit mode, awaited on the loop: each read is its own snapshot of what has been
committed, as on SQLite's inline reader, and its row comes back processed as SQLAlchemy would process it.
The connection is opened on the first read and opened again after it breaks (a read is retried once).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import psycopg
from sqlalchemy import Dialect, Select
from sqlalchemy.engine import make_url

from aitbc.storage.sql.prepared import PreparedRows, prepared_rows, watched


class PostgresPointReader:
    def __init__(self, url: str, dialect: Dialect) -> None:
        self._conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._dialect = dialect
        self._connection: psycopg.AsyncConnection[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opening: asyncio.Lock | None = None

    async def first(self, statement: Select[Any], parameters: Mapping[str, Any]) -> dict[str, Any] | None:
        prepared = prepared_rows(statement, self._dialect)
        values = prepared.named_values(parameters)
        try:
            return await self._first(prepared, values)
        except psycopg.OperationalError:  # the server restarted, the connection dropped: once more, anew
            await self.close()
            return await self._first(prepared, values)

    async def _first(self, prepared: PreparedRows, values: dict[str, Any]) -> dict[str, Any] | None:
        connection = await self._open()
        watched(self, prepared.sql)
        cursor = await connection.execute(prepared.sql, values)
        row = await cursor.fetchone()
        return prepared.mapping(row, cursor.description) if row is not None else None

    async def _open(self) -> psycopg.AsyncConnection[Any]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a connection (and its lock) belongs to the loop that opened it
            self._connection, self._loop, self._opening = None, loop, asyncio.Lock()
        connection = self._connection
        if connection is not None and not connection.closed:
            return connection
        assert self._opening is not None
        async with self._opening:
            if self._connection is None or self._connection.closed:
                self._connection = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
            return self._connection

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and self._loop is asyncio.get_running_loop():
            await connection.close()
