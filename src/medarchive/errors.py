"""The one error vocabulary of MedArchive.

Every failure anywhere in the system is a ``FhirError`` carrying an HTTP status and a FHIR
OperationOutcome (R4 §3.1.0.6 "Handling Errors"). Domain and service code raise them; each edge
renders them once: the HTTP layer as an OperationOutcome body, the CLI as a message and a
non-zero exit, the MLLP gateway as an ACK with ERR segments.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Issue:
    """One OperationOutcome.issue: severity, code (IssueType), human text and FHIRPath locations."""

    code: str
    diagnostics: str
    severity: str = "error"
    expression: tuple[str, ...] = ()

    def to_fhir(self) -> dict[str, Any]:
        issue: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            issue["expression"] = list(self.expression)
        return issue


def operation_outcome(issues: Iterable[Issue]) -> dict[str, Any]:
    """An OperationOutcome from issues; with none, a single 'informational' issue."""
    rendered = [issue.to_fhir() for issue in issues]
    if not rendered:
        rendered = [{"severity": "information", "code": "informational", "diagnostics": "All OK"}]
    return {"resourceType": "OperationOutcome", "issue": rendered}


class FhirError(Exception):
    """A failure with its HTTP status and the issues that explain it."""

    status = 500
    code = "exception"
    challenge: str | None = None  # a WWW-Authenticate value the response carries (RFC 6750)

    def __init__(self, message: str = "", *, issues: Iterable[Issue] | None = None,
                 status: int | None = None, code: str | None = None,
                 expression: Iterable[str] = ()) -> None:
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.issues: tuple[Issue, ...] = (
            tuple(issues) if issues is not None
            else (Issue(code=self.code, diagnostics=message, expression=tuple(expression)),)
        )
        super().__init__(message or "; ".join(i.diagnostics for i in self.issues))

    @property
    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


class BadRequest(FhirError):
    """The request itself is malformed: bad JSON, bad parameter syntax (400)."""

    status = 400
    code = "invalid"


class Unauthorized(FhirError):
    """No or invalid credentials (401)."""

    status = 401
    code = "login"


class Forbidden(FhirError):
    """Authenticated but not allowed (403)."""

    status = 403
    code = "forbidden"


class NotFound(FhirError):
    """Unknown resource type, id or version (404)."""

    status = 404
    code = "not-found"


class MethodNotAllowed(FhirError):
    """The interaction is not allowed on this path (405)."""

    status = 405
    code = "not-supported"


class Gone(FhirError):
    """The resource was deleted (410)."""

    status = 410
    code = "deleted"


class Conflict(FhirError):
    """A version conflict or a duplicate where one was not allowed (409)."""

    status = 409
    code = "conflict"


class PreconditionFailed(FhirError):
    """If-Match did not match, or a conditional interaction matched several resources (412)."""

    status = 412
    code = "conflict"


class PayloadTooLarge(FhirError):
    """The request exceeds a configured size limit (413)."""

    status = 413
    code = "too-costly"


class UnsupportedMediaType(FhirError):
    """The request body is in a format the server does not accept (415)."""

    status = 415
    code = "not-supported"


class Unprocessable(FhirError):
    """The resource is well-formed JSON but breaks FHIR rules (422)."""

    status = 422
    code = "processing"


class TooManyRequests(FhirError):
    """A rate limit was exceeded (429)."""

    status = 429
    code = "throttled"


class NotImplementedYet(FhirError):
    """The interaction or parameter exists in FHIR but this server does not support it (501)."""

    status = 501
    code = "not-supported"


class VersionConflict(Conflict):
    """Raised by a Store when a write was built on a version that is no longer current."""

    def __init__(self, resource_type: str, resource_id: str, expected: int,
                 actual: int | None) -> None:
        self.resource_type = resource_type
        self.resource_id = resource_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"{resource_type}/{resource_id}: expected version {expected or 'none'}, "
            f"current is {actual if actual is not None else 'none'}"
        )


class AlreadyApplied(Conflict):
    """Raised by a Store when a write's idempotency key was committed before."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"already applied: {key}")
