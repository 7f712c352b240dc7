"""herdexec: a herd of gophers at your service, as a ``concurrent.futures`` executor.

``HerdExecutor`` is a drop-in ``ThreadPoolExecutor`` whose herd can be resized while it
runs, whose ``submit`` waits for a gopher to take the work, and whose futures carry a
status, retries and a result. It ports the Go library gofherd.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ._backoff import ExponentialBackoff as ExponentialBackoff
from ._exceptions import BrokenHerd as BrokenHerd
from ._exceptions import Retry as Retry
from ._exceptions import WorkFailed as WorkFailed
from ._executor import HerdExecutor as HerdExecutor
from ._stats import HerdStats as HerdStats
from ._work import HerdFuture as HerdFuture
from ._work import Status as Status
from ._work import Work as Work

if TYPE_CHECKING:
    from ._control._server import ControlServer as ControlServer

__all__ = [
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
]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """Load the control plane (bottle, wsgiref) only when its class is asked for (PEP 562)."""
    if name == "ControlServer":
        from ._control._server import ControlServer  # noqa: PLC0415  (bottle when asked for)

        ControlServer.__module__ = "herdexec"
        globals()[name] = ControlServer
        return ControlServer
    raise AttributeError(f"module 'herdexec' has no attribute {name!r}")


# Reprs and tracebacks say herdexec.HerdExecutor, not herdexec._executor.HerdExecutor.
for _name in __all__:
    if _name in globals():
        globals()[_name].__module__ = "herdexec"
del _name

# A library stays silent unless the application configures logging.
logging.getLogger("herdexec").addHandler(logging.NullHandler())
