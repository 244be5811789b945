"""HL7 v2 escape sequences (§2.7): decoding, encoding, and their round trip."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medarchive.hl7v2 import Separators, escape, unescape

SEPS = Separators()


@pytest.mark.parametrize(("text", "expected"), [
    ("a\\F\\b", "a|b"),
    ("a\\S\\b", "a^b"),
    ("a\\T\\b", "a&b"),
    ("a\\R\\b", "a~b"),
    ("a\\E\\b", "a\\b"),
    ("\\X41\\", "A"),
    ("\\X0D0A\\", "\r\n"),
    ("caf\\XC3A9\\", "café"),
    ("line1\\.br\\line2", "line1\nline2"),
    ("a\\.sp2\\b", "a\n\nb"),
    ("a\\.in3\\b", "a   b"),
    ("a\\.sk\\b", "a b"),
    ("\\H\\bold\\N\\", "bold"),
    ("\\.fi\\x\\.nf\\", "x"),
    ("plain", "plain"),
    ("", ""),
])
def test_unescape(text: str, expected: str) -> None:
    assert unescape(text, SEPS) == expected


@pytest.mark.parametrize("text", [
    "\\Zlocal\\", "\\C2842\\", "\\M248442\\", "\\XZZ\\", "\\X4\\", "tail \\F", "\\.spx\\",
    "\\X00\\", "a\\X410042\\b",  # NUL is no text (it would reach FHIR strings)
])
def test_undecodable_sequences_are_kept_verbatim(text: str) -> None:
    assert unescape(text, SEPS) == text


def test_hex_bytes_not_valid_in_the_charset_are_read_as_latin1() -> None:
    assert unescape("\\XE9\\", SEPS, "utf-8") == "é"
    assert unescape("\\XE9\\", SEPS, "latin-1") == "é"


def test_non_default_delimiters() -> None:
    seps = Separators(field="#", component="$", repetition="*", escape="!", subcomponent="%")
    assert unescape("a!F!b!S!c!E!", seps) == "a#b$c!"
    assert escape("a#b$c!d", seps) == "a!F!b!S!c!E!d"


def test_truncation_character_escape() -> None:
    seps = Separators(truncation="#")
    assert unescape("1\\P\\2", seps) == "1#2"
    assert escape("1#2", seps) == "1\\P\\2"
    assert unescape("1\\P\\2", SEPS) == "1\\P\\2"


def test_escape_encodes_delimiters_and_controls() -> None:
    assert escape("A|B^C~D\\E&F\nG\x01") == "A\\F\\B\\S\\C\\R\\D\\E\\E\\T\\F\\.br\\G\\X01\\"


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                      blacklist_characters="\x00")))
def test_escape_then_unescape_is_identity(text: str) -> None:
    encoded = escape(text)
    assert not set(encoded) & set("|^~&\r\n")
    assert unescape(encoded, SEPS) == text


@given(st.text(max_size=40))
def test_unescape_never_raises(text: str) -> None:
    assert isinstance(unescape(text, SEPS), str)
