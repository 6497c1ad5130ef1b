"""Statements of the hot path compiled once and run on the SQLite driver's own connection.

A status GET's one statement, or a submit's six, take SQLite some tens of microseconds each; SQLAlchemy's
execution around each (an execution context, parameter processing, a cursor result, row objects) cost several
times that, on the event loop for reads and on the one writer thread for writes. A statement here is compiled
once for the dialect, with the type processors SQLAlchemy would apply to its parameters (and, for a read,
to its columns), so running it is the driver's `execute` or `executemany`: the same SQL, the same values in,
the same values out. Only for statements built once, at import (the cache is keyed by the statement object),
and only on SQLite: elsewhere `run` and `run_many` are SQLAlchemy's own execution.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Dialect, Select
from sqlalchemy.sql.dml import UpdateBase

Processor = Callable[[Any], Any] | None
Statement = Select[Any] | UpdateBase


class Prepared:
    """`statement` compiled for `dialect` for the parameters `keys` (an INSERT's columns; None: the statement's
    own bind parameters): its SQL text and its parameters in order, each with its type's processor."""

    def __init__(self, statement: Statement, dialect: Dialect, keys: Sequence[str] | None = None) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=list(keys) if keys is not None else None)
        self.statement = statement  # held, so that the id the cache keys it by is not reused
        self.sql = str(compiled)
        binds = {name: bind for bind, name in compiled.bind_names.items()}
        self.positional = bool(compiled.positional)
        names = list(compiled.positiontup or ()) if self.positional else list(binds)
        if keys is not None and not set(names) <= set(keys):
            raise ValueError(f"statement takes parameters not given: {sorted(set(names) - set(keys))}")
        if any(binds[name].expanding for name in names):
            raise ValueError("an IN list is compiled per call: not a prepared statement")
        self.parameters: list[tuple[str, Processor]] = [
            (name, binds[name].type.dialect_impl(dialect).bind_processor(dialect)) for name in names
        ]
        # The values the statement carries itself (a literal in it, such as coalesce's 0): given when not passed.
        self.own = {name: binds[name].effective_value for name in names if not binds[name].required}

    def values(self, parameters: Mapping[str, Any]) -> list[Any]:
        """The parameters in the order of the SQL's placeholders (a positional dialect: SQLite's `?`)."""
        found = self.own | dict(parameters) if self.own else parameters
        return [process(found[name]) if process is not None else found[name] for name, process in self.parameters]

    def named_values(self, parameters: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters by name (a named dialect: psycopg's `%(name)s`)."""
        found = self.own | dict(parameters) if self.own else parameters
        return {name: process(found[name]) if process is not None else found[name] for name, process in self.parameters}


class PreparedRows(Prepared):
    """A statement that answers rows (a SELECT, or an UPDATE … RETURNING), with its columns' result processors:
    rows come back as SQLAlchemy would give them. The processors are made at the first row, from the driver's
    type of each column where the dialect needs it (PostgreSQL's numbers), as SQLAlchemy makes them."""

    def __init__(self, statement: Statement, dialect: Dialect) -> None:
        super().__init__(statement, dialect)
        self._dialect = dialect
        if isinstance(statement, Select):
            described = [(str(key), column.type) for key, column in statement.selected_columns.items()]
        else:
            described = [(str(column["name"]), column["type"]) for column in statement.returning_column_descriptions]
        self.names = [name for name, _ in described]
        self._types = [type_.dialect_impl(dialect) for _, type_ in described]
        self._processors: list[Processor] | None = None

    def first(self, driver: sqlite3.Connection, parameters: Mapping[str, Any]) -> dict[str, Any] | None:
        """The first row as a mapping of column name to value, or None."""
        watched(driver, self.sql)
        cursor = driver.execute(self.sql, self.values(parameters))
        row = cursor.fetchone()
        return self.mapping(row, cursor.description) if row is not None else None

    def mapping(self, row: Sequence[Any], description: Sequence[Sequence[Any]] | None) -> dict[str, Any]:
        """A row as the driver gave it (with the cursor's description), as a mapping of column name to value as
        SQLAlchemy would give it."""
        processors = self._processors
        if processors is None:
            codes = [column[1] for column in description] if description else [None] * len(self._types)
            processors = self._processors = [
                type_.result_processor(self._dialect, code) for type_, code in zip(self._types, codes, strict=True)
            ]
        return {
            name: process(value) if process is not None else value
            for name, process, value in zip(self.names, processors, row, strict=True)
        }


# Who watches which driver connection (`watching`, for `Database.observed`): by id(connection).
_WATCHERS: dict[int, list[list[str]]] = {}


@contextlib.contextmanager
def watching(drivers: Sequence[object], seen: list[str]) -> Iterator[None]:
    """Add the SQL of each prepared statement run on `drivers` (SQLite connections, PostgreSQL point readers)
    meanwhile to `seen` (SQLAlchemy's events do not see them: they do not go through SQLAlchemy)."""
    for driver in drivers:
        _WATCHERS.setdefault(id(driver), []).append(seen)
    try:
        yield
    finally:
        for driver in drivers:
            watchers = _WATCHERS[id(driver)]
            watchers.remove(seen)
            if not watchers:
                del _WATCHERS[id(driver)]


def watched(driver: object, sql: str) -> None:
    """Tell whoever watches `driver` that it runs `sql` (nothing to look up while nobody watches)."""
    if _WATCHERS:
        for seen in _WATCHERS.get(id(driver), ()):
            seen.append(sql)


_PREPARED: dict[tuple[int, tuple[str, ...] | None], Prepared] = {}
_PREPARED_ROWS: dict[tuple[int, str], PreparedRows] = {}


def _prepared(connection: Connection, statement: Statement, keys: Sequence[str] | None) -> Prepared:
    key = (id(statement), tuple(keys) if keys is not None else None)
    found = _PREPARED.get(key)
    if found is None:
        found = _PREPARED[key] = Prepared(statement, connection.dialect, keys)
    return found


def prepared_rows(statement: Statement, dialect: Dialect) -> PreparedRows:
    """`statement` prepared for its rows, once per dialect (SQLite's, PostgreSQL's)."""
    key = (id(statement), dialect.name)
    found = _PREPARED_ROWS.get(key)
    if found is None:
        found = _PREPARED_ROWS[key] = PreparedRows(statement, dialect)
    return found


def _driver(connection: Connection) -> sqlite3.Connection | None:
    if connection.dialect.name != "sqlite":
        return None
    driver = connection.connection.driver_connection
    return driver if isinstance(driver, sqlite3.Connection) else None


def run(connection: Connection, statement: Statement, parameters: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """Run a statement built once, in the connection's transaction, and answer its rows as the driver gives
    them (so only columns no type processes: integers, text)."""
    driver = _driver(connection)
    if driver is None:
        result = connection.execute(statement, dict(parameters))
        return [tuple(row) for row in result] if result.returns_rows else []
    prepared = _prepared(connection, statement, None)
    watched(driver, prepared.sql)
    return driver.execute(prepared.sql, prepared.values(parameters)).fetchall()


def run_first(connection: Connection, statement: Statement, parameters: Mapping[str, Any]) -> dict[str, Any] | None:
    """Run a statement built once that answers rows, in the connection's transaction: its first row, as a
    mapping of column name to value (processed as SQLAlchemy would), or None."""
    driver = _driver(connection)
    if driver is None:
        row = connection.execute(statement, dict(parameters)).first()
        return dict(row._mapping) if row is not None else None
    return prepared_rows(statement, connection.dialect).first(driver, parameters)


def run_many(connection: Connection, statement: Statement, rows: Sequence[Mapping[str, Any]]) -> None:
    """Run an INSERT built once for each row (all rows with the same keys), in the connection's transaction."""
    if not rows:
        return
    driver = _driver(connection)
    if driver is None:
        connection.execute(statement, [dict(row) for row in rows])
        return
    prepared = _prepared(connection, statement, list(rows[0]))
    watched(driver, prepared.sql)
    if len(rows) == 1:
        driver.execute(prepared.sql, prepared.values(rows[0]))
    else:
        driver.executemany(prepared.sql, [prepared.values(row) for row in rows])
