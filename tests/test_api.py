"""The public surface: what herdexec exports, and how it presents itself."""

from __future__ import annotations

import concurrent.futures
import logging

import herdexec


def test_exported_names() -> None:
    assert herdexec.__all__ == sorted(herdexec.__all__)
    assert set(herdexec.__all__) == {
        "BrokenHerd",
        "ControlServer",
        "ExponentialBackoff",
        "HerdExecutor",
        "HerdFuture",
        "HerdStats",
        "Retry",
        "Status",
        "Work",
        "WorkFailed",
    }


def test_exports_say_herdexec() -> None:
    for name in herdexec.__all__:
        assert getattr(herdexec, name).__module__ == "herdexec", name


def test_stdlib_lineage() -> None:
    assert issubclass(herdexec.HerdExecutor, concurrent.futures.Executor)
    assert issubclass(herdexec.HerdFuture, concurrent.futures.Future)
    assert issubclass(herdexec.BrokenHerd, concurrent.futures.thread.BrokenThreadPool)


def test_library_logger_is_silent_by_default() -> None:
    handlers = logging.getLogger("herdexec").handlers
    assert any(isinstance(h, logging.NullHandler) for h in handlers)


def test_status_strings() -> None:
    assert [str(s) for s in herdexec.Status] == ["success", "retry", "failure"]
