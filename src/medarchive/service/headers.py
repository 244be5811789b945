"""Parsing the request headers and format parameters the FHIR RESTful API gives meaning to.

ETags and If-Match (R4 §3.1.0.5 "Managing Resource Contention"), Prefer (§3.1.0.8 "return" and
Search §3.1.1.3 "handling"), ``_format``/Accept/Content-Type (§3.1.0.1.9 "Content Types and
encodings") and HTTP dates. They live in the service layer because batch entries carry the same
values (``ifMatch``, ``ifNoneExist``...) without any HTTP involved.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from medarchive.errors import BadRequest, FhirError, UnsupportedMediaType

FHIR_JSON = "application/fhir+json"
JSON_CONTENT = f"{FHIR_JSON}; charset=utf-8"
JSON_TYPES = frozenset({FHIR_JSON, "application/json", "json", "application/json+fhir",
                        "text/json"})
XML_TYPES = frozenset({"application/fhir+xml", "application/xml", "text/xml", "xml",
                       "application/xml+fhir"})
ANY_TYPES = frozenset({"*/*", "application/*"})
PREFER_RETURN = frozenset({"minimal", "representation", "OperationOutcome"})
_ETAG = re.compile(r'^\s*(?:W/)?"?\s*([0-9]{1,18})\s*"?\s*$')
_PREFER_ITEM = re.compile(r'\s*([A-Za-z][A-Za-z0-9_.-]*)\s*(?:=\s*("[^"]*"|[^;,\s]*))?\s*')


class NotAcceptable(FhirError):
    """The client asked for a response format this server cannot produce (406)."""

    status = 406
    code = "not-supported"


def parse_etag(text: str) -> int:
    """The version id in an ETag or If-Match value: ``W/"3"``, ``"3"`` or ``3`` (R4 §3.1.0.5)."""
    match = _ETAG.match(text)
    if not match:
        raise BadRequest(f"invalid ETag {text!r}: expected W/\"<version>\"")
    return int(match.group(1))


def parse_prefer(text: str) -> dict[str, str]:
    """The preferences of a Prefer header (RFC 7240) as name -> value ('' when valueless);
    several headers joined with commas are accepted, the first occurrence of a name wins."""
    found: dict[str, str] = {}
    for part in re.split(r"[,;]", text):
        if not part.strip():
            continue
        match = _PREFER_ITEM.fullmatch(part)
        if not match:
            raise BadRequest(f"invalid Prefer header {text!r}")
        name, value = match.group(1).lower(), match.group(2) or ""
        found.setdefault(name, value.strip('"'))
    return found


def prefer_return(text: str | None, default: str = "representation") -> str:
    """The ``return`` preference: minimal, representation or OperationOutcome (R4 §3.1.0.8)."""
    if not text:
        return default
    value = parse_prefer(text).get("return")
    if value is None:
        return default
    if value not in PREFER_RETURN:
        raise BadRequest(f"Prefer return={value!r}: expected minimal, representation or "
                         "OperationOutcome")
    return value


def prefer_strict(text: str | None) -> bool:
    """Whether ``Prefer: handling=strict`` was asked (R4 Search §3.1.1.3); lenient is default."""
    if not text:
        return False
    value = parse_prefer(text).get("handling", "lenient")
    if value not in ("strict", "lenient"):
        raise BadRequest(f"Prefer handling={value!r}: expected strict or lenient")
    return value == "strict"


def _media(text: str) -> str:
    return text.split(";", 1)[0].strip().lower()


def response_type(format_param: str | None, accept: str | None) -> str:
    """The Content-Type to answer with; 406 when only non-JSON formats are acceptable.

    ``_format`` overrides Accept (R4 §3.1.0.1.9); the answer is always FHIR JSON, labelled
    ``application/json`` when that is what the client named.
    """
    if format_param is not None:
        wanted = _media(format_param.replace(" ", "+"))
        if wanted in JSON_TYPES:
            return "application/json; charset=utf-8" if wanted == "application/json" \
                else JSON_CONTENT
        raise NotAcceptable(f"_format={format_param!r} is not supported: this server speaks "
                            "JSON only (application/fhir+json)")
    if not accept:
        return JSON_CONTENT
    plain_json = False
    for item in accept.split(","):
        media = _media(item)
        if media == FHIR_JSON or media in ANY_TYPES or media in JSON_TYPES:
            if media == "application/json":
                plain_json = True
                continue
            return JSON_CONTENT
    if plain_json:
        return "application/json; charset=utf-8"
    raise NotAcceptable(f"Accept {accept!r} names no format this server produces; it speaks "
                        "JSON only (application/fhir+json)")


def check_body_type(content_type: str | None, allowed: frozenset[str] = JSON_TYPES) -> str:
    """The media type of a request body, which must be one of ``allowed`` (else 415)."""
    media = _media(content_type or "")
    if not media:
        return FHIR_JSON
    if media in allowed:
        return media
    if media in XML_TYPES:
        raise UnsupportedMediaType(f"{media} is not supported: send application/fhir+json")
    raise UnsupportedMediaType(f"unsupported Content-Type {content_type!r}")


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(moment: datetime) -> str:
    """An HTTP-date (RFC 9110 §5.6.7, IMF-fixdate) for Last-Modified; on every read, so it is
    formatted directly rather than through ``email.utils``."""
    t = moment if moment.tzinfo is UTC else moment.astimezone(UTC)
    return (f"{_DAYS[t.weekday()]}, {t.day:02d} {_MONTHS[t.month - 1]} {t.year:04d} "
            f"{t.hour:02d}:{t.minute:02d}:{t.second:02d} GMT")


def parse_http_date(text: str) -> datetime | None:
    """An HTTP-date as an aware datetime, or None when unparseable (then the header is ignored,
    as RFC 9110 §13.1.3 asks)."""
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
