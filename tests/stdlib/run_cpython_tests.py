"""Run CPython's own ThreadPoolExecutor tests against HerdExecutor.

The interpreter ships its test suite as the package ``test.test_concurrent_futures``.
This script imports it, keeps the ``ThreadPool*`` test classes, and runs them once per
mode (``MODES``) with HerdExecutor put wherever they look for ThreadPoolExecutor:

- ``ThreadPoolMixin.executor_type``, from which setUp builds ``self.executor``;
- ``concurrent.futures.ThreadPoolExecutor``, which some test bodies name directly;
- the same names in the child interpreters that ``assert_python_ok`` starts. Those run
  with ``-I``, which ignores PYTHONPATH and sitecustomize but still reads ``.pth`` files
  in site-packages; so for the length of the run a ``.pth`` file there installs the
  substitution in any interpreter whose environment carries this run's token.

Each mode lists the tests that cannot apply to it and the tests that fail because of a
known HerdExecutor bug, each with its reason (docs/stdlib-compat.md explains them). Such
a test still runs and must fail; one that would deadlock runs apart, in a child process
that is killed after ``APART_TIMEOUT`` seconds. The run fails (exit status 1) on any
unexpected failure, error or success, and on a listed test that does not exist.

Usage: ``python tests/stdlib/run_cpython_tests.py [--mode backlog=None|backlog=0] [-v]``
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import faulthandler
import functools
import importlib
import importlib.util
import os
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import types
import unittest
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from herdexec import HerdExecutor

PACKAGE = "test.test_concurrent_futures"
# Every module of the package with tests that take an executor. In 3.13 test_future
# (the Future class alone) and test_deadlock (process pools only) hold no ThreadPool*
# class; they are listed so that one added in a later version runs here too.
MODULES = (
    "test_thread_pool",
    "test_shutdown",
    "test_wait",
    "test_as_completed",
    "test_init",
    "test_future",
    "test_deadlock",
)
# Both guard thread-pool tests worth their time: 'walltime' map(timeout=) and
# FIRST_EXCEPTION (9 s together), 'cpu' the fork safety of the pool's exit hook (bpo-45021).
RESOURCES = ("walltime", "cpu")
# A test still running after this long is taken for a deadlock: the run stops there.
TEST_TIMEOUT = 60.0
# A test that is expected to deadlock runs in a child killed after this long. It only
# bounds the wait: a test that would pass and needs longer just counts as deadlocked.
APART_TIMEOUT = 5.0

# The child interpreters' hook acts on this variable, "<pid of the run>:<mode name>".
_ENV = "HERDEXEC_CPYTHON_TESTS"
_PTH_PREFIX = "herdexec_cpython_tests_"


class UnboundedHerdExecutor(HerdExecutor):
    """HerdExecutor that queues without bound by default, as ThreadPoolExecutor does.

    A subclass rather than a partial, so that child interpreters, which look the class up
    by name in ``concurrent.futures``, build it in the same mode.
    """

    def __init__(self, *args: Any, backlog: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, backlog=backlog, **kwargs)


@dataclass(frozen=True)
class Exclusion:
    """Why a test is expected to fail; ``hangs`` if it would deadlock, so it runs apart."""

    reason: str
    hangs: bool = False


@dataclass(frozen=True)
class Mode:
    """One way of building HerdExecutor, and the tests expected to fail with it.

    Both tables map ``TestClass.test_method`` to its exclusion.
    """

    name: str
    executor: type[HerdExecutor]
    cannot_apply: dict[str, Exclusion]
    known_bugs: dict[str, Exclusion]

    def exclusion(self, key: str) -> Exclusion | None:
        return self.cannot_apply.get(key) or self.known_bugs.get(key)


_CANNOT_APPLY = {
    "ThreadPoolShutdownTest.test_thread_names_default": Exclusion(
        "default thread names are HerdExecutor-N_k, not the stdlib class's ThreadPoolExecutor-N_k"
    ),
    "ThreadPoolExecutorTest.test_max_workers_negative": Exclusion(
        "expects max_workers=0 to raise ValueError: a herd of 0 is paused by design"
    ),
}
# Without a backlog, submit() returns only once a gopher has the work: nothing queues
# behind busy workers. These tests need such a queue; see docs/stdlib-compat.md.
_CANNOT_APPLY_WITHOUT_BACKLOG = {
    "ThreadPoolExecutorTest.test_saturation": Exclusion(
        "submits 60 tasks blocked on a semaphore to 4 workers and releases it only after"
        " the last submit: the 5th submit waits for a free gopher for ever",
        hangs=True,
    ),
    "ThreadPoolWaitTests.test_pending_calls_race": Exclusion(
        "submits 100 tasks waiting for an event to 5 workers and sets it only after the"
        " last submit: the 6th submit waits for a free gopher for ever",
        hangs=True,
    ),
    "ThreadPoolShutdownTest.test_cancel_futures": Exclusion(
        "expects shutdown(cancel_futures=True) to cancel over 20 of 50 futures queued behind"
        " 5 workers: when submit() returns a gopher has the work, so at most 5 are pending"
    ),
}
# HerdExecutor bugs these tests found (docs/stdlib-compat.md has a reproduction of each).
# Remove an entry once its bug is fixed: the run then fails with "passed, but is listed".
_KNOWN_BUGS: dict[str, Exclusion] = {}

MODES = (
    Mode("backlog=None", UnboundedHerdExecutor, dict(_CANNOT_APPLY), dict(_KNOWN_BUGS)),
    Mode(
        "backlog=0",
        HerdExecutor,
        {**_CANNOT_APPLY, **_CANNOT_APPLY_WITHOUT_BACKLOG},
        dict(_KNOWN_BUGS),
    ),
)
_MODES_BY_NAME = {mode.name: mode for mode in MODES}


# -- the substitution ------------------------------------------------------------------


def _install(executor: type[HerdExecutor]) -> Callable[[], None]:
    """Make ``concurrent.futures`` hand out ``executor``; return what undoes it."""
    cf = concurrent.futures
    missing = object()
    # ThreadPoolExecutor is loaded lazily by the package's __getattr__: it may be absent.
    names = ("ThreadPoolExecutor", executor.__name__)
    saved = {name: cf.__dict__.get(name, missing) for name in names}
    for name in names:
        setattr(cf, name, executor)

    def undo() -> None:
        for name, value in saved.items():
            if value is missing:
                cf.__dict__.pop(name, None)
            else:
                setattr(cf, name, value)

    return undo


def install_in_child() -> None:
    """Called by the ``.pth`` hook as a child interpreter of the run starts."""
    _install(_MODES_BY_NAME[os.environ[_ENV].partition(":")[2]].executor)


@contextlib.contextmanager
def _child_hook() -> Iterator[Path]:
    """Put the ``.pth`` hook in site-packages for the length of the run; always remove it.

    It acts only in an interpreter whose environment carries this process's token, so
    other users of the environment, even a second run beside this one, are left alone.
    """
    site_packages = Path(sysconfig.get_path("purelib"))
    _remove_stale_hooks(site_packages)
    hook = (
        "import importlib.util, sys\n"
        "spec = importlib.util.spec_from_file_location("
        f"'_herdexec_cpython_hook', {str(Path(__file__).resolve())!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "sys.modules[spec.name] = module\n"
        "spec.loader.exec_module(module)\n"
        "module.install_in_child()\n"
    )
    # site.py runs a .pth line that starts with "import"; all of it must fit on that line.
    line = (
        f"import os; exec({hook!r}, {{}}) "
        f"if os.environ.get({_ENV!r}, '').startswith('{os.getpid()}:') else None\n"
    )
    path = site_packages / f"{_PTH_PREFIX}{os.getpid()}.pth"
    path.write_text(line, encoding="utf-8")
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def _remove_stale_hooks(site_packages: Path) -> None:
    """Remove hooks left by runs that were killed outright (SIGKILL runs no cleanup)."""
    for path in site_packages.glob(f"{_PTH_PREFIX}*.pth"):
        try:
            os.kill(int(path.stem.removeprefix(_PTH_PREFIX)), 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
        except (ValueError, PermissionError):
            pass  # a live process, or a name this script did not write


@contextlib.contextmanager
def _substituted(mode: Mode, owner: int) -> Iterator[None]:
    """Put ``mode.executor`` where the tests, here and in children, look for the pool.

    ``owner`` is the pid of the process whose ``.pth`` hook the children will run.
    """
    util = importlib.import_module(f"{PACKAGE}.util")
    saved_type = util.ThreadPoolMixin.executor_type
    util.ThreadPoolMixin.executor_type = mode.executor
    undo = _install(mode.executor)
    os.environ[_ENV] = f"{owner}:{mode.name}"
    try:
        yield
    finally:
        os.environ.pop(_ENV, None)
        undo()
        util.ThreadPoolMixin.executor_type = saved_type


# -- collecting ------------------------------------------------------------------------


def _import_modules() -> list[types.ModuleType]:
    # Not at the top: the child hook loads this file at every start of an interpreter,
    # and has no use for the test package.
    support: Any = importlib.import_module("test.support")
    # Decorators read these as the test modules load: set them first.
    support.use_resources = list(RESOURCES)
    support.verbose = 0  # else ExecutorMixin.tearDown prints each test's duration
    return [importlib.import_module(f"{PACKAGE}.{name}") for name in MODULES]


def _thread_pool_tests(modules: list[types.ModuleType]) -> Iterator[unittest.TestCase]:
    """A fresh instance of every test of every ThreadPool* class, in a stable order."""
    loader = unittest.TestLoader()
    for module in modules:
        classes = sorted(
            (
                value
                for name, value in vars(module).items()
                if name.startswith("ThreadPool")
                and isinstance(value, type)
                and issubclass(value, unittest.TestCase)
                and value.__module__ == module.__name__
            ),
            key=lambda cls: cls.__name__,
        )
        for cls in classes:
            for name in loader.getTestCaseNames(cls):
                yield cls(name)


def _key(test: unittest.TestCase) -> str:
    return f"{type(test).__name__}.{test._testMethodName}"


def _mark(test: unittest.TestCase, exclusion: Exclusion) -> None:
    """Mark one test instance, never its class, which the modes share."""
    method = getattr(test, test._testMethodName)

    # An instance attribute is not bound: unittest calls it with no arguments. A bound
    # method takes no new attributes, hence the function around it.
    @functools.wraps(method)
    def marked() -> None:
        method()

    if exclusion.hangs:
        decorate = unittest.skip(f"runs apart: {exclusion.reason}")
    else:
        decorate = unittest.expectedFailure
    setattr(test, test._testMethodName, decorate(marked))


# -- running ---------------------------------------------------------------------------


class _Watchdog:
    """One thread for the whole run that ends the process if a test deadlocks.

    It dumps every thread's stack, calls ``on_expire`` (which removes the ``.pth`` hook)
    and exits: a thread blocked for ever cannot be stopped any other way.
    """

    def __init__(self, timeout: float, on_expire: Callable[[], object]) -> None:
        self._timeout = timeout
        self._on_expire = on_expire
        self._cond = threading.Condition()
        self._deadline: float | None = None
        self._test = ""
        threading.Thread(target=self._main, name="cpython-tests-watchdog", daemon=True).start()

    def arm(self, test: str) -> None:
        with self._cond:
            self._deadline = time.monotonic() + self._timeout
            self._test = test
            self._cond.notify()

    def disarm(self) -> None:
        with self._cond:
            self._deadline = None

    def _main(self) -> None:
        with self._cond:
            while self._deadline is None or time.monotonic() < self._deadline:
                wait = None if self._deadline is None else self._deadline - time.monotonic()
                self._cond.wait(wait)
            test = self._test
        print(f"\n{test} still runs after {self._timeout:.0f} s: deadlock", file=sys.stderr)
        sys.stderr.flush()
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        self._on_expire()
        os._exit(3)


class _Result(unittest.TextTestResult):
    """A text result that arms the watchdog for each test and notes leaked threads."""

    watchdog: _Watchdog | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.env_changed: list[str] = []

    def startTest(self, test: unittest.TestCase) -> None:
        if self.watchdog is not None:
            self.watchdog.arm(test.id())
        super().startTest(test)

    def stopTest(self, test: unittest.TestCase) -> None:
        super().stopTest(test)
        if self.watchdog is not None:
            self.watchdog.disarm()
        support: Any = sys.modules["test.support"]
        # BaseTestCase.tearDown sets it when a test's threads outlive it by a second.
        if support.environment_altered:
            support.environment_altered = False
            self.env_changed.append(_key(test))


@dataclass
class Outcome:
    """What one mode's run came to."""

    mode: Mode
    ran: int = 0
    passed: int = 0
    skipped: int = 0  # by the tests' own conditions
    cannot_apply: int = 0  # listed, and failed as expected
    known_bugs: int = 0  # listed, and failed as expected
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"{self.mode.name}: {self.ran} tests: {self.passed} passed,"
            f" {self.cannot_apply} excluded (cannot apply), {self.known_bugs} known"
            f" HerdExecutor bugs, {self.skipped} skipped, {len(self.problems)} unexpected"
            f" ({self.seconds:.0f} s)"
        )


def _expected(outcome: Outcome, key: str) -> None:
    if key in outcome.mode.known_bugs:
        outcome.known_bugs += 1
    else:
        outcome.cannot_apply += 1


def run_mode(
    modules: list[types.ModuleType], mode: Mode, verbosity: int, watchdog: _Watchdog
) -> Outcome:
    """Run a mode's tests: in this process, then apart the ones that would deadlock."""
    outcome = Outcome(mode)
    print(f"\n=== {mode.name}: {mode.executor.__name__} ===")
    for title, table in (("cannot apply", mode.cannot_apply), ("known bug", mode.known_bugs)):
        for key, listed in sorted(table.items()):
            print(f"  {title}{' (runs apart)' if listed.hangs else ''}: {key}")
            print(f"      {listed.reason}")
    sys.stdout.flush()

    suite = unittest.TestSuite()
    found: set[str] = set()
    apart: list[str] = []
    for test in _thread_pool_tests(modules):
        key = _key(test)
        found.add(key)
        exclusion = mode.exclusion(key)
        if exclusion is not None:
            _mark(test, exclusion)
            if exclusion.hangs:
                apart.append(key)
        suite.addTest(test)
    missing = (set(mode.cannot_apply) | set(mode.known_bugs)) - found
    outcome.problems += [f"listed, but no such test: {key}" for key in sorted(missing)]

    _Result.watchdog = watchdog
    runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=verbosity, resultclass=_Result)
    started = time.monotonic()
    with _substituted(mode, os.getpid()):
        result = runner.run(suite)
        assert isinstance(result, _Result)
        print(f"Running {len(apart)} tests apart, {APART_TIMEOUT:.0f} s each at most:")
        apart_results = _run_apart(mode, apart)
    outcome.seconds = time.monotonic() - started

    outcome.ran = result.testsRun
    outcome.skipped = len(result.skipped) - len(apart)
    unexpected = result.failures + result.errors
    outcome.problems += [f"failed: {test.id()}" for test, _ in unexpected]
    outcome.problems += [f"passed, but is listed: {t.id()}" for t in result.unexpectedSuccesses]
    outcome.problems += [f"left threads behind: {key}" for key in result.env_changed]
    outcome.passed = (
        result.testsRun
        - len(result.skipped)
        - len(result.expectedFailures)
        - len(result.unexpectedSuccesses)
        - len({id(test) for test, _ in unexpected})
    )
    for test, _ in result.expectedFailures:
        _expected(outcome, _key(test))
    for key, passed in apart_results.items():
        if passed:
            outcome.problems.append(f"passed, but is listed: {key} (run apart)")
        else:
            _expected(outcome, key)
    return outcome


def _run_apart(mode: Mode, keys: list[str]) -> dict[str, bool]:
    """Run each test in a child of its own, all at once; say which ones passed.

    A child starts a session of its own, so that killing its group also kills the
    processes its test forked. Its output goes to a file, which never fills up as a pipe
    would, and is shown only if the test passed.
    """
    with contextlib.ExitStack() as stack:
        children: dict[str, tuple[subprocess.Popen[bytes], IO[bytes]]] = {}
        for key in keys:
            log = stack.enter_context(tempfile.TemporaryFile())
            child = subprocess.Popen(
                [sys.executable, __file__, "--mode", mode.name, "--apart", key, str(os.getpid())],
                # Not the hook's token: the child sets it up itself, as this process did.
                env={name: value for name, value in os.environ.items() if name != _ENV},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            stack.callback(_kill_group, child)
            children[key] = (child, log)
        deadline = time.monotonic() + APART_TIMEOUT
        passed: dict[str, bool] = {}
        for key, (child, output) in children.items():
            try:
                returncode = child.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                verdict = f"deadlocked (killed after {APART_TIMEOUT:.0f} s)"
            else:
                verdict = "failed" if returncode else "passed"
            passed[key] = verdict == "passed"
            print(f"  {key} ... {verdict}", flush=True)
            if passed[key]:
                output.seek(0)
                print(output.read().decode(errors="replace"))
        return passed


def _kill_group(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
    child.wait()


def _run_one(modules: list[types.ModuleType], mode: Mode, key: str, owner: int) -> int:
    """The child's side of _run_apart: run one test, unmarked, in the parent's mode.

    ``owner`` is the parent, whose ``.pth`` hook serves this child's own children.
    """
    suite = unittest.TestSuite(test for test in _thread_pool_tests(modules) if _key(test) == key)
    with _substituted(mode, owner):
        result = unittest.TextTestRunner(stream=sys.stdout, verbosity=2).run(suite)
    return 0 if result.wasSuccessful() and result.testsRun == 1 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--mode",
        action="append",
        choices=list(_MODES_BY_NAME),
        help="run only this mode (repeatable); every mode by default",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="name each test")
    parser.add_argument("--apart", nargs=2, metavar=("KEY", "OWNER"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    modes = [mode for mode in MODES if args.mode is None or mode.name in args.mode]
    modules = _import_modules()
    if args.apart:
        return _run_one(modules, modes[0], args.apart[0], int(args.apart[1]))

    # tox ends a run with SIGTERM: raise, so that the hook is removed on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    print(f"CPython {sys.version.split()[0]}, {PACKAGE}, resources: {', '.join(RESOURCES)}")
    outcomes: list[Outcome] = []
    with _child_hook() as hook:
        watchdog = _Watchdog(TEST_TIMEOUT, functools.partial(hook.unlink, missing_ok=True))
        for mode in modes:
            outcomes.append(run_mode(modules, mode, 2 if args.verbose else 1, watchdog))

    print("\n=== summary ===")
    for outcome in outcomes:
        print(outcome.summary())
        for problem in outcome.problems:
            print(f"  {problem}")
    return 1 if any(outcome.problems for outcome in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
