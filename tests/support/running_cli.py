"""A CLI command left running while the test does other things (`aitbc client watch`, `logs --follow`): its
stdout and stderr read as they come by threads of their own, so the test can wait for a line without
blocking on a pipe, then for the command's end."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from typing import IO

from tests.support.waiting import wait_until


class RunningCli:
    def __init__(self, command: list[str], environment: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            command,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        assert self.process.stdout is not None and self.process.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.stdout_lines), daemon=True),
            threading.Thread(target=self._read, args=(self.process.stderr, self.stderr_lines), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: IO[str], lines: list[str]) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))

    @property
    def stdout(self) -> str:
        return "\n".join(self.stdout_lines)

    @property
    def stderr(self) -> str:
        return "\n".join(self.stderr_lines)

    def wait_for_line(self, matches: Callable[[str], bool], timeout: float = 30, stream: str = "stdout") -> str:
        """The first line of `stream` that `matches`, waiting for it to be printed."""
        lines = self.stdout_lines if stream == "stdout" else self.stderr_lines

        def found() -> str | None:
            if self.process.poll() is not None:
                for reader in self._readers:
                    reader.join(timeout=5)
            hit = next((line for line in lines if matches(line)), None)
            if hit is None and self.process.poll() is not None:
                raise AssertionError(f"the command exited {self.process.returncode}:\n{self.stdout}\n{self.stderr}")
            return hit

        return wait_until(found, timeout, what=f"a line on the command's {stream}")

    def wait(self, timeout: float = 60) -> int:
        """The exit code, once both streams are read to their end."""
        code = self.process.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=10)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
