"""A SELECT of one row compiled once and run on the SQLite driver's own connection.

A status GET's one statement takes SQLite some tens of microseconds; SQLAlchemy's execution around it (an
execution context, a cursor result, a row object, the transaction bookkeeping after) cost several times that,
on the event loop, for every request. The statement here is compiled once for the dialect, with the type
processors SQLAlchemy would apply to its parameters and columns, so a read is the driver's
`execute(...).fetchone()` and a loop over the columns: the same values SQLAlchemy would give back.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Dialect, Select

Processor = Callable[[Any], Any] | None


class PreparedSelect:
    """`statement` compiled for `dialect`: its SQL text, its parameters in order and its columns by name."""

    def __init__(self, statement: Select[Any], dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.statement = statement
        self.sql = str(compiled)
        binds = compiled.binds
        assert not any(bind.expanding for bind in binds.values()), "an IN list is compiled per call: not here"
        self.parameters: list[tuple[str, Processor]] = [
            (name, binds[name].type.dialect_impl(dialect).bind_processor(dialect))
            for name in compiled.positiontup or ()
        ]
        self.columns: list[tuple[str, Processor]] = [
            (str(key), column.type.dialect_impl(dialect).result_processor(dialect, None))
            for key, column in statement.selected_columns.items()
        ]

    def first(self, driver: sqlite3.Connection, parameters: Mapping[str, Any]) -> dict[str, Any] | None:
        """The first row as a mapping of column name to value, or None."""
        values = [
            process(parameters[name]) if process is not None else parameters[name] for name, process in self.parameters
        ]
        row = driver.execute(self.sql, values).fetchone()
        if row is None:
            return None
        return {
            name: process(value) if process is not None else value
            for (name, process), value in zip(self.columns, row, strict=True)
        }
