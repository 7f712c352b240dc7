"""``python -m herdexec``: the ``herdexec`` command."""

from ._cli._main import main

raise SystemExit(main())
