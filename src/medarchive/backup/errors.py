"""The one error of the backup package: a backup that cannot be made, read or trusted.

It is a ValueError so the CLI renders it like any bad input: a clear message, exit status 1.
"""

from __future__ import annotations


class BackupError(ValueError):
    """A backup is missing, corrupted, truncated, tampered with or keyed differently; or a
    restore target is not acceptable."""
