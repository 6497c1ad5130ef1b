"""Keep secrets out of the server's log. uvicorn logs request paths with their query strings: the access log
for HTTP, and `uvicorn.error` for WebSocket handshakes, where a browser's only way to send its key is
`?api_key=…`. A share link's token is a secret too. A log file is read by more people than the key's owner
(operators, log shippers), so every line that passes through the server's loggers is redacted."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from aitbc.domain.redaction import redact

# The loggers whose own records are redacted whichever handler prints them, and whose handlers (and the root
# logger's) redact records that reach them from anywhere below.
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def _redacted(value: object) -> object:
    return redact(value) if isinstance(value, str) else value


class RedactSecrets(logging.Filter):
    """Rewrites a record's message and its string arguments in place; the arguments keep their shape, since
    uvicorn's access formatter and the miner-poll filter read them by position."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redacted(value) for value in record.args)
        elif isinstance(record.args, dict):
            record.args = {name: _redacted(value) for name, value in record.args.items()}
        if record.exc_info and not record.exc_text:  # a traceback can quote a URL: format it here, redacted
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


@contextlib.contextmanager
def redacted_logs() -> Iterator[None]:
    """While the app runs: the filter on the server's loggers and on every handler they and the root logger
    write to (handlers see records propagated from our own loggers, which a logger's filter does not)."""
    redaction = RedactSecrets()
    loggers = [logging.getLogger(name) for name in SERVER_LOGGERS]
    filtered: list[logging.Filterer] = [*loggers]
    for logger in [*loggers, logging.getLogger()]:
        filtered.extend(handler for handler in logger.handlers if handler not in filtered)
    for item in filtered:
        item.addFilter(redaction)
    try:
        yield
    finally:
        for item in filtered:
            item.removeFilter(redaction)
