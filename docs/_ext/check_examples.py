"""Run the examples in the docs and the README, so that a page cannot drift from the code.

Python: every fenced block opened with ```` ```python ```` (indented or not) in the pages
named on the command line runs on its own, in a fresh interpreter with a time limit; a
block that exits non-zero fails the check. A fragment that is not meant to run is fenced
with ```` ```py ```` instead (it looks the same on the page). A ``print(...)  # -> text``
line says what the block prints: if a block has any, its standard output must be
exactly those texts, one line each, in order; blocks whose output depends on thread
timing carry none, and only have to run.

Console sessions: a ```` ```console ```` block is a shell session. Each line that starts
with ``$ `` is a command; the lines after it, up to the next command, are what it prints
(stdout and stderr together, as a terminal shows them). The whole session runs in one
``bash``, in an empty temporary directory, with the ``herdexec`` console script of the
interpreter running this check first on the PATH and standard input from /dev/null;
each command's output must be the lines shown (trailing spaces aside). ``$?`` carries
over from one command to the next, as at a terminal. One help for sessions that use a
script: ``$ cat FILE``, when FILE does not exist yet, first writes FILE with the lines
shown (executable if it starts with ``#!``), so a page can show the script it runs.

A comment on the line just before a block's fence says how to check it:

- ``<!-- check: skip: WHY -->``: not run at all (a session that needs a server, a
  background job or a clock; say why).
- ``<!-- check: any order -->``: each command's lines are compared in any order (jobs
  that run side by side end in any order).
- ``<!-- check: any order, times vary -->``: besides, ISO 8601 times and durations in
  seconds (``2026-12-01T10:57:46.919Z``, ``0.479``) match any such value, and runs of
  spaces count as one (``column -t`` pads to the widest value).

Usage: ``python docs/_ext/check_examples.py README.md docs/guide.md [more pages...]``
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

# A fence may be indented, inside a list item; its code is dedented by as much.
_BLOCK = re.compile(
    r"^(?: *<!-- check: (?P<marker>[^\n]*?) -->\n)?"
    r"(?P<indent> *)```(?P<language>python|console)\n(?P<code>.*?)^(?P=indent)```$",
    re.MULTILINE | re.DOTALL,
)
_EXPECT = re.compile(r"^\s*print\(.*\)\s+# -> (.*)$")
_CAT = re.compile(r"cat (?P<file>[\w.-]+)")
_TIMES = (
    (re.compile(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z\b"), "<time>"),
    (re.compile(r"\b\d+\.\d+\b"), "<seconds>"),
)
_MODES = frozenset({"any order", "times vary"})
# Ends each command's output in the session's one stream of output (ASCII's record
# separator: no page shows one).
_END = "\x1e"
_TIME_LIMIT = 60


def check(page: Path) -> list[str]:
    """The failures of every runnable block of ``page``."""
    text = page.read_text()
    failures = []
    for match in _BLOCK.finditer(text):
        line = text.count("\n", 0, match.start("indent")) + 1
        where = f"{page}:{line}"
        marker = match.group("marker") or ""
        if marker.startswith("skip:"):
            print(f"skip {where}: {marker.removeprefix('skip:').strip()}")
            continue
        modes = {mode.strip() for mode in marker.split(",")} - {""}
        code = textwrap.dedent(match.group("code"))
        failure: str | None
        if modes - _MODES:
            failure = f"unknown check mode {sorted(modes - _MODES)}: see {__file__}"
        elif match.group("language") == "python":
            failure = _check_python(code) if not modes else "check modes are for sessions"
        else:
            failure = _check_session(code, modes)
        if failure:
            failures.append(f"{where}: {failure}")
        else:
            print(f"ok   {where}")
    return failures


def _check_python(code: str) -> str | None:
    expected = [m.group(1) for m in map(_EXPECT.match, code.splitlines()) if m]
    run = _run([sys.executable, "-X", "dev", "-c", code], os.environ.copy(), subprocess.PIPE)
    if isinstance(run, str):
        return run
    if run.returncode != 0:
        return f"exit status {run.returncode}\n{run.stderr}"
    if expected and run.stdout.splitlines() != expected:
        return f"printed {run.stdout.splitlines()}, the page says {expected}"
    return None


def _check_session(code: str, modes: set[str]) -> str | None:
    session: list[tuple[str, list[str]]] = []
    for line in code.splitlines():
        if line.startswith("$ "):
            session.append((line[2:], []))
        elif session:
            session[-1][1].append(line)
        else:
            return f"output before the first command: {line!r}"
    script = "".join(_step(command, shown) for command, shown in session)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HERDEXEC_")}
    environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environ.get('PATH', '')}"
    # stderr goes with stdout, as on a terminal.
    run = _run(["bash", "--noprofile", "--norc", "-c", script], environ, subprocess.STDOUT)
    if isinstance(run, str):
        return run
    outputs = run.stdout.split(_END)
    for (command, shown), output in zip(session, outputs, strict=False):
        if _compared(output.splitlines(), modes) != _compared(shown, modes):
            return f"$ {command}\nprinted:\n{output}the page says:\n" + "\n".join(shown)
    if len(outputs) <= len(session):
        return f"the session ended at $ {session[len(outputs) - 1][0]}\n{outputs[-1]}"
    return None


def _step(command: str, shown: list[str]) -> str:
    """The script for one command: it, then the end of its output; $? is kept."""
    script = ""
    cat = _CAT.fullmatch(command)
    if cat is not None:
        name = shlex.quote(cat["file"])
        content = shlex.quote("".join(f"{line}\n" for line in shown))
        executable = f" && chmod +x {name}" if shown[:1] and shown[0].startswith("#!") else ""
        script = f"[ -e {name} ] || {{ printf '%s' {content} > {name}{executable}; }}\n"
    return f"{script}{command}\n__status=$?; printf '{_END}'; (exit $__status)\n"


def _compared(lines: list[str], modes: set[str]) -> list[str]:
    lines = [line.rstrip() for line in lines]
    if "times vary" in modes:
        for pattern, stand_in in _TIMES:
            lines = [pattern.sub(stand_in, line) for line in lines]
        lines = [" ".join(line.split()) for line in lines]
    return sorted(lines) if "any order" in modes else lines


def _run(
    argv: list[str], environ: dict[str, str], stderr: int
) -> subprocess.CompletedProcess[str] | str:
    """Run ``argv`` in an empty directory; what it did, or why it did not finish."""
    with tempfile.TemporaryDirectory() as cwd:
        try:
            return subprocess.run(
                argv,
                cwd=cwd,
                env=environ,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                errors="backslashreplace",
                timeout=_TIME_LIMIT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return f"still running after {_TIME_LIMIT} s"


def main(pages: list[str]) -> int:
    failures = [failure for page in pages for failure in check(Path(page))]
    for failure in failures:
        print(f"FAIL {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
