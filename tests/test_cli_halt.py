"""``herdexec run --halt``: stopping after enough failures, successes or ends.

With ``-j 1`` the jobs run one after another, so where a run halts is exact: the job that
meets the condition is the last to start. Jobs that must still be running when the run
halts are held by a named pipe, not by sleeps.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .cli_helpers import read_joblog, run_cli

# Item "N" succeeds, "Nf" fails; "wait" says so in the file "waiting", then waits on the
# FIFO "gate", which no one writes to: only a kill ends it.
JOB = [
    "sh",
    "-c",
    'case $1 in *f) exit 1 ;; wait) echo "$$" > waiting; read x < gate ;; esac',
    "sh",
]


def halted(tmp_path: Path, halt: str, items: list[str], *, jobs: int = 1) -> tuple[int, str]:
    """Run ``items`` with ``--halt HALT``: its exit status, and each item's status."""
    result = run_cli(
        "-j",
        str(jobs),
        "--halt",
        halt,
        "--joblog",
        "jobs.tsv",
        "--",
        *JOB,
        stdin="".join(f"{item}\n" for item in items),
        cwd=tmp_path,
    )
    assert "Traceback" not in result.stderr
    return result.returncode, result.stderr


def logged(tmp_path: Path) -> list[tuple[str, str]]:
    return [(row["item"], row["status"]) for row in read_joblog(tmp_path / "jobs.tsv")]


@pytest.mark.parametrize(
    ("halt", "items", "code", "ran", "why"),
    [
        # The job that meets the condition is the last to start. Its worker may hold
        # the next already, and the one after it may have been read meanwhile: both
        # are logged as not started. The rest are never read.
        ("soon,fail=2", ["1", "2f", "3", "4f", "5", "6", "7"], 1, 4, "2 jobs failed"),
        ("soon,fail=1", ["1f", "2", "3"], 1, 1, "1 job failed"),
        ("soon,success=2", ["1f", "2", "3f", "4", "5", "6"], 0, 4, "2 jobs succeeded"),
        ("soon,done=3", ["1", "2", "3", "4", "5"], 0, 3, "3 jobs ended"),
        ("soon,done=3", ["1", "2f", "3", "4", "5"], 1, 3, "3 jobs ended"),
        # A percentage of the 10 jobs: 20% is 2.
        ("soon,fail=20%", ["1f", "2", "3f", *map(str, range(4, 11))], 1, 3, "2 jobs failed"),
        ("now,success=10%", ["1f", "2", *map(str, range(3, 11))], 0, 2, "1 job succeeded"),
    ],
)
def test_a_halt_starts_no_job_after_the_one_that_met_it(
    tmp_path: Path, halt: str, items: list[str], code: int, ran: int, why: str
) -> None:
    status, stderr = halted(tmp_path, halt, items)
    assert status == code, stderr
    assert f"herdexec: {why} (--halt {halt}): starting no more jobs\n" in stderr
    assert f"; stopped: {why} (--halt {halt}), input not read to the end\n" in stderr
    rows = logged(tmp_path)
    assert [item for item, _ in rows[:ran]] == items[:ran]
    assert all(status != "not-started" for _, status in rows[:ran])
    # At most the two items after it were read, and none of them started.
    assert rows[ran:] == [(item, "not-started") for item in items[ran : len(rows)]], rows
    assert len(rows) <= ran + 2, rows


def test_a_percentage_of_a_file_counts_its_items_first(tmp_path: Path) -> None:
    # 50% of 4 items is 2: read from a file, they are counted (and the file rewound)
    # before the first starts.
    (tmp_path / "items").write_text("1f\n2\n\n3f\n4\n")
    result = run_cli(
        "-j",
        "1",
        "--halt",
        "soon,fail=50%",
        "-a",
        "items",
        "--joblog",
        "jobs.tsv",
        "--",
        *JOB,
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stderr
    assert "2 jobs failed (--halt soon,fail=50%)" in result.stderr
    assert logged(tmp_path)[:3] == [("1f", "failure"), ("2", "success"), ("3f", "failure")]
    assert logged(tmp_path)[3:] in ([], [("4", "not-started")])


def test_halt_never_and_an_unmet_condition_run_everything(tmp_path: Path) -> None:
    for halt in ("never", "soon,fail=3", "now,success=100%"):
        status, stderr = halted(tmp_path, halt, ["1", "2f", "3f", "4"], jobs=2)
        assert status == 1, stderr
        assert "--halt" not in stderr
        assert len(logged(tmp_path)) == 4


@pytest.mark.parametrize(("halt", "code"), [("now,fail=1", 1), ("now,done=1", 1)])
def test_halt_now_kills_the_running_jobs(tmp_path: Path, halt: str, code: int) -> None:
    os.mkfifo(tmp_path / "gate")
    held = os.open(tmp_path / "gate", os.O_RDWR | os.O_NONBLOCK)  # never written to
    try:
        # "wait" runs until killed; "late" fails once "wait" is running.
        late = "while [ ! -s waiting ]; do sleep 0.01; done; exit 1"
        job = f'case $1 in wait) echo "$$" > waiting; read x < gate ;; late) {late} ;; esac'
        result = run_cli(
            "-j",
            "2",
            "--halt",
            halt,
            "--joblog",
            "jobs.tsv",
            "--",
            "sh",
            "-c",
            job,
            "sh",
            stdin="wait\nlate\nnever\n",
            cwd=tmp_path,
        )
    finally:
        os.close(held)
    assert result.returncode == code, result.stderr
    assert "herdexec: sending SIGTERM to 1 running jobs\n" in result.stderr
    rows = {row["item"]: (row["status"], row["exit"]) for row in read_joblog(tmp_path / "jobs.tsv")}
    assert rows.pop("never", ("not-started", "")) == ("not-started", "")
    assert rows == {"wait": ("killed", "143"), "late": ("failure", "1")}


def test_output_lost_after_a_halt_on_success_still_exits_3(tmp_path: Path) -> None:
    # "quiet" succeeds and halts the run; "loud", running then, ends after it (once the
    # joblog has quiet's line) and writes to a full stdout.
    loud = 'until grep -q quiet jobs.tsv; do sleep 0.01; done; echo "$1"'
    job = f"case $1 in quiet) ;; loud) {loud} ;; esac"
    with open("/dev/full", "wb") as full:
        result = run_cli(
            "-j",
            "2",
            "--halt",
            "soon,success=1",
            "--joblog",
            "jobs.tsv",
            "--",
            "sh",
            "-c",
            job,
            "sh",
            stdin="loud\nquiet\n",
            cwd=tmp_path,
            stdout=full,
        )
    assert result.returncode == 3, result.stderr
    assert "herdexec: cannot write to stdout (No space left on device)\n" in result.stderr
    assert logged(tmp_path) == [("loud", "output-lost"), ("quiet", "success")]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("sometimes", "expected never, or"),
        ("now", "expected never, or"),
        ("now,fail", "expected never, or"),
        ("later,fail=1", "expected never, or"),
        ("now,bogus=1", "expected never, or"),
        ("now,fail=-1", "expected never, or"),
        ("soon,fail=0", "a whole number of jobs, at least 1, not 0"),
        ("soon,fail=1.5", "a whole number of jobs, at least 1, not 1.5"),
        ("soon,fail=0%", "a percentage above 0 and at most 100, not 0%"),
        ("soon,fail=101%", "a percentage above 0 and at most 100, not 101%"),
    ],
)
def test_a_bad_halt_is_a_usage_error(tmp_path: Path, value: str, message: str) -> None:
    result = run_cli("--halt", value, "--", "touch", "ran", stdin="1\n", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].startswith(
        f"herdexec run: error: argument --halt: {message}"
    )
    assert not (tmp_path / "ran").exists()
