"""The public HL7 v2 samples of ../shared/conformance/hl7v2 (FHIR-Converter, nHapi).

Every well-formed sample parses (multi-message files split first) to what index.json records;
every sample of a supported type maps to a transaction Bundle whose resources validate against
the R4 definitions and whose references stay inside the Bundle (or are conditional); every other
type is refused with an AR. Every malformed nHapi input ends in a controlled Hl7ParseError or
Hl7Error within two seconds.
"""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from medarchive.hl7v2 import (
    SUPPORTED,
    Hl7Error,
    Hl7ParseError,
    MappingConfig,
    Message,
    build_ack,
    map_message,
    parse_message,
    split_messages,
)

REPO = Path(__file__).resolve().parents[2]
HL7V2 = REPO / ".." / "shared" / "conformance" / "hl7v2"
INDEX = json.loads((HL7V2 / "index.json").read_text()) if (HL7V2 / "index.json").is_file() else {}
# Samples of a supported type that are refused on purpose (file → table 0357 code); see
# docs/ingestion.md "Known refusals".
EXPECTED_AE = {"fhir-converter/MDM-T02-01.hl7": 101}  # T02 whose only ED carries no data
_REFERENCE = re.compile(r"[A-Z][A-Za-z]+\?[a-z_-]+=\S+")
_NOW = datetime(2024, 1, 1, tzinfo=UTC)


def _cases(*groups: str) -> list[dict[str, Any]]:
    return [case for group in groups for case in INDEX.get(group, [])]


def _id(case: dict[str, Any]) -> str:
    return str(case["file"])


@pytest.fixture(scope="module")
def hl7v2(conformance: Path) -> Path:
    folder = conformance / "hl7v2"
    if not (folder / "index.json").is_file():
        pytest.fail(f"{folder}/index.json is missing")
    return folder


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"took longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _references(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "reference" and isinstance(item, str):
                yield item
            else:
                yield from _references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)


def check_bundle(bundle: dict[str, Any]) -> None:
    """Structural soundness of a mapped transaction Bundle, validator or not."""
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
    entries = bundle["entry"]
    assert entries, "an empty Bundle"
    full_urls = [e["fullUrl"] for e in entries]
    assert len(set(full_urls)) == len(full_urls), "duplicate fullUrl"
    for entry in entries:
        resource, request = entry["resource"], entry["request"]
        kind = resource["resourceType"]
        assert entry["fullUrl"].startswith("urn:uuid:")
        assert "id" not in resource
        assert request["method"] in ("POST", "PUT")
        if request["method"] == "PUT":
            assert request["url"].startswith(f"{kind}?identifier="), request
        else:
            assert request["url"] == kind
            assert request.get("ifNoneExist", "identifier=").startswith("identifier=")
        for reference in _references(resource):
            assert reference in full_urls or _REFERENCE.fullmatch(reference), reference


@pytest.mark.parametrize("case", _cases("fhir-converter", "nhapi/valid"), ids=_id)
def test_sample_parses_and_maps(hl7v2: Path, case: dict[str, Any]) -> None:
    validate = pytest.importorskip("medarchive.fhir.validate").validate_resource
    parts = split_messages((hl7v2 / case["file"]).read_bytes())
    assert len(parts) == case["messages"]
    for part, header in zip(parts, case["msh"], strict=True):
        message = parse_message(part)
        assert message.msh.field_text(9) == header["type"]
        assert message.control_id == header["controlId"]
        assert message.version == header["version"]
        assert parse_message(message.raw).raw == message.raw
        kind = (message.message_type, message.trigger)
        if kind[0] in SUPPORTED and kind[1] in SUPPORTED[kind[0]][0]:
            if case["file"] in EXPECTED_AE:
                with pytest.raises(Hl7Error) as caught:
                    map_message(message, MappingConfig())
                assert (caught.value.ack_code, caught.value.hl7_code) == (
                    "AE", EXPECTED_AE[case["file"]])
                continue
            result = map_message(message, MappingConfig())
            check_bundle(result.bundle)
            assert result.patient_identifiers
            issues = [(e["resource"]["resourceType"], i.diagnostics, i.expression)
                      for e in result.bundle["entry"] for i in validate(e["resource"])
                      if i.severity in ("error", "fatal")]
            assert not issues, issues[:5]
            assert not [i for i in validate(result.bundle) if i.severity in ("error", "fatal")]
            assert all(isinstance(u, str) and "-" in u for u in result.unmapped)
        else:
            with pytest.raises(Hl7Error) as caught:
                map_message(message, MappingConfig())
            assert caught.value.ack_code == "AR"
            assert caught.value.hl7_code == (201 if kind[0] in SUPPORTED else 200)
            ack = parse_message(build_ack(message, "AR", error=caught.value,
                                          now=_NOW, control_id="T"))
            err = ack.segment("ERR")
            assert err is not None and err.value(3) == str(caught.value.hl7_code)


@pytest.mark.parametrize("case", _cases("nhapi/bad-inputs"), ids=_id)
def test_bad_input_ends_in_a_controlled_error(hl7v2: Path, case: dict[str, Any]) -> None:
    data = (hl7v2 / case["file"]).read_bytes()
    assert len(data) == case["bytes"]
    started = time.perf_counter()
    with time_limit(2.0):
        try:
            message = parse_message(data)
            map_message(message, MappingConfig())
        except (Hl7ParseError, Hl7Error) as exc:
            assert str(exc)
    assert time.perf_counter() - started < 2.0


def test_index_lists_every_sample(hl7v2: Path) -> None:
    listed = {c["file"] for c in _cases("fhir-converter", "nhapi/valid", "nhapi/bad-inputs")}
    on_disk = {str(p.relative_to(hl7v2)) for p in hl7v2.rglob("*.hl7")}
    assert listed == on_disk
    assert len(_cases("fhir-converter")) == 139 and len(_cases("nhapi/bad-inputs")) == 37



def test_every_sample_through_the_gateway_and_store(hl7v2: Path, sql_url: str) -> None:
    """End to end on SQLite and PostgreSQL (``app.build_gateway``): every message of a
    supported type is acknowledged AA and stored (the pinned AE excepted), every other type AR,
    every malformed input refused (AR/AE) with an ERR segment and nothing written, and kept as
    a dead letter whose bytes are exactly those received (NUL bytes included, which PostgreSQL
    text cannot hold); each outcome is in the message log."""
    from medarchive.app import build_gateway
    from medarchive.settings import Settings

    gateway, services = build_gateway(Settings(database_url=sql_url, auth="off"))
    store = services.store
    try:
        problems, handled = [], 0
        applied = 0
        for case in _cases("fhir-converter", "nhapi/valid"):
            for part in split_messages((hl7v2 / case["file"]).read_bytes()):
                message = parse_message(_unique_control_id(parse_message(part), handled))
                kind = (message.message_type, message.trigger)
                supported = kind[0] in SUPPORTED and kind[1] in SUPPORTED[kind[0]][0]
                wanted = ("AE" if case["file"] in EXPECTED_AE else "AA") if supported else "AR"
                before = store.last_seq()
                outcome = gateway.handle(message.raw.encode(message.charset))
                handled += 1
                applied += outcome.code == "AA"
                if outcome.code != wanted or outcome.duplicate \
                        or (store.last_seq() > before) != (wanted == "AA"):
                    entry = gateway.log.get(outcome.log_id)
                    problems.append((case["file"], outcome.code, entry.error if entry else ""))
        for case in _cases("nhapi/bad-inputs"):
            before = store.last_seq()
            data = (hl7v2 / case["file"]).read_bytes()
            outcome = gateway.handle(data)
            handled += 1
            dead = gateway.log.get(outcome.log_id)
            ack = parse_message(outcome.ack_bytes()) if outcome.ack else None
            if outcome.code not in ("AR", "AE") or store.last_seq() != before \
                    or ack is None or ack.segment("ERR") is None \
                    or dead is None or dead.status != "dead" or dead.message_bytes() != data:
                problems.append((case["file"], outcome.code, "written, unlogged or no ERR"))
        assert not problems, problems[:5]
        assert applied >= 70
        assert len(gateway.log.entries(limit=10_000)) == handled
    finally:
        gateway.close()
        services.close()


def _unique_control_id(message: Message, number: int) -> str:
    """The message with ``-number`` appended to MSH-10: samples reuse control ids, and the
    gateway would rightly take a reused one as a redelivery."""
    head, _, rest = message.raw.partition("\r")
    fields = head.split(message.separators.field)
    fields[9] = f"{fields[9]}-{number}"
    return message.separators.field.join(fields) + "\r" + rest
