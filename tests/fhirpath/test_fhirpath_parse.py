"""Lexer and parser: tokens, literals, precedence, errors, and print/re-parse round trips."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medarchive.fhirpath import Date, DateTime, FhirPathError, Quantity, Time, parse
from medarchive.fhirpath.ast import (
    Binary,
    Call,
    EmptySet,
    Expr,
    Identifier,
    Index,
    Invalid,
    Literal,
    Member,
    Special,
    TypeOp,
    Unary,
    Variable,
    to_source,
)
from medarchive.fhirpath.lexer import tokenize


def test_tokens_carry_kind_value_and_position() -> None:
    toks = tokenize("Patient.name.where(use = 'official')")
    assert [(t.kind, t.value, t.pos) for t in toks[:3]] == [
        ("ident", "Patient", 0), ("op", ".", 7), ("ident", "name", 8)]
    assert toks[-1].kind == "eof"


def test_string_escapes_are_decoded() -> None:
    assert parse(r"'\\\/\f\r\n\t\"\`\'\u002a'") == Literal("\\/\f\r\n\t\"`'*")
    assert parse("'P\\u0065ter'") == Literal("Peter")


def test_comments_are_skipped() -> None:
    assert parse("2 + /* inline */ 2 // trailing") == Binary("+", Literal(2), Literal(2))


@pytest.mark.parametrize("text", ["2 + 2 /", "2 + 2 /* not finished", "'open", "`open",
                                  "Patient.", "(1 + 2", "1 +", "a b", "@2014-13",
                                  "@T25:00", "x.where(", "and", "1 2", "%", "$", "#"])
def test_syntax_errors_raise_fhirpath_error_with_position(text: str) -> None:
    with pytest.raises(FhirPathError) as info:
        parse(text)
    assert info.value.stage == "syntax"
    assert info.value.position is not None
    assert info.value.status == 400


def test_numbers_integers_decimals_and_longs() -> None:
    assert parse("42") == Literal(42)
    assert parse("3.14") == Literal(Decimal("3.14"))
    assert parse("7L") == Literal(7)
    assert parse("1.convertsToInteger()") == Call(Literal(1), "convertsToInteger", ())


def test_quantity_literals_with_ucum_and_calendar_units() -> None:
    assert parse("4.5 'mg'") == Literal(Quantity(Decimal("4.5"), "mg"))
    assert parse("10 '[lb_av]'") == Literal(Quantity(Decimal(10), "[lb_av]"))
    assert parse("4 days") == Literal(Quantity(Decimal(4), "days"))
    assert parse("1 week.toString()") == Call(Literal(Quantity(Decimal(1), "week")),
                                              "toString", ())


def test_date_time_literals_keep_their_precision() -> None:
    assert parse("@2014-01-25T14:30:14.559") == Literal(
        DateTime((2014, 1, 25, 14, 30, 14), 559, None))
    assert parse("@2014-01-25") == Literal(Date((2014, 1, 25)))
    assert parse("@2015T") == Literal(DateTime((2015,)))
    assert parse("@2015-02-04T14") == Literal(DateTime((2015, 2, 4, 14)))
    assert parse("@2017-11-05T01:30:00.0-04:00") == Literal(
        DateTime((2017, 11, 5, 1, 30, 0), 0, -240))
    assert parse("@T14:34:28.123") == Literal(Time((14, 34, 28), 123))
    # A Time with a timezone lexes, but evaluation rejects it (suite: invalid="execution").
    assert isinstance(parse("@T14:34:28Z"), Invalid)


def test_delimited_identifiers_and_variables() -> None:
    assert parse("`Patient`.name.`given`") == Member(
        Member(Identifier("Patient"), "name"), "given")
    assert parse("%`vs-administrative-gender`") == Variable("vs-administrative-gender")
    assert parse("%resource.id") == Member(Variable("resource"), "id")
    assert parse("$this.given") == Member(Special("this"), "given")


def test_keywords_are_members_after_a_dot() -> None:
    assert parse("text.div") == Member(Identifier("text"), "div")
    assert parse("expansion.repeat(contains)") == Call(
        Identifier("expansion"), "repeat", (Identifier("contains"),))


@pytest.mark.parametrize(("text", "tree"), [
    ("1 + 2 * 3", Binary("+", Literal(1), Binary("*", Literal(2), Literal(3)))),
    ("1 - 2 - 3", Binary("-", Binary("-", Literal(1), Literal(2)), Literal(3))),
    ("-1.convertsToInteger()", Unary("-", Call(Literal(1), "convertsToInteger", ()))),
    ("1 > 2 is Boolean", Binary(">", Literal(1), TypeOp("is", Literal(2), "Boolean"))),
    ("1 | 1 is Integer", Binary("|", Literal(1), TypeOp("is", Literal(1), "Integer"))),
    ("a and b or c", Binary("or", Binary("and", Identifier("a"), Identifier("b")),
                            Identifier("c"))),
    ("a implies b or c", Binary("implies", Identifier("a"),
                                Binary("or", Identifier("b"), Identifier("c")))),
    ("true and 'x' in y", Binary("and", Literal(True),
                                 Binary("in", Literal("x"), Identifier("y")))),
    ("a = b | c", Binary("=", Identifier("a"), Binary("|", Identifier("b"), Identifier("c")))),
    ("a < b = true", Binary("=", Binary("<", Identifier("a"), Identifier("b")),
                           Literal(True))),
    ("x as FHIR.Quantity", TypeOp("as", Identifier("x"), "FHIR.Quantity")),
    ("name[0].given", Member(Index(Identifier("name"), Literal(0)), "given")),
    ("'a' & 'b' + 'c'", Binary("+", Binary("&", Literal("a"), Literal("b")), Literal("c"))),
    ("6 div 4 mod 2", Binary("mod", Binary("div", Literal(6), Literal(4)), Literal(2))),
    ("{}", EmptySet()),
])
def test_operator_precedence(text: str, tree: Expr) -> None:
    assert parse(text) == tree


# -- property tests ------------------------------------------------------------------------

_NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True) | st.sampled_from(
    ["div", "and", "contains", "as", "true", "with space", "dash-ed", "back`tick"])
_TYPE_NAMES = st.lists(st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,6}", fullmatch=True),
                       min_size=1, max_size=2).map(".".join)
_DECIMALS = st.decimals(min_value=0, max_value=10**9, places=3, allow_nan=False,
                        allow_infinity=False)
_DATES = st.tuples(st.integers(1, 9999), st.integers(1, 12), st.integers(1, 28))
_LITERALS = st.one_of(
    st.booleans(), st.integers(0, 10**12), _DECIMALS, st.text(max_size=8),
    st.builds(Quantity, _DECIMALS, st.sampled_from(["mg", "[lb_av]", "days", "week", "1"])),
    _DATES.flatmap(lambda d: st.integers(1, 3).map(lambda n: Date(d[:n]))),
    st.builds(lambda d, n, tz: DateTime(
        d + (10, 30, 15)[:n], None, tz if n else None),
        _DATES, st.integers(0, 3), st.sampled_from([None, 0, 600, -300])),
    st.builds(lambda n, ms: Time((8, 15, 30)[:n], ms if n == 3 else None),
              st.integers(1, 3), st.sampled_from([None, 5])),
).map(Literal)
_LEAVES = st.one_of(_LITERALS, st.just(EmptySet()), _NAMES.map(Identifier),
                    _NAMES.map(Variable), st.sampled_from(["this", "index", "total"]).map(
                        Special))
_BINARY_OPS = st.sampled_from(["+", "-", "*", "/", "div", "mod", "&", "|", "=", "!=", "~",
                               "!~", "<", ">", "<=", ">=", "in", "contains", "and", "or",
                               "xor", "implies"])


def _extend(children: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
    return st.one_of(
        st.builds(Member, children, _NAMES),
        st.builds(Call, st.none() | children, _NAMES,
                  st.lists(children, max_size=3).map(tuple)),
        st.builds(Index, children, children),
        st.builds(Unary, st.sampled_from(["+", "-"]), children),
        st.builds(Binary, _BINARY_OPS, children, children),
        st.builds(TypeOp, st.sampled_from(["is", "as"]), children, _TYPE_NAMES),
    )


TREES = st.recursive(_LEAVES, _extend, max_leaves=12)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(TREES)
def test_printed_tree_parses_back_to_the_same_tree(tree: Expr) -> None:
    assert parse(to_source(tree)) == tree


@settings(max_examples=500)
@given(st.text(max_size=40))
def test_random_text_fails_only_with_fhirpath_error(text: str) -> None:
    try:
        parse(text)
    except FhirPathError as exc:
        assert exc.stage == "syntax"


_FRAGMENTS = st.sampled_from([
    "Patient", ".", "name", "(", ")", "[", "]", "{", "}", ",", "'x'", "`y`", "1", "2.5",
    "@2014-01", "@T10", "%resource", "$this", "+", "-", "*", "/", "|", "=", "!=", "~", "<",
    "and", "or", "implies", "is", "as", "div", "'mg'", "days", "where", "true", " ", "//",
    "/*", "*/", "\\", "@", "%", "$", "\n"])


@settings(max_examples=500)
@given(st.lists(_FRAGMENTS, max_size=25).map("".join))
def test_token_soup_fails_only_with_fhirpath_error(text: str) -> None:
    try:
        parse(text)
    except FhirPathError as exc:
        assert exc.stage == "syntax"


def test_deep_nesting_is_a_syntax_error_not_a_crash() -> None:
    with pytest.raises(FhirPathError):
        parse("(" * 5000 + "1" + ")" * 5000)
    with pytest.raises(FhirPathError):
        parse("-" * 5000 + "1")
