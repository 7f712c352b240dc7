"""Small tools the tests share."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes; for states no event marks.

    The short sleep matters: a loop that spins on ``stats()`` would hold the herd's
    lock nearly all the time and starve the gophers of it.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True
