"""The HL7 v2 failures: what went wrong, where, and which acknowledgement it calls for.

An HL7 v2 error must be rendered twice: as an ACK with an ERR segment on the MLLP connection
(HL7 v2.5+ §2.15.5 ERR: location ERR-2, code ERR-3 from table 0357, severity ERR-4, user message
ERR-8) and as an OperationOutcome anywhere else. ``Hl7Error`` carries both views, so the domain
raises it once and each edge renders it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from medarchive.errors import BadRequest, Issue, Unprocessable

# HL7 table 0357 "Message error condition codes" (v2.5+), the codes this package raises.
ERROR_CODES: dict[int, str] = {
    0: "Message accepted",
    100: "Segment sequence error",
    101: "Required field missing",
    102: "Data type error",
    103: "Table value not found",
    200: "Unsupported message type",
    201: "Unsupported event code",
    202: "Unsupported processing id",
    203: "Unsupported version id",
    204: "Unknown key identifier",
    205: "Duplicate key identifier",
    206: "Application record locked",
    207: "Application internal error",
}

# OperationOutcome IssueType for each table 0357 code.
_ISSUE_TYPES = {100: "structure", 101: "required", 102: "value", 103: "code-invalid",
                200: "not-supported", 201: "not-supported", 202: "not-supported",
                203: "not-supported", 204: "not-found", 205: "duplicate"}


@dataclass(frozen=True, slots=True)
class Location:
    """Where in a message an error is: the ERL data type of ERR-2 (HL7 v2.5 §2.A.27).

    ``sequence`` is the occurrence of the segment (1 = first PID); ``field``, ``repetition``,
    ``component`` and ``subcomponent`` are 1-based, 0 meaning "the whole of it".
    """

    segment: str
    sequence: int = 1
    field: int = 0
    repetition: int = 0
    component: int = 0
    subcomponent: int = 0

    def __str__(self) -> str:
        """Render as ``PID-3[2].4.1``, the notation used in MappingResult.unmapped and docs."""
        text = self.segment if self.sequence <= 1 else f"{self.segment}[{self.sequence}]"
        if self.field:
            text += f"-{self.field}"
            if self.repetition > 1:
                text += f"[{self.repetition}]"
            if self.component:
                text += f".{self.component}"
                if self.subcomponent:
                    text += f".{self.subcomponent}"
        return text

    def parts(self) -> tuple[str, ...]:
        """The six ERL components, empty where unknown."""
        values = (self.sequence, self.field, self.repetition, self.component, self.subcomponent)
        return (self.segment, *(str(v) if v else "" for v in values))


class Hl7Error(Unprocessable):
    """A message that was read but cannot be accepted (AE) or will never be (AR).

    ``hl7_code`` is from HL7 table 0357, ``severity`` from table 0516 (E error, W warning,
    I information, F fatal) and ``ack_code`` the MSA-1 it calls for (AE or AR).
    """

    def __init__(self, message: str, *, hl7_code: int = 207, ack_code: str = "AE",
                 location: Location | None = None, severity: str = "E",
                 issues: Iterable[Issue] | None = None, status: int | None = None) -> None:
        if ack_code not in ("AE", "AR"):
            raise ValueError(f"an Hl7Error calls for AE or AR, not {ack_code!r}")
        self.hl7_code = hl7_code
        self.ack_code = ack_code
        self.location = location
        self.severity = severity
        self.user_message = message
        where = f" at {location}" if location else ""
        super().__init__(
            f"{message}{where}",
            issues=issues,
            status=status,
            code=_ISSUE_TYPES.get(hl7_code, "processing"),
            expression=(str(location),) if location else (),
        )

    @property
    def code_text(self) -> str:
        """The table 0357 text of ``hl7_code``."""
        return ERROR_CODES.get(self.hl7_code, "Application error")


class Hl7ParseError(BadRequest, Hl7Error):
    """Input that is not a readable HL7 v2 message (bad framing, MSH, delimiters or segments).

    Always calls for AR: sending the same bytes again cannot succeed.
    """

    def __init__(self, message: str, *, location: Location | None = None,
                 hl7_code: int = 100) -> None:
        Hl7Error.__init__(self, message, hl7_code=hl7_code, ack_code="AR", location=location,
                          status=400)
