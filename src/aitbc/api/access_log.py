"""Keep the access log readable: a miner's long polls (claim, heartbeat) answered 200 are routine, one or two
a minute per miner, and would bury the requests a person running `aitbc serve` wants to see."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator

MINER_POLL = re.compile(r"^/v1/miners/[^/]+/(claim|heartbeat)$")


class QuietMinerPolls(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not isinstance(args, tuple) or len(args) < 5:
            return True
        _client, method, path, _version, status = args[:5]
        routine = method == "POST" and isinstance(path, str) and bool(MINER_POLL.match(path)) and status == 200
        return not routine or logging.getLogger("uvicorn.access").isEnabledFor(logging.DEBUG)


@contextlib.contextmanager
def quiet_miner_polls(logger_name: str = "uvicorn.access") -> Iterator[None]:
    logger = logging.getLogger(logger_name)
    quiet = QuietMinerPolls()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)
