"""The ``medarchive`` command line: one module per command group, rendered errors, progress bars."""
