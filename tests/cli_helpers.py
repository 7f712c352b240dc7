"""Running the real ``herdexec`` console script in a subprocess, for the CLI tests."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

HERDEXEC = str(Path(sys.executable).with_name("herdexec"))
PYTHON_M = [sys.executable, "-m", "herdexec"]
TIMEOUT = 30  # seconds any one herdexec run may take before the test fails
# Prints its argv, one JSON list per job, so that each argument is seen exactly.
ARGV = [sys.executable, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))"]
JOBLOG_HEADER = ["seq", "status", "exit", "attempts", "start", "duration", "item"]


def herdexec(
    *args: str,
    stdin: str | bytes = b"",
    cwd: Path | None = None,
    script: bool = True,
    stdout: int | IO[Any] = subprocess.PIPE,
    preexec_fn: Callable[[], object] | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``herdexec ARGS`` to the end (the venv's script, or ``python -m herdexec``);
    its output as text (stdout empty when it went elsewhere)."""
    data = stdin.encode() if isinstance(stdin, str) else stdin
    command = [HERDEXEC] if script else PYTHON_M
    result = subprocess.run(
        [*command, *args],
        input=data,
        stdout=stdout,
        stderr=subprocess.PIPE,
        timeout=TIMEOUT,
        cwd=cwd,
        check=False,
        preexec_fn=preexec_fn,
        env=env,
    )
    return subprocess.CompletedProcess(
        result.args,
        result.returncode,
        (result.stdout or b"").decode(errors="replace"),
        result.stderr.decode(errors="replace"),
    )


def run_cli(*args: str, **options: Any) -> subprocess.CompletedProcess[str]:
    """Run ``herdexec run ARGS`` to the end, as :func:`herdexec` does."""
    return herdexec("run", *args, **options)


def read_joblog(path: Path) -> list[dict[str, str]]:
    lines = path.read_text().splitlines()
    assert lines[0].split("\t") == JOBLOG_HEADER
    rows = [line.split("\t") for line in lines[1:]]
    assert all(len(row) == len(JOBLOG_HEADER) for row in rows), rows
    return sorted((dict(zip(JOBLOG_HEADER, row, strict=True)) for row in rows), key=_seq)


def _seq(row: dict[str, str]) -> int:
    return int(row["seq"])


class Lines:
    """Lines from a file descriptor, each waited for with a timeout."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.seen: list[str] = []
        self._buffer = b""

    def readline(self, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise TimeoutError(f"no line within {timeout} s; saw {self.seen}")
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise EOFError(f"closed; saw {self.seen}")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        self.seen.append(line.decode(errors="replace"))
        return self.seen[-1]

    def wait_for(self, pattern: str, timeout: float = 10) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.readline(max(0.0, deadline - time.monotonic())))
            if match:
                return match
