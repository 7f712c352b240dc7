"""herdexec: a herd of gophers at your service, as a ``concurrent.futures`` executor.

``HerdExecutor`` is a drop-in ``ThreadPoolExecutor`` whose herd can be resized while it
runs, whose ``submit`` waits for a gopher to take the work, and whose futures carry a
status, retries and a result. It ports the Go library gofherd.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ._exceptions import BrokenHerd as BrokenHerd
from ._exceptions import Retry as Retry
from ._exceptions import WorkFailed as WorkFailed
from ._executor import HerdExecutor as HerdExecutor
from ._work import HerdFuture as HerdFuture
from ._work import Status as Status
from ._work import Work as Work

if TYPE_CHECKING:
    from ._adapt import AIMD as AIMD
    from ._adapt import Gradient as Gradient
    from ._adapt import LimitEstimate as LimitEstimate
    from ._backoff import ExponentialBackoff as ExponentialBackoff
    from ._control._server import ControlServer as ControlServer
    from ._runners._dask import DaskRunner as DaskRunner
    from ._runners._process import ProcessRunner as ProcessRunner
    from ._runners._process import WorkerDied as WorkerDied
    from ._stats import HerdStats as HerdStats

__all__ = [
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
]

__version__ = "0.1.0"


# Loaded when first asked for (PEP 562): the control plane brings bottle and wsgiref,
# the runners multiprocessing (Dask itself waits until a DaskRunner is made), and the
# dataclasses (statistics, backoff, the adaptive algorithms) bring dataclasses and
# inspect, which would take a third of the import's time, though most programs never
# read a statistic nor build a backoff or an algorithm.
_LAZY = {
    "AIMD": "._adapt",
    "ControlServer": "._control._server",
    "DaskRunner": "._runners._dask",
    "ExponentialBackoff": "._backoff",
    "Gradient": "._adapt",
    "HerdStats": "._stats",
    "LimitEstimate": "._adapt",
    "ProcessRunner": "._runners._process",
    "WorkerDied": "._runners._process",
}


def __getattr__(name: str) -> Any:
    """Load a part only when one of its public names is asked for."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'herdexec' has no attribute {name!r}")
    import importlib  # noqa: PLC0415  (not loaded by the interpreter: a millisecond)

    value = getattr(importlib.import_module(module, __name__), name)
    value.__module__ = "herdexec"
    globals()[name] = value
    return value


# Reprs and tracebacks say herdexec.HerdExecutor, not herdexec._executor.HerdExecutor.
for _name in __all__:
    if _name in globals():
        globals()[_name].__module__ = "herdexec"
del _name

# A library stays silent unless the application configures logging.
logging.getLogger("herdexec").addHandler(logging.NullHandler())
