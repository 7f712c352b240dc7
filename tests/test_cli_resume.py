"""``herdexec run --resume`` and ``--resume-failed``: the real console script, real jobs.

Every job appends to a ledger file (``>>``, O_APPEND: one whole line per write) what it
did, with the round (the run) it belongs to, so a test can count how many times each
item really ran, whatever the joblog says.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from .cli_helpers import HERDEXEC, JOBLOG_HEADER, TIMEOUT, run_cli
from .helpers import wait_until

HEADER = "\t".join(JOBLOG_HEADER)

# Item "N" sleeps 0.0N s; item "Nf" fails the first time it runs. Each run records
# "start ITEM ROUND" first, then "fail ITEM ROUND" or, as its very last act before
# exiting 0, "done ITEM ROUND".
JOB = [
    "sh",
    "-c",
    'echo "start $1 $ROUND" >> ledger\n'
    'case $1 in *f) [ -e "$1.failed" ] || { : > "$1.failed"; echo "fail $1 $ROUND" >> ledger;'
    " exit 1; } ;; esac\n"
    'sleep "0.0${1%f}"; echo "done $1 $ROUND" >> ledger',
    "sh",
]


def lines(log: Path, start: int = 0) -> list[list[str]]:
    """The joblog's whole lines from byte ``start``, header aside, split in fields."""
    data = log.read_bytes()[start:]
    whole = data[: data.rfind(b"\n") + 1].decode()
    rows = [line.split("\t") for line in whole.splitlines() if line != HEADER]
    assert all(len(row) == len(JOBLOG_HEADER) for row in rows), rows
    return rows


def statuses(log: Path) -> dict[str, list[str]]:
    """Each item's statuses, in the order they were logged."""
    seen: dict[str, list[str]] = {}
    for row in lines(log):
        seen.setdefault(row[-1], []).append(row[1])
    return seen


def ledger(cwd: Path, what: str = "done") -> Counter[str]:
    """How many times each item's jobs wrote ``what`` to the ledger."""
    path = cwd / "ledger"
    records = path.read_text().split("\n") if path.exists() else []
    return Counter(r.split()[1] for r in records if r.startswith(f"{what} "))


def run_round(
    cwd: Path, *args: str, stdin: str, number: int = 1
) -> subprocess.CompletedProcess[str]:
    """``herdexec run ARGS --joblog jobs.tsv -- JOB`` in ``cwd``, as round ``number``."""
    environ = {**os.environ, "ROUND": str(number)}
    return run_cli(*args, "--joblog", "jobs.tsv", "--", *JOB, stdin=stdin, cwd=cwd, env=environ)


# -- what is run again ----------------------------------------------------------------


def test_resume_runs_what_never_ended_and_resume_failed_what_did_not_succeed(
    tmp_path: Path,
) -> None:
    items = "1\n2\n3f\n4\n5\n6\n"
    # -j 1 and --halt soon,fail=1: 3f fails, and no job starts after it; 4 and 5 may
    # have been read meanwhile, and logged as not started; 6 is never read.
    first = run_round(tmp_path, "-j", "1", "--halt", "soon,fail=1", stdin=items)
    assert first.returncode == 1, first.stderr
    log = tmp_path / "jobs.tsv"
    logged = statuses(log)
    four, five = logged.pop("4", []), logged.pop("5", [])
    assert [four, five] in ([[], []], [["not-started"], []], [["not-started"], ["not-started"]])
    assert logged == {"1": ["success"], "2": ["success"], "3f": ["failure"]}
    resumed = run_round(tmp_path, "-j", "2", "--resume", stdin=items, number=2)
    assert resumed.returncode == 0, resumed.stderr
    assert (
        resumed.stderr == "herdexec: 3 succeeded, 0 retried, 0 failed, 0 not started, 3 skipped\n"
    )
    assert statuses(log)["3f"] == ["failure"]  # ended: --resume leaves it be
    again = run_round(tmp_path, "--resume", stdin=items, number=3)
    assert (again.returncode, again.stderr) == (
        0,
        "herdexec: 0 succeeded, 0 retried, 0 failed, 0 not started, 6 skipped\n",
    )
    failed = run_round(tmp_path, "--resume-failed", stdin=items, number=4)
    assert failed.returncode == 0, failed.stderr
    assert statuses(log) == {
        "1": ["success"],
        "2": ["success"],
        "3f": ["failure", "success"],
        "4": [*four, "success"],
        "5": [*five, "success"],
        "6": ["success"],
    }
    assert ledger(tmp_path) == Counter(dict.fromkeys(items.split(), 1))
    assert ledger(tmp_path, "start")["3f"] == 2


def test_output_lost_is_ended_for_resume_and_run_again_by_resume_failed(
    tmp_path: Path,
) -> None:
    with open("/dev/full", "wb") as full:
        first = run_cli(
            "-j",
            "1",
            "--joblog",
            "jobs.tsv",
            "--",
            "echo",
            stdin="a\nb\n",
            cwd=tmp_path,
            stdout=full,
        )
    assert first.returncode == 3
    log = tmp_path / "jobs.tsv"
    # b may have been taken before the run stopped, and lost its output too.
    lost = [item for item, seen in statuses(log).items() if seen == ["output-lost"]]
    assert lost[0] == "a"
    resumed = run_cli(
        "-j", "1", "--joblog", "jobs.tsv", "--resume", "--", "echo", stdin="a\nb\n", cwd=tmp_path
    )
    assert resumed.stdout == ("" if "b" in lost else "b\n")
    failed = run_cli(
        "-j",
        "1",
        "--joblog",
        "jobs.tsv",
        "--resume-failed",
        "--",
        "echo",
        stdin="a\nb\n",
        cwd=tmp_path,
    )
    assert failed.returncode == 0
    assert failed.stdout == "".join(f"{item}\n" for item in lost)
    assert statuses(log)["a"] == ["output-lost", "success"]


def test_keep_order_passes_skipped_items_by(tmp_path: Path) -> None:
    items = "".join(f"{n}\n" for n in range(1, 9))
    first = run_round(tmp_path, "-j", "1", "-k", "--halt", "soon,done=3", stdin=items)
    assert first.returncode == 0, first.stderr
    resumed = run_round(tmp_path, "-j", "4", "-k", "--resume", stdin=items, number=2)
    assert resumed.returncode == 0, resumed.stderr
    rows = lines(tmp_path / "jobs.tsv")
    assert [row[-1] for row in rows if row[1] == "success"] == [str(n) for n in range(1, 9)]


def test_a_dry_run_shows_what_a_resume_would_run(tmp_path: Path) -> None:
    first = run_round(tmp_path, "-j", "1", "--halt", "soon,fail=1", stdin="1\n2f\n3\n")
    assert first.returncode == 1
    before = (tmp_path / "jobs.tsv").read_bytes()
    for flag, shown in (("--resume", ["3"]), ("--resume-failed", ["2f", "3"])):
        dry = run_cli(
            "--dry-run",
            flag,
            "--joblog",
            "jobs.tsv",
            "--",
            "echo",
            stdin="1\n2f\n3\n",
            cwd=tmp_path,
        )
        assert (dry.returncode, dry.stdout.split("\n")[:-1]) == (0, [f"echo {s}" for s in shown])
    assert (tmp_path / "jobs.tsv").read_bytes() == before


def test_a_missing_joblog_resumes_nothing(tmp_path: Path) -> None:
    result = run_round(tmp_path, "--resume", stdin="1\n2\n")
    assert (result.returncode, result.stderr) == (0, "")
    assert statuses(tmp_path / "jobs.tsv") == {"1": ["success"], "2": ["success"]}


# -- a joblog torn, not a joblog, or not this input's -----------------------------------


def test_a_torn_last_line_is_no_line_and_its_item_runs_again(tmp_path: Path) -> None:
    items = "1\n2\n3\n"
    first = run_round(tmp_path, "-j", "1", stdin=items)
    assert first.returncode == 0
    log = tmp_path / "jobs.tsv"
    whole = log.read_bytes()
    # As a SIGKILL mid-write leaves it: the last line without its end (item "3" -> "").
    for cut in (1, 3, len(whole.split(b"\n")[-2]) - 2):
        log.write_bytes(whole[:-cut])
        resumed = run_round(tmp_path, "--resume", stdin=items, number=2)
        assert resumed.returncode == 0, resumed.stderr
        assert statuses(log) == {"1": ["success"], "2": ["success"], "3": ["success"]}
        log.write_bytes(whole)
    assert ledger(tmp_path)["3"] == 4  # the first run, and once per torn log


@pytest.mark.parametrize(
    ("changed", "message"),
    [
        ("1\nTWO\n3\n", "item 2 of the input is 'TWO', but '2' in the joblog"),
        ("0\n1\n2\n3\n", "item 1 of the input is '0', but '1' in the joblog"),
        ("1\n2\n", "it logs item 3, but the input has 2 items"),
        ("1\n3\n2\n", "item 2 of the input is '3', but '2' in the joblog"),
    ],
)
def test_a_changed_input_is_refused_before_anything_runs(
    tmp_path: Path, changed: str, message: str
) -> None:
    first = run_round(tmp_path, stdin="1\n2\n3\n")
    assert first.returncode == 0
    log = tmp_path / "jobs.tsv"
    before = log.read_bytes()
    for flag in ("--resume", "--resume-failed"):
        result = run_round(tmp_path, flag, stdin=changed, number=2)
        assert result.returncode == 2
        error = result.stderr.splitlines()[-1]
        assert error.startswith(f"herdexec run: error: {flag}: --joblog jobs.tsv: {message}")
        assert error.endswith("the input changed since (run without --resume to start over)")
        assert log.read_bytes() == before
    assert ledger(tmp_path, "start").total() == 3  # only the first run's


def test_escaped_items_are_matched_as_written(tmp_path: Path) -> None:
    items = "a\tb\nc\\d\n\\t\n"
    first = run_cli("--joblog", "jobs.tsv", "--", "true", stdin=items, cwd=tmp_path)
    assert first.returncode == 0
    resumed = run_cli("--joblog", "jobs.tsv", "--resume", "--", "false", stdin=items, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    changed = run_cli(
        "--joblog",
        "jobs.tsv",
        "--resume",
        "--",
        "false",
        stdin="a\\tb\nc\\d\n\\t\n",
        cwd=tmp_path,
    )
    assert changed.returncode == 2
    assert "item 1 of the input is 'a\\tb', but 'a\\x09b'" in changed.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"some notes\nnot a joblog\n", "not a herdexec joblog (its first line is not the header)"),
        (b"notes", "not a herdexec joblog (no header line)"),
        (
            f"{HEADER}\n1\tsuccess\t0\n".encode(),
            "line 2 is not a joblog line: '1\\x09success\\x090'",
        ),
        (f"{HEADER}\n1\tdone\t0\t1\t\t\t1\n".encode(), "line 2 is not a joblog line"),
    ],
)
def test_a_file_that_is_not_a_joblog_is_refused_and_left_alone(
    tmp_path: Path, content: bytes, message: str
) -> None:
    log = tmp_path / "jobs.tsv"
    log.write_bytes(content)
    result = run_round(tmp_path, "--resume", stdin="1\n")
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].startswith(
        f"herdexec run: error: --resume: --joblog jobs.tsv: {message}"
    )
    assert log.read_bytes() == content
    assert not (tmp_path / "ledger").exists()


def test_a_joblog_in_use_by_another_run_is_refused(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    held = os.open(gate, os.O_RDWR | os.O_NONBLOCK)  # the job's open() never waits
    job = 'echo "start $1 1" >> ledger; read x < gate'
    holder = subprocess.Popen(
        [HERDEXEC, "run", "--joblog", "jobs.tsv", "--", "sh", "-c", job, "sh"],
        stdin=subprocess.PIPE,
        cwd=tmp_path,
    )
    try:
        assert holder.stdin is not None
        holder.stdin.write(b"1\n")
        holder.stdin.close()
        assert wait_until(lambda: ledger(tmp_path, "start")["1"] == 1)
        for flag in ("--resume", "--resume-failed", "--keep-order"):
            other = run_round(tmp_path, flag, stdin="1\n", number=2)
            assert other.returncode == 2
            assert other.stderr.splitlines()[-1] == (
                "herdexec run: error: --joblog jobs.tsv: in use by another herdexec run"
            )
    finally:
        os.write(held, b"go\n")
        assert holder.wait(TIMEOUT) == 0
        os.close(held)
    assert statuses(tmp_path / "jobs.tsv") == {"1": ["success"]}
    assert ledger(tmp_path, "start").total() == 1


# -- interrupted at random, resumed until done ------------------------------------------

ITEMS = [f"{n}f" if n % 7 == 3 else str(n) for n in range(1, 31)]
INTERRUPTS = {
    "SIGINT": [signal.SIGINT],  # running jobs finish
    "SIGINT twice": [signal.SIGINT, signal.SIGINT],  # running jobs are killed
    "SIGTERM": [signal.SIGTERM],  # running jobs are killed
    "SIGKILL": [signal.SIGKILL],  # herdexec dies; its jobs run on, orphaned
}
INTERRUPTED_ROUNDS = 10


class Round:
    """One ``herdexec run --resume-failed``, interrupted (or not) once ``after`` of its
    jobs have started; then what it logged, and what its jobs did, from the ledger."""

    def __init__(self, cwd: Path, number: int, rng: random.Random, interrupt: str | None) -> None:
        self.cwd, self.number, self.interrupt = cwd, number, interrupt
        log = cwd / "jobs.tsv"
        before = log.read_bytes() if log.exists() else b""
        start = before.rfind(b"\n") + 1  # a torn line is cut off before the new ones
        options = ["-j", str(rng.choice([1, 3, 8]))] + (["-k"] if rng.random() < 0.3 else [])
        (cwd / "items").write_text("".join(f"{item}\n" for item in ITEMS))
        proc = subprocess.Popen(
            [
                HERDEXEC,
                "run",
                *options,
                "-a",
                "items",
                "--joblog",
                "jobs.tsv",
                "--resume-failed",
                "--",
                *JOB,
            ],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            cwd=cwd,
            env={**os.environ, "ROUND": str(number), "RESUME_TEST": str(cwd)},
        )
        if interrupt is not None:
            after = rng.randint(1, 6)
            assert wait_until(
                lambda: len(self.records("start")) >= after or proc.poll() is not None
            )
            for signum in INTERRUPTS[interrupt]:
                proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=TIMEOUT)
        assert "Traceback" not in stderr.decode(), stderr.decode()
        self.returncode = proc.returncode
        self.logged = {row[-1]: row[1] for row in lines(log, start)} if log.exists() else {}
        assert len(self.logged) == len(lines(log, start)) if log.exists() else True, (
            "an item logged twice in one run"
        )
        if interrupt == "SIGKILL":
            # Its jobs run on, orphaned, some not even started yet: let them all end
            # before the ledger is read and the next round starts.
            assert wait_until(lambda: not jobs_running(f"RESUME_TEST={cwd}"))
        # Jobs whose end the log does not know: only when herdexec itself was killed.
        self.unlogged = set(self.records("start")) - set(self.logged)
        assert self.unlogged <= set(self.records("done", "fail"))
        if interrupt != "SIGKILL":
            assert not self.unlogged, f"round {number} ({interrupt}) did not log {self.unlogged}"

    def records(self, *kinds: str) -> list[str]:
        """The items of this round's ledger records of those kinds."""
        path = self.cwd / "ledger"
        text = path.read_text() if path.exists() else ""
        records = (line.split() for line in text.split("\n")[:-1])
        return [
            item for kind, item, number in records if kind in kinds and number == str(self.number)
        ]

    def in_doubt(self, item: str) -> bool:
        """Whether ``item`` may have done its work in this round without a success line
        saying so: killed with herdexec, or killed by it just as it finished."""
        return item in self.unlogged or self.logged.get(item) == "killed"


def jobs_running(marker: str) -> bool:
    """Whether a process with ``marker`` in its environment is alive (Linux's /proc)."""
    needle = marker.encode()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:  # gone, or not ours to read
            continue
        if needle in environ.split(b"\0"):
            return True
    return False


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_interrupted_at_random_and_resumed_every_item_runs_to_success_once(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    rounds: list[Round] = []
    while len(rounds) < INTERRUPTED_ROUNDS + 3:
        interrupted = len(rounds) < INTERRUPTED_ROUNDS
        interrupt = rng.choice(sorted(INTERRUPTS)) if interrupted else None
        rounds.append(Round(tmp_path, len(rounds) + 1, rng, interrupt))
        expected = {
            None: {0, 1},  # 1: a flaky item failed, to be run again
            "SIGINT": {0, 1, 130},  # 0 or 1: the run ended before the signal came
            "SIGINT twice": {0, 1, 130},
            "SIGTERM": {0, 1, 143},
            "SIGKILL": {0, 1, -signal.SIGKILL},
        }[interrupt]
        assert rounds[-1].returncode in expected, (interrupt, rounds[-1].returncode)
        if not interrupted and rounds[-1].returncode == 0:
            break
    else:
        pytest.fail("three rounds left alone did not finish the work")

    log = tmp_path / "jobs.tsv"
    # Nothing skipped: every item ends with a success line, and has no other.
    history = statuses(log)
    assert sorted(history) == sorted(ITEMS)
    for item, seen in history.items():
        assert seen.count("success") == 1, (item, seen)
        assert seen[-1] == "success", (item, seen)
    # Nothing run twice: each item did its work in the round that logged its success,
    # once, and in no other round but those where its end was in doubt.
    for item in ITEMS:
        done = [r for r in rounds for _ in range(r.records("done").count(item))]
        [succeeded] = [r for r in rounds if r.logged.get(item) == "success"]
        assert done.count(succeeded) == 1, item
        assert all(r is succeeded or r.in_doubt(item) for r in done), (
            item,
            [(r.number, r.interrupt, r.logged.get(item)) for r in done],
        )
        # And no job ran for an item that its round logged as not started.
        for r in rounds:
            if r.logged.get(item) == "not-started":
                assert item not in r.records("start"), (item, r.number)
    # The seed made the rounds meet each kind of interrupt.
    assert {r.interrupt for r in rounds} >= set(INTERRUPTS)
