"""Units of work that are one statement, for `Database.read` / `Database.write`: most reads are one query, and
spelling each as its own inner function would bury the query."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, Row


def first(statement: Any) -> Callable[[Connection], Row[Any] | None]:
    """The statement's first row, or None."""
    return lambda connection: connection.execute(statement).first()


def every_row(statement: Any, parameters: dict[str, Any] | None = None) -> Callable[[Connection], Sequence[Row[Any]]]:
    """Every row of the statement (run with `parameters`, for a statement built once with bound ones)."""
    return lambda connection: connection.execute(statement, parameters).all()


def scalar(statement: Any) -> Callable[[Connection], Any]:
    """The first column of the first row, or None."""
    return lambda connection: connection.execute(statement).scalar()


def count(statement: Any) -> Callable[[Connection], int]:
    """A statement that answers one number (a count, a sum with a default)."""
    return lambda connection: int(connection.execute(statement).scalar_one())


def rows_changed(statement: Any) -> Callable[[Connection], int]:
    """Run an UPDATE or DELETE; how many rows it changed."""
    return lambda connection: int(connection.execute(statement).rowcount or 0)
