"""The ``herdexec`` command: ``herdexec run`` and ``herdexec ctl`` (also ``python -m herdexec``).

This module is the command line itself: the parsers, whose ``--help`` is the reference
(docs/cli.md says the same at length), the checks that turn a bad command line into
exit status 2, and the files opened before anything runs. The work is in
:mod:`herdexec._cli._run` and :mod:`herdexec._cli._ctl`, each loaded by the command
that needs it: ``herdexec ctl`` and ``--help`` never load what runs jobs (subprocess,
the reporter), and ``herdexec run`` never loads the HTTP client.
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import stat
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Final, TypeVar

from herdexec import __version__

if TYPE_CHECKING:
    from ._halt import Halt
    from ._report import Joblog

__all__ = ["main"]

#: ``herdexec ctl``'s default --url: where ``HerdExecutor.serve()`` listens by default.
DEFAULT_URL: Final = "http://127.0.0.1:2112"

#: The largest -j, and the largest size a resize may ask for.
MAX_JOBS: Final = 10_000
#: ``--adapt`` without bounds: enough processes for a service that takes them, not so
#: many that a runaway start forks the machine to a halt.
DEFAULT_ADAPT: Final = (1, 64)
USAGE_ERROR: Final = 2

_N = TypeVar("_N", int, float)

_RUN_DESCRIPTION = """\
Run COMMAND once per line of input, on a herd of workers whose size can change while
it runs. Each line is one item: every {} in COMMAND's arguments is replaced by it, or
it is added as the last argument if none holds a {}. No shell is involved (say
`sh -c '...'` for one), so an item is always one plain argument. Empty lines are
skipped. Jobs read their standard input from /dev/null.

Each job's stdout and stderr are passed on whole when it ends, never mixed with another
job's. A nonzero exit, or running past --timeout, is a failure; with --retries it is
tried again after the --backoff wait: a failed attempt's stderr is passed on at once,
with a note, and only the last attempt's stdout is kept.
"""

_RUN_EPILOG = """\
resizing while it runs:
  SIGUSR1 / SIGUSR2        grow / shrink the herd by one (kill -USR1 PID)
  --serve HOST:PORT        then: open URL in a browser, or
                           herdexec ctl --url URL set N, or
                           curl -X PATCH URL/herd -d '{"num": N}'
  --adapt MIN:MAX          the herd sizes itself from the jobs' durations and failures;
                           any resize above pins the size, and
                           herdexec ctl --url URL adapt gives control back

stopping:
  Ctrl-C (SIGINT)          start no more jobs; running ones finish; jobs waiting
                           for a retry are not retried
  Ctrl-C again             SIGTERM to every running job's process group, then
                           SIGKILL 1 s later (a third Ctrl-C: SIGKILL at once)
  SIGTERM, SIGHUP          as two Ctrl-Cs
  stdout, the joblog or    as one Ctrl-C, with a line saying what failed (exit 3;
  the input fails          141 for a stdout whose reader went away)
  Either way the joblog is complete (unless it failed) and a summary goes to stderr.

joblog: tab-separated, a header line, then one line per item read, as its output
is passed on (as it ends; with -k, in input order):
  seq status exit attempts start duration item
  status is success, failure, timeout, killed, not-started or output-lost (it
  succeeded, but its output could not be written); exit is 126 or 127 when the
  command could not be run, 128+N when signal N ended it; start is UTC ISO 8601;
  duration is seconds from the first attempt's start to the last's end.

resuming (--joblog FILE --resume, or --resume-failed), with the same input:
  --resume skips the items FILE shows as ended (any status but not-started);
  --resume-failed skips only the ones that succeeded. Items without a line (running
  when herdexec was SIGKILLed) run again. A changed input is refused (exit 2).

--halt WHEN,WHY=N: soon or now; fail, success or done; N jobs or N% of them:
  now,fail=1       stop at the first failure, killing the running jobs
  soon,fail=10%    once 10% of the jobs have failed, start no more
  soon,success=1   stop at the first success (exit 0)

exit status:
  0    every job succeeded (an empty input too), or --halt ...,success=N stopped it
  1    some job failed, timed out, was killed or did not start; or --halt
       ...,fail=N stopped it (done=N: 1 if some job had failed)
  2    bad usage, or the run could not start (-a, --joblog, --serve, or an
       input that is not the one --resume's joblog logged)
  3    stopped because the input could not be read, or stdout or the joblog
       could not be written (a full disk, say); the message says which
  128+N  stopped by signal N: 130 for Ctrl-C, 143 for SIGTERM, 141 when stdout's
       reader went away

examples:
  ls *.png | herdexec run -j 4 -- convert {} {}.jpg
  herdexec run -a urls.txt --retries 3 --backoff 1 --timeout 30 -- curl -fsSO {}
  herdexec run -j 0 --serve 127.0.0.1:2112 --joblog jobs.tsv -a work.txt -- ./job.sh
  herdexec run -j 1 --adapt 1:32 --retries 5 --backoff 1 -a urls.txt -- curl -fsSO {}
"""

_CTL_DESCRIPTION = """\
Talk to the control server of a running herd (`herdexec run --serve HOST:PORT`, or
HerdExecutor.serve() in a program): read it, resize it, or read its metrics.
"""

_CTL_EPILOG = f"""\
actions:
  get          print GET /herd: the herd's size and counters, as JSON
  set N        resize the herd to N workers (0 pauses it): PATCH /herd; on an
               adaptive herd (--adapt) this pins the size
  adapt        give an adaptive herd's size back to its algorithm: PATCH /herd
               {{"adapt": true}}
  metrics      print GET /metrics, in Prometheus' text format

environment:
  HERDEXEC_URL     the default for --url ({DEFAULT_URL} without it)
  HERDEXEC_TOKEN   the default for --token

exit status:
  0    done
  1    the server refused (its message is shown), or is not a herd's server
  2    bad usage
  3    no server answered at URL
"""


def main(argv: Sequence[str] | None = None) -> int:
    """The ``herdexec`` console script; returns the exit status."""
    parser, subparsers = _parsers()
    try:
        args, unknown = parser.parse_known_args(argv)
        sub = subparsers[args.subcommand]
        if unknown:  # said with the subcommand's usage, not the top-level one
            sub.error(f"unrecognized arguments: {' '.join(map(_printable, unknown))}")
        if args.subcommand == "ctl":
            return _ctl(sub, args)
        return _run(sub, args)
    except KeyboardInterrupt:
        return 130


def _run(sub: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from ._input import input_failure  # noqa: PLC0415
    from ._run import IO_FAILURE, RunOptions, ServeError, dry_run, run  # noqa: PLC0415

    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        sub.error("no COMMAND given: herdexec run [OPTIONS] -- COMMAND [ARG...]")
    if args.token is not None and args.serve is None:
        sub.error("--token is for the control server: give --serve HOST:PORT too")
    if args.allow_host and args.serve is None:
        sub.error("--allow-host is for the control server: give --serve HOST:PORT too")
    jobs = args.jobs if args.jobs is not None else os.cpu_count() or 1
    if args.adapt is not None:
        low, high = args.adapt
        if args.jobs is None:
            jobs = min(max(jobs, low), high)
        elif not low <= jobs <= high:
            sub.error(f"-j {jobs} is where --adapt starts: it must lie within {low}:{high}")
    token = args.token if args.token is not None else os.environ.get("HERDEXEC_TOKEN")
    progress = args.progress if args.progress is not None else sys.stderr.isatty()
    try:
        items, total, skip, joblog = _input_and_joblog(sub, args, progress)
    except OSError as exc:  # the input, read for the resume's check or the count
        print(f"herdexec: {input_failure(exc)}", file=sys.stderr)
        return IO_FAILURE
    options = RunOptions(
        command=command,
        items=items,
        jobs=jobs,
        adapt=args.adapt,
        total=total,
        skip=skip,
        halt=args.halt,
        retries=args.retries,
        backoff=args.backoff,
        timeout=args.timeout,
        serve=args.serve,
        token=token,
        allowed_hosts=tuple(args.allow_host),
        joblog=joblog,
        keep_order=args.keep_order,
        progress=progress and not args.dry_run,
    )
    if args.dry_run:
        return dry_run(options)
    try:
        return run(options)
    except ServeError as exc:
        sub.error(str(exc))


def _input_and_joblog(
    sub: argparse.ArgumentParser, args: argparse.Namespace, progress: bool
) -> tuple[Iterator[str], int | None, frozenset[int], Joblog | None]:
    """The items, how many there are to run (when the bar or --halt P% needs it and it
    can be known), the ones --resume skips, and the joblog, open.

    Raises:
        OSError: The input could not be read.
    """
    resuming = "--resume-failed" if args.resume_failed else "--resume" if args.resume else None
    if resuming is not None and args.joblog is None:
        sub.error(f"{resuming} needs --joblog FILE: the joblog of the run to resume")
    percent = args.halt is not None and args.halt.percent and not args.dry_run
    from ._input import count_items, read_items  # noqa: PLC0415

    fd = _open_items(sub, args.arg_file)
    total = count_items(fd) if progress or percent else None
    items = read_items(fd)
    joblog = None
    if args.joblog is not None and not args.dry_run:
        joblog = _open_joblog(sub, args.joblog, append=resuming is not None)
    skip: frozenset[int] = frozenset()
    if resuming is not None:
        from ._resume import ResumeError, resume  # noqa: PLC0415

        earlier = joblog.earlier if joblog is not None else _read_joblog(sub, args.joblog)
        try:
            plan = resume(earlier, items, failed=args.resume_failed)
        except ResumeError as exc:
            sub.error(f"{resuming}: --joblog {_printable(args.joblog)}: {exc}")
        if joblog is not None:
            _cut_joblog(sub, joblog, plan.kept)
        items, skip = plan.items, plan.skip
    if total is None and percent:  # a pipe: read it all before the first job starts
        listed = list(items)
        items, total = iter(listed), len(listed)
    return items, None if total is None else total - len(skip), skip, joblog


def _ctl(sub: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from ._ctl import CtlError, CtlOptions, ctl, normalize_url  # noqa: PLC0415

    url, given_as = args.url, "--url"
    if url is None:
        url, given_as = os.environ.get("HERDEXEC_URL", DEFAULT_URL), "$HERDEXEC_URL"
    try:
        url = normalize_url(url)
    except ValueError as exc:  # ftp://, https://: refused before any connection
        sub.error(f"{given_as} {_printable(url)}: {exc}")
    options = CtlOptions(action=args.action, url=url, token=args.token, size=args.size)
    try:
        return ctl(options)
    except CtlError as error:
        print(f"herdexec ctl: {error}", file=sys.stderr)
        return error.status


def _open_items(sub: argparse.ArgumentParser, path: str | None) -> int:
    """The file descriptor to read the items from (left open until the process exits)."""
    try:
        fd = 0 if path is None or path == "-" else os.open(path, os.O_RDONLY)
        # A directory opens, and fails only at the first read: refuse it now.
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
    except OSError as exc:
        sub.error(f"-a {_printable(path or '-')}: {exc.strerror}")
    return fd


def _open_joblog(sub: argparse.ArgumentParser, path: str, *, append: bool) -> Joblog:
    from ._report import Joblog  # noqa: PLC0415

    try:
        return Joblog(path, append=append)
    except OSError as exc:  # /tmp, say, or /dev/full, where the header cannot be written
        sub.error(f"--joblog {_printable(path)}: {exc.strerror}")


def _cut_joblog(sub: argparse.ArgumentParser, joblog: Joblog, kept: int) -> None:
    try:
        joblog.cut(kept)
    except OSError as exc:
        sub.error(f"--joblog {_printable(joblog.path)}: {exc.strerror}")


def _read_joblog(sub: argparse.ArgumentParser, path: str) -> bytes:
    """The joblog a dry run resumes from: it is read, never written."""
    try:
        with open(path, "rb") as file:
            return file.read()
    except FileNotFoundError:
        return b""
    except OSError as exc:
        sub.error(f"--joblog {_printable(path)}: {exc.strerror}")


def _printable(text: str) -> str:
    """:func:`herdexec._cli._report.printable`, loaded only when ctl needs it (to say
    what was wrong): it comes with what runs jobs."""
    from ._report import printable  # noqa: PLC0415

    return printable(text)


# -- the parsers -------------------------------------------------------------------


def _parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The ``herdexec`` parser, and its subcommands' parsers by name (each reports the
    errors of its own command line)."""
    parser = argparse.ArgumentParser(
        prog="herdexec",
        description="A herd of workers at your service: run a command per input line on a"
        " herd you can resize while it runs, or control a running herd.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="subcommand", required=True, metavar="COMMAND")
    return parser, {"run": _run_parser(subparsers), "ctl": _ctl_parser(subparsers)}


def _run_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    run_parser = subparsers.add_parser(
        "run",
        help="run a command for each input line",
        description=_RUN_DESCRIPTION,
        epilog=_RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s [OPTIONS] -- COMMAND [ARG...]",
    )
    add = run_parser.add_argument
    cpus = os.cpu_count() or 1
    add(
        "-j",
        "--jobs",
        type=_bounded(int, 0, MAX_JOBS),
        metavar="N",
        help=f"start with N workers, at most {MAX_JOBS}; 0 starts paused, waiting for a"
        f" resize (default: the number of CPUs, {cpus}, within --adapt's bounds)",
    )
    add(
        "--adapt",
        nargs="?",
        const=DEFAULT_ADAPT,
        type=_size_bounds,
        metavar="MIN:MAX",
        help="let the herd find its own size, between MIN and MAX workers, from how long"
        " the jobs take and how many fail (herdexec.Gradient): for commands that call a"
        " service that slows down or refuses when overloaded; it starts at -j"
        f" (default bounds: {DEFAULT_ADAPT[0]}:{DEFAULT_ADAPT[1]})",
    )
    add(
        "-a",
        "--arg-file",
        metavar="FILE",
        help="read the items from FILE instead of standard input ('-' is standard input)",
    )
    add(
        "--retries",
        type=_bounded(int, 0),
        default=0,
        metavar="N",
        help="try a failed job up to N more times (default: 0)",
    )
    add(
        "--backoff",
        type=_bounded(float, 0),
        default=0.0,
        metavar="SECONDS",
        help="wait SECONDS before the first retry, twice that before the second, and so on,"
        " with 10%% jitter, at most 60 s (default: 0, retry at once)",
    )
    add(
        "--timeout",
        type=_bounded(float, 0, strict=True),
        metavar="SECONDS",
        help="kill an attempt still running after SECONDS (SIGTERM to its process group,"
        " SIGKILL 1 s later) and count it as failed (default: no limit)",
    )
    add(
        "--serve",
        metavar="HOST:PORT",
        help="serve the control plane (GET/PATCH /herd, GET /metrics) there; port 0 picks"
        " a free one; the URL is printed on stderr as 'herdexec: control server at URL'",
    )
    add(
        "--token",
        metavar="TOKEN",
        help="with --serve: PATCH /herd needs 'Authorization: Bearer TOKEN'"
        " (default: $HERDEXEC_TOKEN, if set)",
    )
    add(
        "--allow-host",
        metavar="NAME",
        action="append",
        default=[],
        help="with --serve: answer requests for NAME too (say it again for more names; *"
        " for any); besides localhost and IP addresses, every other Host header gets 403",
    )
    add(
        "--joblog",
        metavar="FILE",
        help="write one tab-separated line per item to FILE as it ends (see below)",
    )
    resumes = run_parser.add_mutually_exclusive_group()
    resumes.add_argument(
        "--resume",
        action="store_true",
        help="with --joblog FILE: run only the items that FILE does not show as ended,"
        " and append to it (the input must be the same)",
    )
    resumes.add_argument(
        "--resume-failed",
        action="store_true",
        help="as --resume, and run again the items that did not succeed",
    )
    add(
        "--halt",
        type=_halt,
        metavar="WHEN,WHY=N",
        help="stop once N jobs failed (fail=N), succeeded (success=N) or ended (done=N),"
        " or N%% of the jobs to run: soon, starting no more; now, killing the running ones"
        " too (as GNU parallel's; default: never)",
    )
    add(
        "-k",
        "--keep-order",
        action="store_true",
        help="pass the jobs' output on in input order, not in the order they end",
    )
    progress = run_parser.add_mutually_exclusive_group()
    progress.add_argument(
        "--progress",
        action="store_true",
        default=None,
        help="draw a progress bar on stderr (default: when stderr is a terminal)",
    )
    progress.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="draw no progress bar",
    )
    run_parser.set_defaults(progress=None)
    add(
        "--dry-run",
        action="store_true",
        help="print each command that would run, quoted as for a shell, and run none",
    )
    add(
        "command",
        nargs=argparse.REMAINDER,
        metavar="-- COMMAND [ARG...]",
        help="the command to run per item; {} in it stands for the item",
    )
    return run_parser


def _ctl_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    ctl_parser = subparsers.add_parser(
        "ctl",
        help="control a running herd over HTTP",
        description=_CTL_DESCRIPTION,
        epilog=_CTL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # --url and --token go before the action or after it: after it, they override.
    _connection_options(ctl_parser, defaults=True)
    common = argparse.ArgumentParser(add_help=False)
    _connection_options(common, defaults=False)
    actions = ctl_parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("get", parents=[common], help="print the herd's size and counters (JSON)")
    set_parser = actions.add_parser("set", parents=[common], help="resize the herd to N")
    set_parser.add_argument(
        "size", type=_bounded(int, 0, MAX_JOBS), metavar="N", help="the new size; 0 pauses"
    )
    actions.add_parser("metrics", parents=[common], help="print the Prometheus metrics")
    actions.add_parser(
        "adapt", parents=[common], help="give an adaptive herd's size back to its algorithm"
    )
    ctl_parser.set_defaults(size=None)
    return ctl_parser


def _connection_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    parser.add_argument(
        "--url",
        default=None if defaults else argparse.SUPPRESS,
        help="the server's address, like http://127.0.0.1:2112 or 127.0.0.1:2112"
        f" (default: $HERDEXEC_URL, else {DEFAULT_URL})",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("HERDEXEC_TOKEN") if defaults else argparse.SUPPRESS,
        help="send 'Authorization: Bearer TOKEN' (default: $HERDEXEC_TOKEN, if set)",
    )


def _size_bounds(text: str) -> tuple[int, int]:
    """``--adapt``'s ``MIN:MAX``; either side may be left out (``:32``, ``2:``)."""
    low_text, colon, high_text = text.partition(":")
    if not colon:
        raise argparse.ArgumentTypeError(f"not MIN:MAX: {text!r}")
    bound = _bounded(int, 1, MAX_JOBS)
    low = bound(low_text) if low_text.strip() else DEFAULT_ADAPT[0]
    high = bound(high_text) if high_text.strip() else max(DEFAULT_ADAPT[1], low)
    if low > high:
        raise argparse.ArgumentTypeError(f"MIN must be at most MAX: {text!r}")
    return low, high


def _halt(text: str) -> Halt | None:
    from ._halt import parse_halt  # noqa: PLC0415  (with --halt only)

    try:
        return parse_halt(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _bounded(
    kind: Callable[[str], _N], low: _N, high: _N | None = None, *, strict: bool = False
) -> Callable[[str], _N]:
    """An argparse type: ``kind(text)`` within [low, high] (above low, if ``strict``)."""

    def convert(text: str) -> _N:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
        if value <= low if strict else value < low:
            raise argparse.ArgumentTypeError(f"must be {'above' if strict else 'at least'} {low}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high}")
        return value

    return convert
