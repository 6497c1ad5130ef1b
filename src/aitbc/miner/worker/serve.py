"""The worker's main loop: read requests from stdin, run one job at a time, answer on a private copy of
stdout. File descriptor 1 is pointed at stderr first, so a library that prints cannot corrupt the protocol.

A reader thread takes each line as it comes, so a `cancel` reaches the job while it runs (the job checks
between batches or tokens) and an `unload` frees memory at once, even while a job runs (never its model);
jobs run on the main thread, in order. The worker ends when stdin closes."""

from __future__ import annotations

import os
import queue
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any, BinaryIO

from aitbc.domain.job import FailureReason
from aitbc.miner.runtimes.interface import JobFailed
from aitbc.miner.worker import messages
from aitbc.miner.worker.loaded_models import Models
from aitbc.miner.worker.tasks import Job, embed, generate

Task = Callable[[Job, dict[str, Any], Models], dict[str, Any]]
TASKS: dict[str, Task] = {messages.EMBED: embed, messages.GENERATE: generate}


class Channel:
    """The worker's end of the protocol: answers go out whole, one line each, from any thread."""

    def __init__(self) -> None:
        self._out: BinaryIO = os.fdopen(os.dup(1), "wb", buffering=0)
        os.dup2(2, 1)
        self._lock = threading.Lock()

    def send(self, kind: str, **fields: Any) -> None:
        with self._lock:
            self._out.write(messages.encode(kind, **fields))


class Inbox:
    """Requests from the miner: jobs queued for the main thread, a `cancel` applied to the latest job (its
    stop flag exists from the moment its request is read, so a cancel that follows at once is not lost)."""

    def __init__(self, send: Callable[..., None], models: Models) -> None:
        self.jobs: queue.Queue[tuple[dict[str, Any], Job] | None] = queue.Queue()
        self._send = send
        self._models = models
        self._latest: Job | None = None

    def read(self, stream: BinaryIO) -> None:
        for line in stream:
            try:
                message = messages.decode(line)
            except messages.ProtocolError:
                print(f"aitbc worker: ignored a line that is not a request: {line[:200]!r}", file=sys.stderr)
                continue
            if message["kind"] == messages.CANCEL:
                if self._latest is not None:
                    self._latest.stop.set()
            elif message["kind"] == messages.UNLOAD:
                folders = message.get("models")
                self._models.unload([str(folder) for folder in folders] if isinstance(folders, list) else [])
            else:
                self._latest = Job(self._send)
                self.jobs.put((message, self._latest))
        self.jobs.put(None)  # stdin closed: the miner is done with this worker


def run_one(channel: Channel, request: dict[str, Any], job: Job, models: Models) -> None:
    """Run one job and answer for it, with what the worker holds afterwards; its model may then be unloaded."""
    answer: dict[str, Any]
    try:
        task = TASKS.get(request["kind"])
        if task is None:
            raise JobFailed(f"the worker has no task {request['kind']!r}", FailureReason.RUNTIME_ERROR)
        answer = {"kind": messages.DONE, "result": task(job, request, models), "stopped": job.stopped()}
    except JobFailed as error:
        answer = {"kind": messages.FAILED, "reason": error.reason.value, "message": error.message}
    except Exception as error:  # the job fails; the worker, whose models are intact, serves the next one
        for line in traceback.format_exc().splitlines():
            job.log(line, "stderr")
        message = f"{error.__class__.__name__}: {error}"
        answer = {"kind": messages.FAILED, "reason": FailureReason.RUNTIME_ERROR.value, "message": message}
    finally:
        models.release()
    channel.send(**answer, models=models.held())


def main() -> None:
    channel = Channel()
    models = Models()
    inbox = Inbox(channel.send, models)
    threading.Thread(target=inbox.read, args=(sys.stdin.buffer,), name="requests", daemon=True).start()
    channel.send(messages.READY)
    while (item := inbox.jobs.get()) is not None:
        run_one(channel, *item, models)
