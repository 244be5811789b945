"""Child process of ``test_bulk_crash``: ``medarchive import --bulk ARGS...``, the real command.

With ``KILL_AT_CHUNK=N`` it kills itself with SIGKILL inside the transaction of its N-th chunk,
after the chunk's resources and versions are written and before its index rows are: the worst
moment for a half-written chunk. Without it, it runs to the end (or until the test kills it).
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
from typing import Any

from medarchive.cli.main import main
from medarchive.store.sql import store

if __name__ == "__main__":
    kill_at = int(os.environ.get("KILL_AT_CHUNK", "0"))
    if kill_at:
        calls = itertools.count(1)
        insert_index = store.insert_index

        def dying(*args: Any) -> None:
            if next(calls) == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            insert_index(*args)

        store.insert_index = dying
    sys.argv = ["medarchive", "import", "--bulk", *sys.argv[1:]]
    main()
