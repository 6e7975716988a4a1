"""``python -m glasswork.cli``: the ``glasswork`` command."""

from . import main

raise SystemExit(main())
