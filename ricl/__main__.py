"""``python -m ricl``: the ``ricl`` command (for environments where it is not installed)."""

from ricl.cli import main

main()
