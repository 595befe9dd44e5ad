"""``python -m ricl``: the ``ricl`` command (for environments where it is not installed)."""

from ricl_apps.cli import main

main()
