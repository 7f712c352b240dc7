"""Run CPython's own tests of ``concurrent.futures.Future`` against HerdFuture.

A HerdFuture is a Future with its own insides (its lock, its callback list: see
herdexec/_condition.py), so the stdlib's tests of the Future class must hold for it too.
They live in ``test.test_concurrent_futures.test_future`` and make their futures with
``Future()``, directly and through ``util.create_future``. This script imports both
modules while ``concurrent.futures._base.Future`` is a HerdFuture subclass that takes no
arguments, so that every future those tests make, module-level ones included, is a
HerdFuture; then it puts the stdlib's class back and runs the tests.

The run fails (exit status 1) on any failure or error, if the substitution did not take,
and if a test listed in ``CANNOT_APPLY`` does not exist. docs/stdlib-compat.md lists the
exclusions and why.

Usage: ``python tests/stdlib/run_cpython_future_tests.py [-v]``
"""

from __future__ import annotations

import argparse
import concurrent.futures._base as futures_base
import importlib
import sys
import unittest
from collections.abc import Iterator
from typing import Any

from herdexec import HerdFuture, Work

PACKAGE = "test.test_concurrent_futures"

_CLASS_NAME = (
    "the expected repr (in the message, for the InvalidStateError ones) starts with the"
    " class name, Future; a HerdFuture's names its own class, as any Future subclass's"
    " does. tests/test_future.py checks the rest of what they check."
)
# Test id (without the package) -> why it cannot apply to a HerdFuture.
CANNOT_APPLY = {
    "test_future.FutureTests.test_repr": _CLASS_NAME,
    "test_future.FutureTests.test_multiple_set_result": _CLASS_NAME,
    "test_future.FutureTests.test_multiple_set_exception": _CLASS_NAME,
}


class CPythonTestFuture(HerdFuture[Any]):
    """A HerdFuture made as the tests make a Future: with no arguments."""

    def __init__(self) -> None:
        super().__init__(Work("cpython-test"))


def _import_with_herd_futures() -> tuple[Any, Any]:
    stdlib_future = futures_base.Future
    futures_base.Future = CPythonTestFuture  # type: ignore[misc]
    try:
        util = importlib.import_module(f"{PACKAGE}.util")
        test_future = importlib.import_module(f"{PACKAGE}.test_future")
    finally:
        futures_base.Future = stdlib_future  # type: ignore[misc]
    return util, test_future


def _tests(suite: unittest.TestSuite) -> Iterator[unittest.TestCase]:
    for test in suite:
        if isinstance(test, unittest.TestSuite):
            yield from _tests(test)
        else:
            yield test


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)

    util, test_future = _import_with_herd_futures()
    if not isinstance(util.PENDING_FUTURE, HerdFuture) or not isinstance(
        test_future.Future(), HerdFuture
    ):
        print("the tests do not make HerdFutures: the substitution did not take")
        return 1
    # The suite runs the module's setUpModule and its cleanups, as unittest would.
    tests = list(_tests(unittest.defaultTestLoader.loadTestsFromModule(test_future)))
    prefix = f"{PACKAGE}."
    found = {test.id().removeprefix(prefix) for test in tests}
    stale = sorted(set(CANNOT_APPLY) - found)
    if stale:
        print(f"listed in CANNOT_APPLY but not found: {', '.join(stale)}")
        return 1
    run = [test for test in tests if test.id().removeprefix(prefix) not in CANNOT_APPLY]
    result = unittest.TextTestRunner(verbosity=2 if args.verbose else 1).run(
        unittest.TestSuite(run)
    )
    print(
        f"Future tests with HerdFuture: {len(tests)} tests: {result.testsRun} run,"
        f" {len(result.failures)} failed, {len(result.errors)} errors,"
        f" {len(result.skipped)} skipped, {len(CANNOT_APPLY)} excluded (cannot apply)"
    )
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
