"""``herdexec run`` when its own input or output fails, and when it is given bad input.

Real failures, through the real console script: stdout is /dev/full; the joblog is
/dev/full, or a file that reaches the process's RLIMIT_FSIZE mid-run; the input is a
directory, or a pseudo-terminal whose other side closes mid-read (its reader gets EIO).
"""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import tty
from pathlib import Path

import pytest

from .cli_helpers import HERDEXEC, JOBLOG_HEADER, TIMEOUT, Lines, read_joblog, run_cli

NO_SPACE = "cannot write to stdout (No space left on device)"


def one_line_about(stderr: str, text: str) -> None:
    """``text`` is said once as it happens, once more in the summary, and nothing looks
    like a crash."""
    said, summary = [line for line in stderr.splitlines() if text in line]
    assert re.fullmatch(
        f"herdexec: {re.escape(text)}: starting no more jobs(, waiting for 1 running)?", said
    ), stderr
    assert f"; stopped: {text}" in summary, stderr
    assert "Traceback" not in stderr
    assert "exception calling callback" not in stderr


@pytest.mark.parametrize("order", [[], ["--keep-order"]])
def test_a_stdout_that_cannot_be_written_stops_the_run_as_a_failure(
    tmp_path: Path, order: list[str]
) -> None:
    log = tmp_path / "jobs.tsv"
    with open("/dev/full", "wb") as full:
        result = run_cli(
            "-j", "1", *order, "--joblog", str(log), "--", "echo", stdin="a\nb\nc\n", stdout=full
        )
    assert result.returncode == 3, result.stderr
    one_line_about(result.stderr, NO_SPACE)
    # Nothing was written: no job may be logged as a success. (b may have started
    # before the run stopped; its output is lost too.)
    rows = read_joblog(log)
    first = rows[0]
    assert (first["item"], first["status"], first["exit"]) == ("a", "output-lost", "0")
    assert {r["status"] for r in rows[1:]} <= {"output-lost", "not-started"}


def test_a_full_stdout_is_no_failure_when_nothing_is_written_to_it() -> None:
    with open("/dev/full", "wb") as full:
        result = run_cli("-j", "2", "--", "true", stdin="a\nb\n", stdout=full)
    assert (result.returncode, result.stderr) == (0, "")


def test_a_dry_run_to_a_full_stdout_fails() -> None:
    with open("/dev/full", "wb") as full:
        result = run_cli("--dry-run", "--", "echo", stdin="a\nb\n", stdout=full)
    assert (result.returncode, result.stderr) == (3, f"herdexec: {NO_SPACE}\n")


def test_a_joblog_that_becomes_unwritable_stops_the_run(tmp_path: Path) -> None:
    log = tmp_path / "jobs.tsv"
    header = len("\t".join(JOBLOG_HEADER)) + 1
    # Room for the header and one line ('1\tsuccess\t0\t1\t<start>\t0.002\ta\n' is 47
    # bytes), not two: the second line is cut short by the file size limit (EFBIG).
    room = header + 60

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG, not a signal that kills
        resource.setrlimit(resource.RLIMIT_FSIZE, (room, room))

    result = run_cli(
        "-j",
        "1",
        "--joblog",
        str(log),
        "--",
        "echo",
        stdin="a\nb\nc\nd\n",
        preexec_fn=limit_file_size,
    )
    assert result.returncode == 3, result.stderr
    one_line_about(result.stderr, f"cannot write the joblog {log} (File too large)")
    assert result.stdout.startswith("a\nb\n")
    # The line that did not fit was taken back: every line in the joblog is whole.
    assert [(r["item"], r["status"]) for r in read_joblog(log)] == [("a", "success")]
    assert log.read_text().endswith("\ta\n")


def test_an_input_that_fails_mid_read_says_so(tmp_path: Path) -> None:
    # The input is a pseudo-terminal's master side: once the other side is closed, its
    # reader gets EIO, as from a disk that fails.
    master, terminal = os.openpty()
    tty.setraw(terminal)  # no \r added to the newlines
    proc = subprocess.Popen(
        [HERDEXEC, "run", "-j", "1", "--", "echo"],
        stdin=master,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    os.close(master)
    try:
        assert proc.stdout is not None
        os.write(terminal, b"a\nb\n")
        out = Lines(proc.stdout.fileno())
        assert [out.readline(), out.readline()] == ["a", "b"]
    finally:
        os.close(terminal)
    _, err = proc.communicate(timeout=TIMEOUT)
    stderr = err.decode()
    assert proc.returncode == 3, stderr
    one_line_about(stderr, "cannot read the input (Input/output error)")
    assert "SIG" not in stderr
    assert stderr.endswith(
        "herdexec: 2 succeeded, 0 retried, 0 failed, 0 not started;"
        " stopped: cannot read the input (Input/output error), input not read to the end\n"
    )


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["-a", "/", "--", "true"], "-a /: Is a directory"),
        (["--joblog", "/dev/full", "--", "true"], "--joblog /dev/full: No space left on device"),
        (["--timeout", "inf", "--", "true"], "argument --timeout: not a finite number: 'inf'"),
        (["--backoff", "nan", "--", "true"], "argument --backoff: not a finite number: 'nan'"),
        (["--bogus", "--", "true"], "unrecognized arguments: --bogus"),
        (["-a", os.fsdecode(b"/nonexistent/\xb5"), "--", "true"], "\\xb5: No such file"),
    ],
)
def test_usage_errors_say_what_is_wrong_in_one_line(args: list[str], error: str) -> None:
    result = run_cli(*args, stdin="1\n")
    assert result.returncode == 2, result.stderr
    usage, said = result.stderr.splitlines()
    assert usage.startswith("usage: herdexec run ")
    assert said.startswith("herdexec run: error: ")
    assert error in said


def test_items_that_are_not_utf8_are_shown_as_bytes_in_messages() -> None:
    result = run_cli("--", "false", stdin=b"caf\xe9\n")
    assert result.returncode == 1
    assert "herdexec: failed with exit 1: false 'caf\\xe9'\n" in result.stderr
