"""``python -m dasktune``: the ``dasktune`` command."""

from dasktune.cli import main

raise SystemExit(main())
