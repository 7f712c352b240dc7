"""Run one benchmark function in this fresh interpreter: ``_child.py module:function``,
keyword arguments as JSON on stdin, the result as JSON on the last line of stdout.

:func:`benchmarks._common.in_child` starts it.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    module, function = sys.argv[1].split(":")
    run = getattr(importlib.import_module(f"benchmarks.{module}"), function)
    result = run(**json.loads(sys.stdin.read() or "{}"))
    sys.stdout.write("\n" + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
