"""Import time: ``import herdexec`` against ``import concurrent.futures, logging,
threading, json``, each in fresh interpreters.

A program that uses a thread pool imports those four stdlib modules anyway, so they are
the anchor: herdexec should cost little beyond them. Each run is a new interpreter that
times its one ``import`` statement with ``perf_counter`` (the interpreter's own start is
the same for both and left out), the two alternate run by run, and the figure is the
ratio of the medians.

The interpreters run from a fresh virtual environment holding a byte-compiled copy of
``herdexec/`` in its site-packages, which is what ``pip install herdexec`` leaves: an
editable install's import hook (loaded by a ``.pth`` file at start-up) and missing
``.pyc`` files (``PYTHONDONTWRITEBYTECODE``) would both distort the figure. They run
isolated (``python -I``), so neither the environment nor the current directory reaches
them.

Usage: ``python benchmarks/bench_import.py [--runs 40]``
"""

from __future__ import annotations

import argparse
import compileall
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # also run as a script

from benchmarks import _common

TARGET = 1.5  # herdexec / stdlib, at most
STDLIB = "concurrent.futures, logging, threading, json"
IMPORTS = {"stdlib": STDLIB, "herdexec": "herdexec"}
_TIMED = "import time; t = time.perf_counter(); import {}; print(time.perf_counter() - t)"


def install(root: Path) -> Path:
    """A virtual environment in ``root`` with herdexec byte-compiled in its
    site-packages (its dependencies are not needed to import it); its python."""
    venv.create(root, with_pip=False, symlinks=True)
    python = root / "bin" / "python"
    purelib = subprocess.run(
        [python, "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    target = Path(purelib) / "herdexec"
    shutil.copytree(_common.ROOT / "herdexec", target, ignore=shutil.ignore_patterns("__pycache__"))
    compileall.compile_dir(target, quiet=1)
    return python


def seconds(python: Path, modules: str) -> float:
    """How long ``import modules`` takes in a fresh, isolated interpreter."""
    done = subprocess.run(
        [python, "-I", "-c", _TIMED.format(modules)],
        capture_output=True,
        text=True,
        check=True,
        cwd=tempfile.gettempdir(),
    )
    return float(done.stdout)


def measure(runs: int = 40) -> dict[str, Any]:
    """``runs`` fresh interpreters of each import, alternating, the order swapped
    every run."""
    samples: dict[str, list[float]] = {name: [] for name in IMPORTS}
    with tempfile.TemporaryDirectory(prefix="herdexec-import-") as scratch:
        python = install(Path(scratch))
        for modules in IMPORTS.values():
            seconds(python, modules)  # untimed: warm the page cache
        for index in range(runs):
            names = list(IMPORTS) if index % 2 == 0 else list(reversed(IMPORTS))
            for name in names:
                samples[name].append(seconds(python, IMPORTS[name]))
    stdlib_ms = _common.median(samples["stdlib"]) * 1e3
    herd_ms = _common.median(samples["herdexec"]) * 1e3
    ratio = herd_ms / stdlib_ms
    return {
        "runs": runs,
        "stdlib_ms": stdlib_ms,
        "herdexec_ms": herd_ms,
        "ratio": ratio,
        "ok": ratio <= TARGET,
        "stdlib_samples_ms": [t * 1e3 for t in samples["stdlib"]],
        "herdexec_samples_ms": [t * 1e3 for t in samples["herdexec"]],
    }


def table(result: dict[str, Any]) -> str:
    head = (
        f"Import time: median of {result['runs']} fresh interpreters each, alternating;"
        f" target herdexec/stdlib <= {TARGET:.2f}"
    )
    row = (
        f"`import {STDLIB}`",
        f"{result['stdlib_ms']:.1f}",
        f"{result['herdexec_ms']:.1f}",
        f"{result['ratio']:.2f}",
        _common.verdict(result["ok"]),
    )
    headers = ("anchor", "anchor ms", "`import herdexec` ms", "herdexec/anchor", "target")
    return head + "\n\n" + _common.markdown(headers, [row], "lrrrl")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args(argv)
    print(_common.describe(_common.machine()))
    result = measure(args.runs)
    print(table(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
