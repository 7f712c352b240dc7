"""The public surface: what herdexec exports, and how it presents itself."""

from __future__ import annotations

import concurrent.futures
import logging
import subprocess
import sys

import herdexec


def test_exported_names() -> None:
    assert herdexec.__all__ == sorted(herdexec.__all__)
    assert set(herdexec.__all__) == {
        "AIMD",
        "BrokenHerd",
        "ControlServer",
        "DaskRunner",
        "ExponentialBackoff",
        "Gradient",
        "HerdExecutor",
        "HerdFuture",
        "HerdStats",
        "LimitEstimate",
        "ProcessRunner",
        "Retry",
        "Status",
        "Work",
        "WorkFailed",
        "WorkerDied",
    }


def test_exports_say_herdexec() -> None:
    for name in herdexec.__all__:
        assert getattr(herdexec, name).__module__ == "herdexec", name


def test_stdlib_lineage() -> None:
    assert issubclass(herdexec.HerdExecutor, concurrent.futures.Executor)
    assert issubclass(herdexec.HerdFuture, concurrent.futures.Future)
    assert issubclass(herdexec.BrokenHerd, concurrent.futures.thread.BrokenThreadPool)
    assert issubclass(herdexec.WorkerDied, concurrent.futures.process.BrokenProcessPool)


def test_library_logger_is_silent_by_default() -> None:
    handlers = logging.getLogger("herdexec").handlers
    assert any(isinstance(h, logging.NullHandler) for h in handlers)


def test_status_strings() -> None:
    assert [str(s) for s in herdexec.Status] == ["success", "retry", "failure"]


def printed_by_a_fresh_interpreter(code: str) -> list[str]:
    """The lines ``code`` prints in an interpreter of its own, where nothing the tests
    loaded into this one is loaded yet."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.split("\n")


def test_import_loads_no_optional_part() -> None:
    code = (
        "import sys, herdexec\n"
        "heavy = {'prometheus_client', 'bottle', 'wsgiref.simple_server', 'http.server',"
        " 'multiprocessing', 'dask', 'distributed'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
        "herdexec.HerdExecutor(1, registry=None).shutdown()\n"
        "print(sorted(heavy & set(sys.modules)))\n"
        "herdexec.HerdExecutor(1).shutdown()\n"
        "print('prometheus_client' in sys.modules, 'bottle' in sys.modules)\n"
    )
    out = printed_by_a_fresh_interpreter(code)
    assert out[:3] == ["[]", "[]", "True False"]


def test_import_leaves_dataclasses_for_later() -> None:
    # dataclasses, and the inspect it loads, took a third of the import's time, and the
    # adaptive algorithms' statistics another tenth.
    code = (
        "import sys, herdexec\n"
        "print(sorted({'dataclasses', 'statistics'} & set(sys.modules)))\n"
        "with herdexec.HerdExecutor(1, registry=None) as herd:\n"
        "    print(herd.stats().submitted, type(herd.stats()) is herdexec.HerdStats)\n"
        "print(sorted({'dataclasses', 'statistics'} & set(sys.modules)))\n"
        "print(herdexec.ExponentialBackoff(jitter=0).delay(2, 0.5))\n"
        "with herdexec.HerdExecutor(adapt=herdexec.AIMD(max_size=4), registry=None) as herd:\n"
        "    print(herd.adapting, 'statistics' in sys.modules)\n"
    )
    out = printed_by_a_fresh_interpreter(code)
    assert out == ["[]", "0 True", "['dataclasses']", "0.2", "True True", ""]


def test_control_server_loads_on_first_use() -> None:
    code = (
        "import sys, herdexec\n"
        "assert 'bottle' not in sys.modules\n"
        "from herdexec import ControlServer\n"
        "print(ControlServer.__module__, ControlServer is herdexec.ControlServer)\n"
        "import inspect\n"
        "print(inspect.signature(herdexec.HerdExecutor).parameters['registry'].default)\n"
    )
    out = printed_by_a_fresh_interpreter(code)
    assert out[:2] == ["herdexec True", "prometheus_client.REGISTRY"]


def test_dask_runner_without_the_extra_names_it() -> None:
    # A fresh interpreter in which dask and distributed cannot be imported.
    code = (
        "import sys\n"
        "sys.modules['distributed'] = None\n"
        "sys.modules['dask'] = None\n"
        "import herdexec\n"
        "try:\n"
        "    herdexec.DaskRunner('tcp://127.0.0.1:8786')\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "DaskRunner needs dask.distributed: pip install 'herdexec[dask]'\n"
