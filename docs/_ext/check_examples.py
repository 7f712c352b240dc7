"""Run the Python examples in the docs, so that a page cannot drift from the code.

Every fenced block opened with ```` ```python ```` (indented or not) in the pages named
on the command line runs on its own, in a fresh interpreter with a time limit; a block
that exits non-zero fails the check. A fragment that is not meant to run is fenced
with ```` ```py ```` instead (it looks the same on the page).

A ``print(...)  # -> text`` line says what the block prints. If a block has any of
them, its standard output must be exactly those texts, one line each, in order; blocks
whose output depends on thread timing carry none, and only have to run.

Usage: ``python docs/_ext/check_examples.py docs/guide.md [more pages...]``
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

# A fence may be indented, inside a list item; its code is dedented by as much.
_BLOCK = re.compile(r"^( *)```python\n(.*?)^\1```$", re.MULTILINE | re.DOTALL)
_EXPECT = re.compile(r"^\s*print\(.*\)\s+# -> (.*)$")
_TIME_LIMIT = 60


def check(page: Path) -> list[str]:
    """The failures of every runnable block of ``page``."""
    text = page.read_text()
    failures = []
    for match in _BLOCK.finditer(text):
        code = textwrap.dedent(match.group(2))
        line = text.count("\n", 0, match.start()) + 1
        where = f"{page}:{line}"
        expected = [m.group(1) for m in map(_EXPECT.match, code.splitlines()) if m]
        with tempfile.TemporaryDirectory() as cwd:
            try:
                run = subprocess.run(
                    [sys.executable, "-X", "dev", "-c", code],
                    cwd=cwd,
                    capture_output=True,
                    text=True,
                    timeout=_TIME_LIMIT,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                failures.append(f"{where}: still running after {_TIME_LIMIT} s")
                continue
        if run.returncode != 0:
            failures.append(f"{where}: exit status {run.returncode}\n{run.stderr}")
        elif expected and run.stdout.splitlines() != expected:
            failures.append(f"{where}: printed {run.stdout.splitlines()}, the page says {expected}")
        else:
            print(f"ok  {where}")
    return failures


def main(pages: list[str]) -> int:
    failures = [failure for page in pages for failure in check(Path(page))]
    for failure in failures:
        print(f"FAIL {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
