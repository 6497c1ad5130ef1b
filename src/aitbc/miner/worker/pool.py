"""The miner's side of the AI worker: start it in its sandbox, hand it one job at a time, relay its
progress and logs to the job's reporter, stop it when the job must stop, and replace it when it dies.

Each worker has one exchange folder (`exchange`), bound at `/job` when it starts, emptied before and after
every job: no file of one job is there for the next.

Each worker sees one set of GPUs, fixed when it starts (bwrap binds device nodes only then): a job runs in a
worker of exactly the GPUs the agent gave it, a job given none in a worker with no GPU at all. One job at a
time per worker; a runtime keeps warm workers per GPU set and starts another when none of the job's set is
idle, at most one per job the miner runs at once in all (an idle worker of another set is stopped to make
room). A `cancel` asks the worker to stop at its next batch or token; a worker that has not answered within
the grace is killed, and the next job gets a fresh one.

Every worker of the miner answers to one `ModelCache` (`settings.cache`, shared by the runtimes): before a
job, its model is admitted there (other models are unloaded to make room); the worker's `model` answer marks
the moment the job's work (and its bill) starts (`context.timings`)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import signal
import stat
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aitbc.concurrency import INTERRUPTED, unless
from aitbc.domain.job import FailureReason
from aitbc.miner.config import MinerConfig
from aitbc.miner.runtimes.interface import JobContext, JobFailed, RuntimeUnavailable
from aitbc.miner.sandbox import HostUser
from aitbc.miner.worker import messages
from aitbc.miner.worker.exchange import ExchangeFolder, ExchangeFolders
from aitbc.miner.worker.model_cache import ModelCache
from aitbc.miner.worker.sandboxing import worker_argv, worker_spec

log = logging.getLogger(__name__)
START_TIMEOUT_SECONDS = 120.0
MIN_STOP_GRACE_SECONDS = 5.0  # one batch or one token, on a busy CPU
WORKERS_FOLDER = "workers"
STDERR_LINES_KEPT = 20
FAILURE_REASONS = {FailureReason.INVALID_INPUT.value, FailureReason.RUNTIME_ERROR.value}


@dataclass(frozen=True)
class WorkerSettings:
    name: str  # the runtime it serves, for messages
    models: Sequence[Path]  # model folders it may read
    user: HostUser | None  # the host user it runs as (a root miner's job user), None: the miner's own
    exchanges: ExchangeFolders
    stop_grace_seconds: float
    max_workers: int  # alive at once, all GPU sets together: the jobs the miner runs at once
    cache: ModelCache  # the models of every worker of the miner, within its budget
    dev: Path = Path("/dev")  # where the GPUs' device nodes are

    @classmethod
    def for_miner(
        cls, config: MinerConfig, name: str, models: Sequence[Path], cache: ModelCache | None = None
    ) -> WorkerSettings:
        """A root miner's worker runs as its job user (`--run-as`, else nobody), who must be able to read the
        model folders. `cache`: the miner's model cache, shared by its runtimes (else one of its own)."""
        user = HostUser.for_jobs(config.command_user)
        if user is not None:
            for folder in models:
                unreadable = _unreadable_by(folder, user)
                if unreadable is not None:
                    raise RuntimeUnavailable(
                        f"{unreadable} (model {folder}) is not readable by the user the AI worker runs as "
                        f"(uid {user.uid}): chmod -R o+rX {folder}"
                    )
        return cls(
            name=name,
            models=tuple(models),
            user=user,
            exchanges=ExchangeFolders.at(config.work_dir / WORKERS_FOLDER / name, user),
            stop_grace_seconds=max(config.kill_grace_seconds, MIN_STOP_GRACE_SECONDS),
            max_workers=max(1, config.max_jobs),
            cache=cache or ModelCache.for_miner(config.model_cache_bytes, config.max_models, config.gpus),
        )


def _unreadable_by(folder: Path, user: HostUser) -> Path | None:
    """The first folder or file of a model that `user` could not read (the permission bits, as the kernel
    checks them for a user with no supplementary groups), None when it can read them all."""
    for root, _, names in os.walk(folder, followlinks=True):
        for path, wanted in ((Path(root), 0o5), *((Path(root) / name, 0o4) for name in names)):
            info = path.stat()
            shift = 6 if info.st_uid == user.uid else 3 if info.st_gid == user.gid else 0
            if (stat.S_IMODE(info.st_mode) >> shift) & wanted != wanted:
                return path
    return None


class Worker:
    """One sandboxed worker process, the GPUs it sees (host indices; none: a CPU worker), and its exchange
    folder."""

    def __init__(
        self,
        settings: WorkerSettings,
        gpus: tuple[int, ...],
        process: asyncio.subprocess.Process,
        exchange: ExchangeFolder,
    ) -> None:
        self.settings = settings
        self.gpus = gpus
        self.process = process
        self.exchange = exchange
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_LINES_KEPT)
        self._stderr_task = asyncio.ensure_future(self._drain_stderr())
        self._broken = False
        self._model: str | None = None  # the model folder of the job it runs

    @classmethod
    async def start(cls, settings: WorkerSettings, gpus: tuple[int, ...] = ()) -> Worker:
        exchange = settings.exchanges.create()
        argv = worker_argv(worker_spec(exchange.path, settings.models, gpus, settings.dev), settings.user)
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=messages.MAX_LINE_BYTES,
            start_new_session=True,
        )
        worker = cls(settings, gpus, process, exchange)
        try:
            ready = await asyncio.wait_for(worker._next(), START_TIMEOUT_SECONDS)
        except (TimeoutError, JobFailed, messages.ProtocolError) as error:
            await worker.close()
            reason = str(error) if isinstance(error, JobFailed) else f"{error}{worker._last_words()}"
            message = f"the {settings.name} worker could not start: {reason}"
            raise JobFailed(message, FailureReason.RUNTIME_ERROR) from None
        if ready["kind"] != messages.READY:
            await worker.close()
            raise JobFailed(f"the {settings.name} worker said {ready['kind']!r} first", FailureReason.RUNTIME_ERROR)
        log.info("%s worker started (pid %d, GPUs %s)", settings.name, process.pid, list(gpus) or "none")
        return worker

    @property
    def pid(self) -> int:
        """The process the miner started (bwrap); the worker's Python runs under it."""
        return self.process.pid

    @property
    def reusable(self) -> bool:
        return not self._broken and self.process.returncode is None

    # -- the exchange folder --------------------------------------------------------------------------

    def clear(self) -> None:
        """Empty the exchange folder; a worker whose folder cannot be emptied is not used again."""
        if not self.exchange.clear():
            self._broken = True

    def prepare(self) -> None:
        if not self.exchange.prepare():
            self._broken = True

    # -- one job --------------------------------------------------------------------------------------

    async def run(self, request: dict[str, Any], context: JobContext) -> dict[str, Any]:
        """Send one job, relay what the worker says about it, and return its result. The job's stop becomes a
        `cancel`; no answer within the grace after that, a crash, or a garbled line: the worker is killed and
        the job fails with a message (a stopped job still ends as its stop says: canceled, timed out)."""
        if not self.reusable:
            raise JobFailed(f"the {self.settings.name} worker is gone", FailureReason.RUNTIME_ERROR)
        self._broken = True  # until the worker answers this job: a job left half-way leaves it unusable
        model = request.get("model")
        self._model = model if isinstance(model, str) else None
        if self._model is not None:
            context.timings.waits_for_model()
            self.settings.cache.admit(self, self._model)
        body = dict(request)
        self._write(messages.encode(body.pop("kind"), **body))
        try:
            outcome = await unless(self._outcome(context), self._stop_grace_spent(context))
        except messages.ProtocolError as error:
            raise JobFailed(f"the {self.settings.name} worker broke: {error}", FailureReason.RUNTIME_ERROR) from None
        finally:
            if self._broken:
                await self.kill()
        if outcome is INTERRUPTED:
            raise JobFailed(
                f"the {self.settings.name} worker did not stop within {self.settings.stop_grace_seconds:g} s "
                "of being asked to; it was killed (the next job gets a fresh one)",
                FailureReason.RUNTIME_ERROR,
            )
        if isinstance(outcome, JobFailed):
            raise outcome
        return outcome

    async def _outcome(self, context: JobContext) -> dict[str, Any] | JobFailed:
        """Relay what the worker says about the job until its end: its result, or the failure it reported."""
        while (outcome := self._relay(await self._next(), context)) is None:
            pass
        self._broken = False
        return outcome

    async def _stop_grace_spent(self, context: JobContext) -> None:
        """Once the job must stop, ask the worker to cancel it; return when the grace for its answer is over."""
        await context.stop.wait()
        self._write(messages.encode(messages.CANCEL))
        await asyncio.sleep(self.settings.stop_grace_seconds)

    def _relay(self, message: dict[str, Any], context: JobContext) -> dict[str, Any] | JobFailed | None:
        """Pass progress and log lines on; the job's end is its result, or the failure the worker reported."""
        kind = message["kind"]
        if kind == messages.PROGRESS:
            percent = message.get("percent")
            if isinstance(percent, int | float):
                note = message.get("message")
                context.reporter.progress(float(percent), note if isinstance(note, str) else None)
        elif kind == messages.LOG:
            context.reporter.line(
                "stderr" if message.get("stream") == "stderr" else "stdout", str(message.get("line", ""))
            )
        elif kind == messages.MODEL:
            load_seconds = message.get("load_seconds")
            context.timings.model_ready(
                message.get("warm") is True, float(load_seconds) if isinstance(load_seconds, int | float) else 0.0
            )
            size = message.get("size")
            if self._model is not None and isinstance(size, int):
                self.settings.cache.loaded(self, self._model, size)
        elif kind == messages.DONE:
            result = message.get("result")
            if not isinstance(result, dict):
                raise messages.ProtocolError("a result that is not an object")
            self.settings.cache.settle(self, messages.held_models(message.get("models")))
            return result
        elif kind == messages.FAILED:
            self.settings.cache.settle(self, messages.held_models(message.get("models")))
            reason = message.get("reason")
            return JobFailed(
                str(message.get("message", "the worker failed")),
                FailureReason(reason) if reason in FAILURE_REASONS else FailureReason.RUNTIME_ERROR,
            )
        else:
            raise messages.ProtocolError(f"an answer of unknown kind {kind!r}")
        return None

    # -- the process ----------------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        assert self.process.stdin is not None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # it died: reading says so
            self.process.stdin.write(data)

    async def _next(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        try:
            line = await self.process.stdout.readline()
        except ValueError as error:  # a line over the limit
            raise messages.ProtocolError(str(error)) from None
        if not line:
            code = await self.process.wait()
            await asyncio.wait({self._stderr_task}, timeout=1)
            raise JobFailed(
                f"the {self.settings.name} worker stopped unexpectedly (exit code {code}){self._last_words()}",
                FailureReason.RUNTIME_ERROR,
            )
        return messages.decode(line)

    async def _drain_stderr(self) -> None:
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            text = line.decode(errors="replace").rstrip()
            self._stderr.append(text)
            log.debug("%s worker: %s", self.settings.name, text)

    def _last_words(self) -> str:
        lines = [line for line in self._stderr if line.strip()]
        return f": {lines[-1][:500]}" if lines else ""

    def unload(self, models: Sequence[str]) -> None:
        """Tell the worker to drop these models (it does at once, never the running job's); no answer."""
        if self.process.returncode is None:
            self._write(messages.encode(messages.UNLOAD, models=list(models)))

    def describe(self) -> str:
        return f"the {self.settings.name} worker (pid {self.pid})"

    async def kill(self) -> None:
        """The whole sandbox at once: bwrap's process group; its PID namespace takes the rest."""
        self._broken = True
        self.settings.cache.forget(self)
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            await self.process.wait()

    async def close(self) -> None:
        """Ask it to end (stdin closed), kill it if it does not within the grace, and remove its folder."""
        self.settings.cache.forget(self)
        if self.process.returncode is None and self.process.stdin is not None:
            self.process.stdin.close()
            try:
                await asyncio.wait_for(self.process.wait(), self.settings.stop_grace_seconds)
            except TimeoutError:
                await self.kill()
        self._stderr_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._stderr_task
        self.exchange.remove()


class WorkerPool:
    """The warm workers of one runtime, by GPU set: a job takes an idle worker of its set, or a new one, within
    `max_workers` alive in all (starting and stopping ones counted)."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self._idle: list[Worker] = []  # the least recently used first
        self._busy: set[Worker] = set()
        self._leaving: set[Worker] = set()  # being stopped
        self._starting = 0
        self._changed = asyncio.Event()  # set (and replaced) when a worker is handed back or stopped

    @property
    def workers(self) -> list[Worker]:
        return [*self._idle, *self._busy]

    @property
    def alive(self) -> int:
        """The workers whose processes may be running: idle, busy, starting or being stopped."""
        return len(self._idle) + len(self._busy) + len(self._leaving) + self._starting

    @contextlib.asynccontextmanager
    async def worker(self, gpus: tuple[int, ...] = ()) -> AsyncIterator[Worker]:
        """A warm worker that sees exactly GPUs `gpus` (none: no GPU), with an empty exchange folder, for one
        job; emptied again, and kept if it is still sound, afterwards."""
        gpus = tuple(sorted(set(gpus)))
        worker = await self._take(gpus)
        worker.prepare()
        if not worker.reusable:  # its folder could not be emptied: a fresh worker, with a fresh folder
            await self._stop(worker)
            worker = await self._take(gpus)
            worker.prepare()
        self._busy.add(worker)  # no await since it was taken: it was never left uncounted
        try:
            yield worker
        finally:
            self._busy.discard(worker)
            worker.clear()
            if worker.reusable:
                self._idle.append(worker)
                self._notify()
            else:
                await self._stop(worker)

    async def _take(self, gpus: tuple[int, ...]) -> Worker:
        """An idle worker of this set (the most recently used), else a new one once there is room: an idle
        worker of another set is stopped for it, or the job waits for one to be handed back."""
        while True:
            same = [worker for worker in self._idle if worker.gpus == gpus]
            if same:
                worker = same[-1]
                self._idle.remove(worker)
                if worker.reusable:
                    return worker
                await self._stop(worker)
            elif self.alive < self.settings.max_workers:
                return await self._start(gpus)
            elif self._idle and not self._leaving:  # one being stopped makes room soon: no second one
                await self._stop(self._idle.pop(0))
            else:
                await self._changed.wait()  # taken with the checks above, no await between: no wake-up missed

    async def _start(self, gpus: tuple[int, ...]) -> Worker:
        self._starting += 1
        try:
            return await Worker.start(self.settings, gpus)
        finally:
            self._starting -= 1
            self._notify()

    async def _stop(self, worker: Worker) -> None:
        self._leaving.add(worker)
        try:
            await worker.close()
        finally:
            self._leaving.discard(worker)
            self._notify()

    def _notify(self) -> None:
        """Wake every job waiting for room; each checks again."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def close(self) -> None:
        workers, self._idle = [*self._idle, *self._busy], []
        self._busy.clear()
        for worker in workers:
            await worker.close()
