"""The AuditEvents of commands that take data out of the record: ``export``, ``views run`` and
``warehouse build`` (issue 4: every export is audited, like the HTTP ``$export``).

They fail closed: the command records its event (action R, subtype export, actor
``cli:<os user>``, what it exported in ``entity.description``) before the data is released (the
export's files renamed from ``.partial``, a view's first row written, the warehouse built), and
stops with an error when the event cannot be written. A run that fails afterwards records a
second event with outcome 4 or 8. With authentication off (``MEDARCHIVE_AUTH=off``, development
only) nothing is audited, as for every other interaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from medarchive.cli.users import cli_actor, refusal_status
from medarchive.errors import FhirError


def record(services: Any, detail: str, what: str, status: int = 200) -> None:
    """Append one export AuditEvent durably; raises when it cannot be written."""
    if services is None or services.security is None:
        return
    from medarchive.security.audit_events import audit_event
    trail = services.security.trail
    trail.record(audit_event(cli_actor(), "export", trail.now(), status=status, detail=detail,
                             query=what))


def failure_status(exc: BaseException) -> int:
    """4xx for a refused request (bad option, unknown type or view), 500 for anything else."""
    return refusal_status(exc) if isinstance(exc, (FhirError, ValueError)) else 500


@contextmanager
def exporting(services: Any, detail: str, what: str) -> Iterator[None]:
    """Record the export before the block releases its data; if the block fails, record the
    failure (outcome 4 for a refused request, 8 for anything else) and re-raise."""
    record(services, detail, what)
    try:
        yield
    except Exception as exc:
        record(services, f"{detail} failed: {exc}", what, failure_status(exc))
        raise
