"""``herdexec run``: the real console script, in a subprocess, running real commands.

Jobs that must be caught mid-run are held by FIFOs rather than sleeps: each says it has
started on the ``started`` FIFO (and gives its shell's pid), then waits for one line on
the ``gate`` FIFO, which the test writes to let one job go. The test holds both FIFOs
open for reading and writing, so that no job's open() ever waits for the test.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from .cli_helpers import (
    ARGV,
    HERDEXEC,
    PYTHON_M,
    TIMEOUT,
    Lines,
    herdexec,
    read_joblog,
    run_cli,
)
from .helpers import wait_until


@pytest.fixture(autouse=True)
def _the_script_is_installed() -> None:
    if not os.access(HERDEXEC, os.X_OK):
        pytest.fail(f"{HERDEXEC} is missing: pip install -e . installs the console script")


class Fifo(Lines):
    """A named pipe the test holds open both ways: jobs write or read it at once."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path = path
        super().__init__(os.open(path, os.O_RDWR | os.O_NONBLOCK))

    def send(self, count: int = 1) -> None:
        os.write(self.fd, b"go\n" * count)


class Run:
    """A herdexec run in the background, its stderr read line by line."""

    def __init__(self, *args: str, cwd: Path | None = None) -> None:
        self.proc = subprocess.Popen(
            [HERDEXEC, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
        )
        assert self.proc.stderr is not None
        self.stderr = Lines(self.proc.stderr.fileno())

    def feed(self, *items: str, close: bool = False) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("".join(f"{item}\n" for item in items).encode())
        self.proc.stdin.flush()
        if close:
            self.proc.stdin.close()
            self.proc.stdin = None

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def finish(self) -> tuple[int, str, str]:
        """Close stdin, wait for the end: the exit status, stdout, and all of stderr."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
            self.proc.stdin = None
        out, err = self.proc.communicate(timeout=TIMEOUT)
        seen = "".join(f"{line}\n" for line in self.stderr.seen)
        return (
            self.proc.returncode,
            out.decode(),
            seen + self.stderr._buffer.decode() + err.decode(),
        )


@pytest.fixture
def background() -> Iterator[type[Run]]:
    """Start Runs that are stopped (jobs and all) if the test leaves them running."""
    runs: list[Run] = []

    class Tracked(Run):
        def __init__(self, *args: str, cwd: Path | None = None) -> None:
            super().__init__(*args, cwd=cwd)
            runs.append(self)

    yield Tracked
    for run in runs:
        if run.proc.poll() is None:
            run.signal(signal.SIGTERM)  # herdexec kills its jobs' process groups
            try:
                run.proc.wait(10)
            except subprocess.TimeoutExpired:
                run.proc.kill()
                run.proc.wait()
        for stream in (run.proc.stdin, run.proc.stdout, run.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def started(tmp_path: Path) -> Fifo:
    return Fifo(tmp_path / "started")


@pytest.fixture
def gate(tmp_path: Path) -> Fifo:
    return Fifo(tmp_path / "gate")


def held_job(started: Fifo, gate: Fifo) -> list[str]:
    """A job that reports '<item> <pid>' on ``started``, waits for the gate, then prints."""
    script = 'echo "$1 $$" > "$2"; read line < "$3"; echo "out $1"'
    return ["sh", "-c", script, "sh", "{}", str(started.path), str(gate.path)]


def wait_started(started: Fifo, count: int) -> dict[str, int]:
    """Wait for ``count`` jobs to start; their items and shell pids."""
    return {item: int(pid) for item, pid in (started.readline().split() for _ in range(count))}


def gone(pid: int) -> bool:
    """The process has exited and been reaped (a zombie still answers kill(pid, 0))."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):  # ESRCH: it exited as we read
        return True
    return state == "Z" and wait_until(lambda: not Path(f"/proc/{pid}").exists(), 5)


# -- items and commands ------------------------------------------------------------


def test_placeholder_is_replaced_everywhere_or_the_item_appended() -> None:
    result = run_cli("-j", "1", "--", *ARGV, "--in={}", "{}{}", stdin="a\nb c\n")
    assert result.returncode == 0, result.stderr
    assert sorted(map(json.loads, result.stdout.splitlines())) == [
        ["--in=a", "aa"],
        ["--in=b c", "b cb c"],
    ]
    appended = run_cli("--", *ARGV, "-x", stdin="item\n")
    assert json.loads(appended.stdout) == ["-x", "item"]


def test_hostile_items_arrive_verbatim_as_one_argument(tmp_path: Path) -> None:
    items = [
        "; rm -rf /",
        "$(touch pwned)",
        "`touch pwned`",
        'it\'s "quoted"',
        "  spaced  out  ",
        "a\tb\\n",
        "*",
        "-n",
        "&& touch pwned || true",
        "| touch pwned",
    ]
    listing = tmp_path / "items.txt"
    # One item per line: a newline ends an item, it can never end up inside one.
    listing.write_bytes("\n".join(items).encode() + b"\nlast\xff\n")
    result = run_cli("-a", str(listing), "--", *ARGV, "{}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    seen = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(seen) == sorted([[item] for item in items] + [["last\udcff"]])
    assert not (tmp_path / "pwned").exists()
    assert not list(tmp_path.glob("*-n*"))


def test_empty_lines_are_skipped_and_an_empty_input_succeeds() -> None:
    result = run_cli("--", *ARGV, stdin="\n\nx\n\n")
    assert (result.returncode, result.stdout) == (0, '["x"]\n')
    nothing = run_cli("--", "false", stdin="")
    assert (nothing.returncode, nothing.stdout, nothing.stderr) == (0, "", "")


def test_dry_run_prints_the_commands_and_runs_none(tmp_path: Path) -> None:
    result = run_cli(
        "--dry-run",
        "--joblog",
        str(tmp_path / "log"),
        "--",
        "touch",
        "{}",
        cwd=tmp_path,
        stdin="a b\n$(x)\n",
    )
    assert result.returncode == 0
    assert result.stdout == "touch 'a b'\ntouch '$(x)'\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# -- exit status, the joblog, retries, timeouts ------------------------------------


def test_exit_status_is_0_when_all_succeed_1_when_some_fail() -> None:
    assert run_cli("--", "true", stdin="1\n2\n").returncode == 0
    failed = run_cli("-j", "2", "--", "sh", "-c", 'test "$1" != 2', "sh", stdin="1\n2\n3\n")
    assert failed.returncode == 1
    assert "failed with exit 1: sh -c 'test \"$1\" != 2' sh 2" in failed.stderr
    assert "2 succeeded, 0 retried, 1 failed, 0 not started" in failed.stderr


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--"],
        ["-j", "-1", "--", "true"],
        ["-j", "many", "--", "true"],
        ["-j", "10001", "--", "true"],
        ["--timeout", "0", "--", "true"],
        ["--retries", "-1", "--", "true"],
        ["--backoff", "nan", "--", "true"],
        ["--token", "t", "--", "true"],
        ["--allow-host", "herd.example", "--", "true"],
        ["--serve", "nonsense", "--", "true"],
        ["--serve", "127.0.0.1:0", "--allow-host", "herd.example:80", "--", "true"],
        ["--progress", "--no-progress", "--", "true"],
        ["-a", "/nonexistent/items", "--", "true"],
        ["--joblog", "/nonexistent/dir/log", "--", "true"],
        ["--bogus", "--", "true"],
        ["--resume", "--", "true"],
        ["--resume-failed", "--", "true"],
        ["--resume", "--resume-failed", "--joblog", "/tmp/log", "--", "true"],
        ["--halt", "now", "--", "true"],
    ],
)
def test_bad_usage_exits_2_before_running_anything(args: list[str]) -> None:
    result = run_cli(*args, stdin="1\n")
    assert result.returncode == 2, result
    assert "usage: herdexec" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_token_in_the_environment_is_used_only_by_a_served_run() -> None:
    environ = {**os.environ, "HERDEXEC_TOKEN": "from-env"}
    plain = subprocess.run(
        [HERDEXEC, "run", "--", "true"], input=b"x\n", env=environ, timeout=TIMEOUT, check=False
    )
    assert plain.returncode == 0
    served = subprocess.Popen(
        [HERDEXEC, "run", "--serve", "127.0.0.1:0", "--", "true"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environ,
    )
    try:
        assert served.stderr is not None
        url = Lines(served.stderr.fileno()).wait_for(r"control server at (http://\S+)")[1]
        request = urllib.request.Request(f"{url}/herd", data=b'{"num": 3}', method="PATCH")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 401
        refused.value.close()
    finally:
        served.communicate(timeout=TIMEOUT)
    assert served.returncode == 0


def test_a_missing_command_is_a_failure_with_exit_127_not_a_crash(tmp_path: Path) -> None:
    log = tmp_path / "jobs.tsv"
    result = run_cli(
        "--joblog", str(log), "--retries", "3", "--", "no-such-command-anywhere", stdin="x\n"
    )
    assert result.returncode == 1
    assert "cannot run no-such-command-anywhere x: No such file or directory (exit 127)" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
    [row] = read_joblog(log)
    # Not retried: a command that cannot be found will not be found a second later.
    assert (row["status"], row["exit"], row["attempts"]) == ("failure", "127", "1")


def test_joblog_has_one_line_per_job_with_its_outcome(tmp_path: Path) -> None:
    log = tmp_path / "jobs.tsv"
    script = 'case "$1" in ok*) exit 0;; bad) exit 3;; esac; kill -9 $$'
    before = time.time()
    result = run_cli(
        "-j",
        "3",
        "--joblog",
        str(log),
        "--",
        "sh",
        "-c",
        script,
        "sh",
        stdin="ok\tone\nbad\nkilled\n",
    )
    assert result.returncode == 1
    rows = read_joblog(log)
    assert [(r["seq"], r["status"], r["exit"], r["attempts"], r["item"]) for r in rows] == [
        ("1", "success", "0", "1", "ok\\tone"),  # a tab in an item is escaped
        ("2", "failure", "3", "1", "bad"),
        ("3", "failure", "137", "1", "killed"),  # 128 + SIGKILL, as the shell says it
    ]
    for row in rows:
        start = datetime.fromisoformat(row["start"].replace("Z", "+00:00")).timestamp()
        assert before - 1 <= start <= time.time()
        assert float(row["duration"]) >= 0


def test_retries_wait_for_the_backoff_and_keep_the_last_output(tmp_path: Path) -> None:
    log = tmp_path / "jobs.tsv"
    # Fails twice, then succeeds: its attempt count lives in a file of its own.
    script = (
        'n=$(($(cat "$1" 2>/dev/null || echo 0) + 1)); echo $n > "$1"; echo try $n; [ $n -ge 3 ]'
    )
    result = run_cli(
        "--retries",
        "3",
        "--backoff",
        "0.2",
        "--joblog",
        str(log),
        "--",
        "sh",
        "-c",
        script,
        "sh",
        str(tmp_path / "count"),
        stdin="x\n",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "try 3\n"  # only the attempt that counted
    for attempt in (1, 2):
        assert f"attempt {attempt} failed with exit 1, retrying: sh -c" in result.stderr
    [row] = read_joblog(log)
    assert (row["status"], row["exit"], row["attempts"]) == ("success", "0", "3")
    # Two waits, of 0.2 s and 0.4 s less at most 10% jitter each, at the least.
    assert float(row["duration"]) >= 0.9 * 0.6
    assert "1 succeeded, 1 retried, 0 failed, 0 not started" in result.stderr

    exhausted = run_cli("--retries", "1", "--joblog", str(log), "--", "false", stdin="x\n")
    assert exhausted.returncode == 1
    assert "failed with exit 1 after 2 attempts: false x" in exhausted.stderr
    [row] = read_joblog(log)
    assert (row["status"], row["exit"], row["attempts"]) == ("failure", "1", "2")


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    log = tmp_path / "jobs.tsv"
    pids = tmp_path / "pids"
    # The shell starts a sleep in the background and waits: both must go.
    script = 'sleep 30 & echo $! >> "$1"; wait'
    result = run_cli(
        "--timeout",
        "0.5",
        "--retries",
        "1",
        "--joblog",
        str(log),
        "--",
        "sh",
        "-c",
        script,
        "sh",
        str(pids),
        stdin="x\n",
    )
    assert result.returncode == 1
    [row] = read_joblog(log)
    assert (row["status"], row["exit"], row["attempts"]) == ("timeout", "143", "2")
    assert "timed out after 2 attempts" in result.stderr
    for pid in map(int, pids.read_text().split()):
        assert gone(pid), f"the background sleep {pid} outlived its job"


def test_timeout_escalates_to_sigkill_for_a_job_ignoring_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "jobs.tsv"
    result = run_cli(
        "--timeout",
        "0.2",
        "--joblog",
        str(log),
        "--",
        "sh",
        "-c",
        'trap "" TERM; sleep 30',
        stdin="x\n",
    )
    [row] = read_joblog(log)
    assert (result.returncode, row["status"], row["exit"]) == (1, "timeout", "137")


# -- output ------------------------------------------------------------------------


def test_each_jobs_output_is_passed_on_whole_under_concurrency() -> None:
    # Eight jobs at once, each writing 2,000 lines to stdout and to stderr, far beyond
    # what a pipe holds; one writes 3 MB in one go, beyond what is kept in memory.
    script = (
        'if [ "$1" = big ]; then head -c 3000000 /dev/zero | tr "\\0" x; echo; exit; fi;'
        ' i=0; while [ $i -lt 2000 ]; do echo "$1 $i ........................"; i=$((i+1));'
        ' done; i=0; while [ $i -lt 2000 ]; do echo "$1 $i err" >&2; i=$((i+1)); done'
    )
    items = [f"job{n}" for n in range(12)] + ["big"]
    result = run_cli("-j", "8", "--", "sh", "-c", script, "sh", stdin="\n".join(items) + "\n")
    assert result.returncode == 0
    out = result.stdout.splitlines()
    assert out.count("x" * 3_000_000) == 1
    out.remove("x" * 3_000_000)
    for lines, tail in ((out, "........................"), (result.stderr.splitlines(), "err")):
        blocks = [lines[k : k + 2000] for k in range(0, len(lines), 2000)]
        assert len(blocks) == 12
        for block in blocks:
            name = block[0].split()[0]
            assert block == [f"{name} {i} {tail}" for i in range(2000)]


def test_keep_order_prints_in_input_order() -> None:
    # Later items finish first; their output still comes out in input order.
    script = 'sleep "0.$((6 - $1))"; echo "$1"'
    result = run_cli("-j", "6", "-k", "--", "sh", "-c", script, "sh", stdin="1\n2\n3\n4\n5\n6\n")
    assert result.returncode == 0
    assert result.stdout == "1\n2\n3\n4\n5\n6\n"


def test_progress_bar_only_when_asked_and_stdout_untouched() -> None:
    plain = run_cli("-j", "2", "--", "echo", stdin="a\nb\n")
    assert (plain.returncode, plain.stderr) == (0, "")  # stderr is no terminal: no bar
    shown = run_cli("-j", "2", "--progress", "--", "echo", stdin="a\nb\n", script=False)
    assert shown.returncode == 0
    assert sorted(shown.stdout.splitlines()) == ["a", "b"]
    assert "2 jobs" in shown.stderr
    assert "failed=0 running=0 herd=2" in shown.stderr
    assert "2 succeeded, 0 retried, 0 failed, 0 not started" in shown.stderr


def test_a_reader_that_goes_away_stops_the_run(tmp_path: Path) -> None:
    listing, log = tmp_path / "items", tmp_path / "jobs.tsv"
    listing.write_text("".join(f"{n}\n" for n in range(100_000)))
    proc = subprocess.Popen(
        [HERDEXEC, "run", "-a", str(listing), "-j", "2", "--joblog", str(log), "--", "echo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    proc.stdout.close()
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 128 + signal.SIGPIPE
    assert b"stdout closed" in err
    assert b"Traceback" not in err
    # What the pipe took before its reader left counts; a job whose output it refused
    # is not a success.
    statuses = {row["status"] for row in read_joblog(log)}
    assert "output-lost" in statuses
    assert statuses <= {"success", "output-lost", "not-started"}


# -- signals and the control server ------------------------------------------------


def check_item_3_unstarted(rows: list[dict[str, str]], err: str, ended: str) -> None:
    """Jobs 1 and 2 ran and item 3 was in the input when Ctrl-C came: if the input
    thread had read it (made it the job that waits for a gopher), it is reported as not
    started in the summary and the joblog alike; else it is in neither, and a --resume
    runs it. Which one depends on whether that thread got to item 3 before both jobs had
    started, which a slow scheduler decides."""
    unstarted = [(r["item"], r["status"], r["exit"]) for r in rows[2:]]
    assert unstarted in ([], [("3", "not-started", "")])
    assert f"{ended}, {len(unstarted)} not started" in err


def test_first_ctrl_c_stops_intake_and_lets_running_jobs_finish(
    background: type[Run], started: Fifo, gate: Fifo, tmp_path: Path
) -> None:
    log = tmp_path / "jobs.tsv"
    run = background("run", "-j", "2", "--joblog", str(log), "--", *held_job(started, gate))
    run.feed("1", "2", "3", "4")
    assert set(wait_started(started, 2)) == {"1", "2"}
    run.signal(signal.SIGINT)
    run.stderr.wait_for("interrupted: starting no more jobs, waiting for 2 running")
    gate.send(2)
    code, out, err = run.finish()
    assert code == 130
    assert sorted(out.splitlines()) == ["out 1", "out 2"]
    rows = read_joblog(log)
    assert [(r["item"], r["status"]) for r in rows[:2]] == [("1", "success"), ("2", "success")]
    check_item_3_unstarted(rows, err, "2 succeeded, 0 retried, 0 failed")
    assert "; stopped by SIGINT" in err
    with pytest.raises(TimeoutError):
        started.readline(timeout=0.2)  # and no other job started


def test_second_ctrl_c_kills_the_running_jobs(
    background: type[Run], started: Fifo, gate: Fifo, tmp_path: Path
) -> None:
    log = tmp_path / "jobs.tsv"
    run = background("run", "-j", "2", "--joblog", str(log), "--", *held_job(started, gate))
    run.feed("1", "2", "3")
    pids = wait_started(started, 2)
    run.signal(signal.SIGINT)
    run.stderr.wait_for("interrupted")
    run.signal(signal.SIGINT)
    code, out, err = run.finish()
    assert (code, out) == (130, "")
    assert "sending SIGTERM to 2 running jobs" in err
    rows = read_joblog(log)
    assert [(r["item"], r["status"], r["exit"]) for r in rows[:2]] == [
        ("1", "killed", "143"),
        ("2", "killed", "143"),
    ]
    check_item_3_unstarted(rows, err, "0 succeeded, 0 retried, 2 failed")
    assert all(gone(pid) for pid in pids.values())


def test_ctrl_c_while_waiting_for_input(background: type[Run], started: Fifo, gate: Fifo) -> None:
    run = background("run", "--", *held_job(started, gate))
    run.feed("1")  # and stdin stays open: the input thread waits in read()
    wait_started(started, 1)
    run.signal(signal.SIGINT)
    run.stderr.wait_for("interrupted")
    gate.send()
    run.proc.wait(TIMEOUT)  # before stdin closes: the input thread is still in read()
    code, out, err = run.finish()
    assert (code, out) == (130, "out 1\n")
    assert "1 succeeded, 0 retried, 0 failed, 0 not started; stopped by SIGINT" in err
    assert "Fatal Python error" not in err


def test_sigterm_kills_the_jobs_at_once(background: type[Run], started: Fifo, gate: Fifo) -> None:
    run = background("run", "-j", "1", "--", *held_job(started, gate))
    run.feed("1")
    pids = wait_started(started, 1)
    run.signal(signal.SIGTERM)
    code, _, err = run.finish()
    assert code == 143
    assert "killed: sh -c" in err
    assert gone(pids["1"])


def herd_stats(url: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{url}/herd", timeout=10) as response:
        return json.load(response)  # type: ignore[no-any-return]


def herd_size(url: str) -> int:
    return herd_stats(url)["num"]


def resize(url: str, size: int) -> None:
    """Resize a served run's herd over HTTP, as ``herdexec ctl set`` does."""
    body = json.dumps({"num": size}).encode()
    request = urllib.request.Request(f"{url}/herd", data=body, method="PATCH")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.load(response)["num"] == size


def test_sigusr1_and_sigusr2_grow_and_shrink_the_herd(background: type[Run]) -> None:
    run = background("run", "-j", "1", "--serve", "127.0.0.1:0", "--", "true")
    url = run.stderr.wait_for(r"control server at (http://\S+)")[1]
    # One at a time: POSIX merges a signal sent again before the first was handled.
    for signum, size in ((signal.SIGUSR1, 2), (signal.SIGUSR1, 3), (signal.SIGUSR2, 2)):
        run.signal(signum)
        assert wait_until(lambda size=size: herd_size(url) == size)
    code, _, _ = run.finish()
    assert code == 0


def test_a_paused_run_waits_for_a_resize_over_http(
    background: type[Run], started: Fifo, gate: Fifo
) -> None:
    run = background(
        "run", "-j", "0", "--serve", "127.0.0.1:0", "--token", "t0k", "--", *held_job(started, gate)
    )
    url = run.stderr.wait_for(r"control server at (http://\S+)")[1]
    run.feed("1", "2", "3", close=True)
    with pytest.raises(TimeoutError):
        started.readline(timeout=0.3)  # paused: nothing starts
    refused = subprocess.run(
        [*PYTHON_M, "ctl", "--url", url, "set", "2"],
        capture_output=True,
        text=True,
        check=False,
        timeout=TIMEOUT,
    )
    assert refused.returncode == 1
    assert "401" in refused.stderr
    request = urllib.request.Request(
        f"{url}/herd",
        data=b'{"num": 2}',
        method="PATCH",
        headers={"Authorization": "Bearer t0k"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # what curl does
        assert json.load(response) == {"num": 2, "msg": "success"}
    assert set(wait_started(started, 2)) == {"1", "2"}
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        assert 'herdexec_herd_size{herd="herdexec-run"} 2.0' in response.read().decode()
    gate.send(3)
    code, out, _ = run.finish()
    assert code == 0
    assert sorted(out.splitlines()) == ["out 1", "out 2", "out 3"]


def test_growing_a_busy_herd_over_http_starts_the_waiting_jobs(
    background: type[Run], started: Fifo, gate: Fifo
) -> None:
    # Every gopher is busy, so no job ends to hand the waiting ones over: the run finds
    # the new gophers by itself.
    run = background("run", "-j", "1", "--serve", "127.0.0.1:0", "--", *held_job(started, gate))
    url = run.stderr.wait_for(r"control server at (http://\S+)")[1]
    run.feed("1", "2", "3", close=True)
    assert set(wait_started(started, 1)) == {"1"}
    resize(url, 3)
    assert set(wait_started(started, 2)) == {"2", "3"}  # while 1 still holds its gopher
    gate.send(3)
    code, out, _ = run.finish()
    assert (code, sorted(out.splitlines())) == (0, ["out 1", "out 2", "out 3"])


def test_a_job_waiting_for_its_retry_leaves_its_gopher_to_the_next(
    background: type[Run], started: Fifo, gate: Fifo
) -> None:
    script = '[ "$1" = bad ] && exit 1; echo "$1 $$" > "$2"; read line < "$3"; echo "out $1"'
    job = ["sh", "-c", script, "sh", "{}", str(started.path), str(gate.path)]
    run = background("run", "-j", "1", "--retries", "1", "--backoff", "60", "--", *job)
    run.feed("bad", "2", close=True)
    run.stderr.wait_for("attempt 1 failed with exit 1, retrying")
    assert set(wait_started(started, 1)) == {"2"}  # long before the retry is due
    gate.send()
    run.signal(signal.SIGINT)  # 2 finishes; the retry is not made
    code, out, err = run.finish()
    assert (code, out) == (130, "out 2\n")
    assert "1 succeeded, 0 retried, 1 failed, 0 not started; stopped by SIGINT" in err


def test_every_item_runs_once_while_the_herd_is_resized_under_it(
    background: type[Run], tmp_path: Path
) -> None:
    # A pause leaves the job read ahead to the input thread, which waits in send_work()
    # with it, unless a job handed back by a shrinking gopher will end and hand it over;
    # growth is found at the next job's end or on the main thread's tick; a shrink
    # refuses hand-overs. However the resizes fall among the jobs, every item runs once.
    log = tmp_path / "jobs.tsv"
    job = ["sh", "-c", 'sleep 0.005; echo "$1"', "sh"]
    run = background("run", "-j", "2", "--serve", "127.0.0.1:0", "--joblog", str(log), "--", *job)
    url = run.stderr.wait_for(r"control server at (http://\S+)")[1]
    items = [str(n) for n in range(300)]
    run.feed(*items, close=True)
    for size in (0, 3, 1, 0, 6, 2, 0, 8, 1, 4):
        resize(url, size)
        if not size:  # and the jobs under way end, with none to hand the next over
            assert wait_until(lambda: herd_stats(url)["busy"] == 0)
    code, out, _ = run.finish()
    assert code == 0
    assert sorted(out.split()) == sorted(items)
    rows = read_joblog(log)
    assert sorted(r["item"] for r in rows) == sorted(items)
    assert {r["status"] for r in rows} == {"success"}


def test_serve_on_the_port_of_a_run_that_just_ended(background: type[Run]) -> None:
    # The first run's server answers a request, so that its closed connection waits in
    # TIME-WAIT; the next run must still get the port at once.
    first = background("run", "-j", "1", "--serve", "127.0.0.1:0", "--", "true")
    url = first.stderr.wait_for(r"control server at (http://\S+)")[1]
    assert herd_size(url) == 1
    assert first.finish()[0] == 0
    port = url.rsplit(":", 1)[1]
    second = background("run", "-j", "2", "--serve", f"127.0.0.1:{port}", "--", "true")
    second.stderr.wait_for(f"control server at {re.escape(url)}$")
    assert herd_size(url) == 2
    code, _, err = second.finish()
    assert (code, "Traceback" in err) == (0, False)


def test_allow_host_names_the_hosts_a_served_run_answers(background: type[Run]) -> None:
    run = background(
        "run", "-j", "0", "--serve", "127.0.0.1:0", "--allow-host", "herd.example", "--", "true"
    )
    url = run.stderr.wait_for(r"control server at (http://\S+)")[1]
    answered = urllib.request.Request(f"{url}/herd", headers={"Host": "herd.example:2112"})
    with urllib.request.urlopen(answered, timeout=10) as response:
        assert response.status == 200
    rebound = urllib.request.Request(f"{url}/herd", headers={"Host": "rebound.example"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(rebound, timeout=10)
    assert refused.value.code == 403
    assert "--allow-host" in json.load(refused.value)["msg"]
    refused.value.close()
    code, _, _ = run.finish()
    assert code == 0


def test_ctrl_c_on_a_paused_run(background: type[Run], tmp_path: Path) -> None:
    log = tmp_path / "jobs.tsv"
    run = background("run", "-j", "0", "--serve", "127.0.0.1:0", "--joblog", str(log), "--", "true")
    url = run.stderr.wait_for(r"control server at (http://\S+)")[1]
    run.feed("1", "2")
    assert wait_until(lambda: herd_stats(url)["waiting_submitters"] == 1)  # 1 is read
    run.signal(signal.SIGINT)
    code, _, err = run.finish()
    assert code == 130
    assert "0 succeeded, 0 retried, 0 failed, 1 not started" in err
    assert [r["status"] for r in read_joblog(log)] == ["not-started"]


def test_a_run_loads_only_what_it_uses() -> None:
    # Each of these would add to every run's start-up (prometheus_client and the
    # http.server it loads, most of all): only --serve, ctl and --progress need them,
    # --backoff and --adapt the dataclasses (and statistics) of the herd's options.
    code = (
        "import sys\n"
        "from herdexec._cli._main import main\n"
        "code = main(['run', '--no-progress', '--', 'true'])\n"
        "heavy = {'prometheus_client', 'bottle', 'http.server', 'urllib.request', 'tqdm',"
        " 'herdexec._cli._ctl', 'json', 'dataclasses', 'statistics'}\n"
        "print(code, sorted(heavy & set(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        input=b"1\n",
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.stdout.decode().splitlines()[-1] == "0 []", result.stderr.decode()


# -- help --------------------------------------------------------------------------


def test_help_loads_nothing_that_runs_jobs() -> None:
    # -X importtime names every module loaded.
    result = herdexec("run", "--help", env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 0
    loaded = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
    assert "herdexec._cli._main" in loaded
    assert not loaded & {"herdexec._cli._run", "herdexec._cli._ctl", "subprocess"}


def test_the_synopsis_in_the_docs_names_every_option() -> None:
    # docs/cli.md opens with the command's synopsis; an option added to the parser
    # and not to it is found here.
    docs = (Path(__file__).parent.parent / "docs" / "cli.md").read_text()
    synopsis = docs.split("    herdexec run ", 1)[1].split("\n\n", 1)[0]
    run_help = herdexec("run", "--help").stdout
    options = run_help.split("\noptions:\n", 1)[1].split("\n\n", 1)[0]
    for line in options.splitlines():
        spelled = re.match(r"  (-\S.*?)(?:  |$)", line)
        if spelled is None or spelled[1].startswith("-h"):
            continue  # a help line's continuation, or --help
        names = [form.split()[0] for form in spelled[1].split(", ")]
        assert any(re.search(rf"{name}\b", synopsis) for name in names), names
    ctl_help = herdexec("ctl", "--help").stdout
    actions = re.findall(r"^    (\w+) ", ctl_help, re.MULTILINE)
    assert actions == ["get", "set", "metrics", "adapt"]
    assert all(re.search(rf"\b{action}\b", synopsis.split("herdexec ctl")[1]) for action in actions)


def test_help_documents_every_option() -> None:
    run_help = herdexec("run", "--help", script=False)
    assert run_help.returncode == 0
    for option in (
        "-j",
        "--jobs",
        "--retries",
        "--backoff",
        "--timeout",
        "--serve",
        "--token",
        "--allow-host",
        "--joblog",
        "--keep-order",
        "--progress",
        "--no-progress",
        "--dry-run",
        "--resume",
        "--resume-failed",
        "--halt",
        "-a",
        "--arg-file",
        "COMMAND",
        "SIGUSR1",
        "SIGUSR2",
        "exit status",
        "joblog",
    ):
        assert option in run_help.stdout, option
    ctl_help = herdexec("ctl", "--help")
    assert ctl_help.returncode == 0
    for option in ("--url", "--token", "get", "set N", "metrics", "HERDEXEC_TOKEN", "exit status"):
        assert option in ctl_help.stdout, option
    top = herdexec("--help")
    assert "run" in top.stdout
    assert "ctl" in top.stdout
