"""``herdexec run --adapt`` and ``herdexec ctl adapt``: the real console script, in a
subprocess, against a real control server."""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest

from herdexec import Gradient, HerdExecutor

from . import test_cli
from .helpers import wait_until
from .test_cli import Run, herd_stats, run_cli
from .test_cli_ctl import ctl

background = test_cli.background  # the fixture, shared


def test_an_adaptive_run_is_pinned_by_operators_and_let_go(background: type[Run]) -> None:
    run = background("run", "-j", "2", "--adapt", "1:8", "--serve", "127.0.0.1:0", "--", "true")
    url = run.stderr.wait_for(r"control server at (http://\S+)")[1]
    adapt = herd_stats(url)["adapt"]
    assert (adapt["algorithm"], adapt["min_size"], adapt["max_size"]) == ("gradient", 1, 8)
    assert adapt["adapting"] is True

    pinned = ctl("--url", url, "set", "3")
    assert (pinned.returncode, pinned.stdout) == (
        0,
        "herd size set to 3\nadaptation paused; `herdexec ctl adapt` gives control back\n",
    )
    assert herd_stats(url)["adapt"]["adapting"] is False
    run.signal(signal.SIGUSR1)  # a signal is an operator too
    assert wait_until(lambda: herd_stats(url)["num"] == 4)
    assert herd_stats(url)["adapt"]["adapting"] is False

    resumed = ctl("--url", url, "adapt")
    assert (resumed.returncode, resumed.stdout) == (0, "herd adapting again, from size 4\n")
    assert herd_stats(url)["adapt"]["adapting"] is True
    run.feed(*map(str, range(50)))
    code, out, err = run.finish()
    assert code == 0, err
    assert out == ""


def test_an_adaptive_run_runs_every_job() -> None:
    items = "".join(f"{n}\n" for n in range(40))
    result = run_cli("-j", "1", "--adapt", ":4", "--", "echo", stdin=items)
    assert result.returncode == 0, result.stderr
    assert sorted(map(int, result.stdout.split())) == list(range(40))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--adapt", "5:2"], "argument --adapt: MIN must be at most MAX: '5:2'"),
        (["--adapt", "8"], "argument --adapt: not MIN:MAX: '8'"),
        (["--adapt", "0:3"], "argument --adapt: must be at least 1"),
        (["--adapt", "1:x"], "argument --adapt: not a number: 'x'"),
        (["--adapt", "1:10001"], "argument --adapt: must be at most 10000"),
        (["-j", "9", "--adapt", ":4"], "-j 9 is where --adapt starts: it must lie within 1:4"),
        (["-j", "0", "--adapt"], "-j 0 is where --adapt starts: it must lie within 1:64"),
    ],
)
def test_bad_adapt_usage_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = run_cli(*args, "--", "true")
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == f"herdexec run: error: {message}"
    assert "Traceback" not in result.stderr


def test_ctl_adapt_on_a_herd_that_does_not_adapt(make_herd: Callable[..., HerdExecutor]) -> None:
    with make_herd(2, registry=None).serve("127.0.0.1:0") as server:
        result = ctl("--url", server.url, "adapt")
    assert result.returncode == 1
    assert result.stderr == (
        f"herdexec ctl: PATCH {server.url}/herd: 409 Conflict: this herd does not adapt:"
        " it was made without adapt= (or --adapt)\n"
    )


def test_ctl_adapt_on_an_adaptive_herd(make_herd: Callable[..., HerdExecutor]) -> None:
    herd = make_herd(3, registry=None, adapt=Gradient(min_size=2, max_size=6))
    herd.herd_size = 9
    with herd.serve("127.0.0.1:0") as server:
        result = ctl("--url", server.url, "adapt")
    assert (result.returncode, result.stdout) == (0, "herd adapting again, from size 6\n")
    assert herd.adapting
