"""HL7 v2 data types → FHIR: CX, EI, XPN, XAD, XTN, CE/CWE, TS/DTM, units, systems."""

from __future__ import annotations

from datetime import UTC
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hl7v2_builders import message

from medarchive.hl7v2 import MappingConfig, parse_message
from medarchive.hl7v2.mapping import common
from medarchive.hl7v2.mapping.context import Context, Node
from medarchive.hl7v2.mapping.units import to_ucum


def node(segment: str, field_no: int, rep: int = 1, config: MappingConfig | None = None,
         ) -> tuple[Context, Node]:
    msg = parse_message(message(segment))
    ctx = Context(msg, config or MappingConfig())
    ctx.mark_segment(msg.msh)  # only the field under test counts in unmapped()
    ctx.mark(msg.segment_list[1], 1)
    return ctx, ctx.node(msg.segment_list[1], field_no, rep)


# --- CX / EI / systems ----------------------------------------------------------------------


def test_cx_with_oid_assigning_authority() -> None:
    ctx, cx = node("PID|1||555^3^M10^&2.16.840.1.113883.19.5&ISO^MR^CITY&1.2.3&ISO^20200101^"
                   "20301231", 3)
    assert common.identifier(ctx, cx) == {
        "system": "urn:oid:2.16.840.1.113883.19.5", "value": "555",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                             "code": "MR"}]},
        "assigner": {"display": "CITY"},
        "period": {"start": "2020-01-01", "end": "2030-12-31"},
    }
    assert "PID-3.2" in ctx.unmapped() and "PID-3.3" in ctx.unmapped()  # check digit


@pytest.mark.parametrize(("hd", "system"), [
    ("HOSP", "urn:medarchive:hl7:aa:HOSP"),
    ("City Hospital", "urn:medarchive:hl7:aa:City%20Hospital"),
    ("2.16.840.1.113883.4.6", "urn:oid:2.16.840.1.113883.4.6"),
    ("&2.16.840.1&ISO", "urn:oid:2.16.840.1"),
    ("X&9.8&ISO", "urn:medarchive:hl7:aa:X"),  # 9.8 is no valid OID: namespace rule
    ("&f81d4fae-7dec-11d0-a765-00a0c91e6bf6&UUID",
     "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"),
    ("&http://example.org/mrn&URI", "http://example.org/mrn"),
    ("USSSA", "http://hl7.org/fhir/sid/us-ssn"),
    ("NPI", "http://hl7.org/fhir/sid/us-npi"),
])
def test_assigning_authority_default_rule(hd: str, system: str) -> None:
    ctx, cx = node(f"PID|1||1^^^{hd}", 3)
    ident = common.identifier(ctx, cx)
    assert ident is not None and ident["system"] == system


def test_configured_identifier_systems_win() -> None:
    config = MappingConfig(identifier_systems={"HOSP": "https://hosp.example/mrn",
                                               "1.2.3": "https://other.example/id"})
    ctx, cx = node("PID|1||1^^^HOSP", 3, config=config)
    assert common.identifier(ctx, cx)["system"] == "https://hosp.example/mrn"  # type: ignore[index]
    ctx, cx = node("PID|1||1^^^X&1.2.3&ISO", 3, config=config)
    assert common.identifier(ctx, cx)["system"] == "https://other.example/id"  # type: ignore[index]


def test_cx_without_authority_uses_the_fallback() -> None:
    ctx, cx = node("PID|1||77", 3)
    assert common.identifier(ctx, cx, fallback="urn:x") == {"system": "urn:x", "value": "77"}
    assert common.identifier(ctx, cx) == {"value": "77"}


def test_condition_escapes_search_special_characters() -> None:
    assert common.condition({"system": "urn:a", "value": "1|2,3$4\\5 6"}) == (
        "identifier=urn:a|1%5C%7C2%5C%2C3%5C%244%5C%5C5%206")
    assert common.condition({"value": "7"}) == "identifier=7"


# --- XPN ---------------------------------------------------------------------------------------


def test_xpn_with_all_components() -> None:
    ctx, xpn = node("PID|1||||Doe&van&Doe&de&Smith^John^Quincy^Jr^Dr^MD^L^A^^20200101&20301231"
                    "^G^^^PhD", 5)
    assert common.human_name(ctx, xpn) == {
        "use": "official",
        "family": "Doe",
        "_family": {"extension": [
            {"url": common.EXT + "humanname-own-prefix", "valueString": "van"},
            {"url": common.EXT + "humanname-own-name", "valueString": "Doe"},
            {"url": common.EXT + "humanname-partner-prefix", "valueString": "de"},
            {"url": common.EXT + "humanname-partner-name", "valueString": "Smith"}]},
        "given": ["John", "Quincy"],
        "prefix": ["Dr"],
        "suffix": ["Jr", "MD", "PhD"],
        "period": {"start": "2020-01-01", "end": "2030-12-31"},
    }
    # XPN-8 representation code and XPN-11 assembly order have no FHIR home: reported
    assert set(ctx.unmapped()) == {"PID-5.8", "PID-5.11"}


def test_xpn_effective_and_expiration_dates_and_unknown_use() -> None:
    ctx, xpn = node("PID|1||||Roe^Ann^^^^^ZZ^^^^^20100101^20151231", 5)
    name = common.human_name(ctx, xpn)
    assert name == {"family": "Roe", "given": ["Ann"],
                    "period": {"start": "2010-01-01", "end": "2015-12-31"}}
    assert "PID-5.7" in ctx.unmapped()  # an unknown name type is not guessed


def test_empty_xpn_gives_nothing() -> None:
    ctx, xpn = node("PID|1||||^^^^^^L", 5)
    assert common.human_name(ctx, xpn) is None


# --- XAD / XTN ---------------------------------------------------------------------------------


def test_xad() -> None:
    ctx, xad = node("PID|1||||||||||12 Elm St&Elm St&12^Flat 2^Ann Arbor^MI^48104^USA^M^^"
                    "Washtenaw^^^20000101&20101231", 11)
    assert common.address(ctx, xad) == {
        "type": "postal", "line": ["12 Elm St", "Flat 2"],
        "_line": [{"extension": [
            {"url": common.EXT + "iso21090-ADXP-streetName", "valueString": "Elm St"},
            {"url": common.EXT + "iso21090-ADXP-houseNumber", "valueString": "12"}]}, None],
        "city": "Ann Arbor", "state": "MI", "postalCode": "48104", "country": "USA",
        "district": "Washtenaw", "period": {"start": "2000-01-01", "end": "2010-12-31"},
    }
    assert ctx.unmapped() == ()


@pytest.mark.parametrize(("xtn", "default", "expected"), [
    ("^PRN^PH^^1^734^5551234^12", "home",
     {"system": "phone", "value": "+1 (734) 5551234 ext. 12", "use": "home"}),
    ("^WPN^CP^^^^5550000", None, {"system": "phone", "value": "5550000", "use": "mobile"}),
    ("^NET^Internet^a@b.org", "home", {"system": "email", "value": "a@b.org", "use": "home"}),
    ("^^FX^^^^^^^^^+15551112222", "work",
     {"system": "fax", "value": "+15551112222", "use": "work"}),
    ("(555)123-4567", "home", {"system": "phone", "value": "(555)123-4567", "use": "home"}),
    ("^BPN^BP^^^^12345", None, {"system": "pager", "value": "12345"}),
])
def test_xtn(xtn: str, default: str | None, expected: dict[str, Any]) -> None:
    ctx, node_ = node(f"PID|1||||||||||||{xtn}", 13)
    assert common.contact_point(ctx, node_, default) == expected


# --- CE / CWE ----------------------------------------------------------------------------------


def test_cwe_with_alternate_coding_version_and_original_text() -> None:
    ctx, cwe = node("OBX|1|CWE|8867-4^Heart rate^LN^HR^Pulse^99LOCAL^2.70^^Pulse rate", 3)
    assert common.concept(ctx, cwe) == {
        "coding": [
            {"system": "http://loinc.org", "version": "2.70", "code": "8867-4",
             "display": "Heart rate"},
            {"system": "urn:medarchive:hl7:cs:99LOCAL", "code": "HR", "display": "Pulse"}],
        "text": "Pulse rate",
    }


def test_cwe_coding_system_oid_and_hl7_tables() -> None:
    ctx, cwe = node("OBX|1|CWE|A^Abnormal^HL70078~X^^^^^^^^^^^^^1.2.3.4", 3)
    assert common.concept(ctx, cwe)["coding"][0]["system"] == (  # type: ignore[index]
        "http://terminology.hl7.org/CodeSystem/v2-0078")
    ctx, cwe = node("OBX|1|CWE|A^Abnormal^HL70078~X^^^^^^^^^^^^^1.2.3.4", 3, rep=2)
    assert common.concept(ctx, cwe) == {"coding": [{"system": "urn:oid:1.2.3.4", "code": "X"}]}


def test_concept_map_adds_a_translation() -> None:
    config = MappingConfig(concept_maps={("L", "GLU"): ("http://loinc.org", "2345-7",
                                                        "Glucose")})
    ctx, ce = node("OBX|1|CE|GLU^Glucose^L", 3, config=config)
    assert common.concept(ctx, ce)["coding"] == [  # type: ignore[index]
        {"system": "urn:medarchive:hl7:cs:L", "code": "GLU", "display": "Glucose"},
        {"system": "http://loinc.org", "code": "2345-7", "display": "Glucose"}]


def test_text_only_ce() -> None:
    ctx, ce = node("OBX|1|CE|^Free text only", 3)
    assert common.concept(ctx, ce) == {"text": "Free text only"}


# --- TS / DTM ----------------------------------------------------------------------------------

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(("value", "kind", "zone", "expected"), [
    ("2024", "dateTime", UTC, "2024"),
    ("202403", "dateTime", UTC, "2024-03"),
    ("20240315", "dateTime", UTC, "2024-03-15"),
    ("2024031514", "dateTime", UTC, "2024-03-15T14:00:00+00:00"),
    ("202403151430", "dateTime", UTC, "2024-03-15T14:30:00+00:00"),
    ("20240315143015.1234+0530", "dateTime", UTC, "2024-03-15T14:30:15.1234+05:30"),
    ("20240315143015-0800", "instant", UTC, "2024-03-15T14:30:15-08:00"),
    ("20240115120000", "dateTime", BERLIN, "2024-01-15T12:00:00+01:00"),
    ("20240715120000", "dateTime", BERLIN, "2024-07-15T12:00:00+02:00"),
    ("20240315", "instant", UTC, None),
    ("2024031514", "instant", UTC, None),
    ("20240315143015+0200", "date", UTC, "2024-03-15"),
    ("20241301", "dateTime", UTC, None),
    ("20240230", "dateTime", UTC, None),
    ("20240315143015+2500", "dateTime", UTC, None),
    ("20240315143015+0199", "dateTime", UTC, None),
    ("2024-03-15", "dateTime", UTC, None),
    ("", "dateTime", UTC, None),
])
def test_ts_to_fhir(value: str, kind: str, zone: Any, expected: str | None) -> None:
    assert common.convert_ts(value, zone, kind) == expected


def test_default_timezone_by_name() -> None:
    ctx, ts = node("OBX|1|TS|X^^L||20240715120000", 5,
                   config=MappingConfig(default_timezone="America/New_York"))
    assert common.ts(ctx, ts) == "2024-07-15T12:00:00-04:00"


def test_invalid_ts_stays_unmapped() -> None:
    ctx, ts = node("OBX|1|TS|X^^L||20241341", 5)
    assert common.ts(ctx, ts) is None
    assert "OBX-5" in ctx.unmapped()


# --- units -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "system", "ucum"), [
    ("mg/dL", "", "mg/dL"), ("mg/dl", "", "mg/dL"), ("beats/min", "ISO", "/min"),
    ("giga.l-1", "", "10*9/L"), ("tera.l-1", "ISO+", "10*12/L"), ("mmHg", "", "mm[Hg]"),
    ("{cells}/uL", "UCUM", "{cells}/uL"), ("%", "", "%"), ("lbs", "ANSI", "[lb_av]"),
    ("degF", "", "[degF]"), ("M", "", None), ("furlongs", "", None), ("", "UCUM", None),
])
def test_units_to_ucum(code: str, system: str, ucum: str | None) -> None:
    assert to_ucum(code, system) == ucum


def test_quantity_keeps_unknown_units_as_text_only() -> None:
    _ctx, units = node("OBX|1|NM|X^^L||5|furlongs^Furlongs^L", 6)
    assert common.quantity(5, units) == {"value": 5, "unit": "Furlongs"}
    _ctx, units = node("OBX|1|NM|X^^L||5|mg/dl", 6)
    assert common.quantity(5.5, units) == {"value": 5.5, "unit": "mg/dl",
                                           "system": "http://unitsofmeasure.org",
                                           "code": "mg/dL"}
