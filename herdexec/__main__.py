"""``python -m herdexec``: the ``herdexec`` command."""

from ._main import main

raise SystemExit(main())
