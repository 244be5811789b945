"""Parses FHIRPath text into the syntax tree of ``ast.py`` (FHIRPath N1 grammar, §3 and §6).

A precedence-climbing (Pratt) parser over the tokens of ``lexer.py``. Operator precedence,
from loosest to tightest, follows N1 §6 "Operator precedence": ``implies``; ``or xor``;
``and``; ``in contains``; ``= ~ != !~``; ``< > <= >=``; ``|``; ``is as``; ``+ - &``;
``* / div mod``; unary ``+ -``; then ``.`` invocation and ``[]`` indexing. Every error is a
``FhirPathError`` with stage ``syntax`` and the offset of the offending token.
"""

from __future__ import annotations

from decimal import Decimal

from medarchive.fhirpath import ast
from medarchive.fhirpath.errors import FhirPathError
from medarchive.fhirpath.lexer import (
    DATETIME,
    DELIMITED,
    EOF,
    IDENT,
    LONG,
    NUMBER,
    OP,
    SPECIAL,
    STRING,
    TIME,
    VARIABLE,
    Token,
    tokenize,
)
from medarchive.fhirpath.values import CALENDAR_UNITS, Date, DateTime, Quantity, Time

# Binding power of each binary operator (higher binds tighter).
_BINARY = {
    "implies": 1, "or": 2, "xor": 2, "and": 3, "in": 4, "contains": 4,
    "=": 5, "~": 5, "!=": 5, "!~": 5, "<": 6, ">": 6, "<=": 6, ">=": 6,
    "|": 7, "is": 8, "as": 8, "+": 9, "-": 9, "&": 9, "*": 10, "/": 10, "div": 10, "mod": 10,
}
_WORD_OPERATORS = frozenset({"implies", "or", "xor", "and", "in", "contains", "is", "as",
                             "div", "mod"})
_UNARY_POWER = 11
_MAX_DEPTH = 200


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    def peek(self) -> Token:
        return self.tokens[self.i]

    def next(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def fail(self, message: str, tok: Token | None = None) -> FhirPathError:
        tok = tok or self.peek()
        return FhirPathError(message, position=tok.pos, expression=self.text, stage="syntax")

    def expect(self, symbol: str) -> Token:
        tok = self.next()
        if tok.kind != OP or tok.value != symbol:
            found = "end of expression" if tok.kind == EOF else repr(tok.value)
            raise self.fail(f"expected {symbol!r}, found {found}", tok)
        return tok

    def at_op(self, symbol: str) -> bool:
        tok = self.peek()
        return tok.kind == OP and tok.value == symbol

    def binary_op(self) -> str | None:
        tok = self.peek()
        if tok.kind == OP and tok.value in _BINARY:
            return tok.value
        if tok.kind == IDENT and tok.value in _WORD_OPERATORS:
            return tok.value
        return None

    def expression(self, min_power: int = 0) -> ast.Expr:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise self.fail("expression nests too deeply")
        left = self.unary()
        while True:
            op = self.binary_op()
            if op is None:
                break
            power = _BINARY[op]
            if power <= min_power:
                break
            self.next()
            if op in ("is", "as"):
                left = ast.TypeOp(op, left, self.type_specifier())
            else:
                left = ast.Binary(op, left, self.expression(power))
        self.depth -= 1
        return left

    def unary(self) -> ast.Expr:
        tok = self.peek()
        if tok.kind == OP and tok.value in ("+", "-"):
            self.next()
            self.depth += 1
            if self.depth > _MAX_DEPTH:
                raise self.fail("expression nests too deeply")
            operand = self.unary()
            self.depth -= 1
            return ast.Unary(tok.value, operand)
        return self.postfix(self.term())

    def postfix(self, expr: ast.Expr) -> ast.Expr:
        while True:
            tok = self.peek()
            if tok.kind != OP:
                return expr
            if tok.value == ".":
                self.next()
                expr = self.invocation(expr)
            elif tok.value == "[":
                self.next()
                index = self.expression()
                self.expect("]")
                expr = ast.Index(expr, index)
            else:
                return expr

    def identifier(self) -> str:
        tok = self.next()
        if tok.kind in (IDENT, DELIMITED):
            return tok.value
        raise self.fail("expected an identifier", tok)

    def invocation(self, target: ast.Expr | None) -> ast.Expr:
        tok = self.peek()
        if tok.kind == SPECIAL and target is not None:
            self.next()
            return ast.Special(tok.value)
        name = self.identifier()
        if self.at_op("("):
            return ast.Call(target, name, self.arguments())
        if target is None:
            return ast.Identifier(name)
        return ast.Member(target, name)

    def arguments(self) -> tuple[ast.Expr, ...]:
        self.expect("(")
        args: list[ast.Expr] = []
        if not self.at_op(")"):
            args.append(self.expression())
            while self.at_op(","):
                self.next()
                args.append(self.expression())
        self.expect(")")
        return tuple(args)

    def type_specifier(self) -> str:
        parts = [self.identifier()]
        while self.at_op(".") and self.tokens[self.i + 1].kind in (IDENT, DELIMITED):
            self.next()
            parts.append(self.identifier())
        return ".".join(parts)

    def term(self) -> ast.Expr:
        tok = self.peek()
        kind = tok.kind
        if kind == NUMBER:
            self.next()
            value: int | Decimal = Decimal(tok.value) if "." in tok.value else int(tok.value)
            unit = self.peek()
            if unit.kind == STRING:
                self.next()
                return ast.Literal(Quantity(Decimal(value), unit.value))
            if unit.kind == IDENT and unit.value in CALENDAR_UNITS:
                self.next()
                return ast.Literal(Quantity(Decimal(value), unit.value))
            return ast.Literal(value)
        if kind == LONG:
            self.next()
            return ast.Literal(int(tok.value))
        if kind == STRING:
            self.next()
            return ast.Literal(tok.value)
        if kind == DATETIME:
            self.next()
            return ast.Literal(self.date_literal(tok))
        if kind == TIME:
            self.next()
            if tok.value.endswith("Z") or "+" in tok.value or "-" in tok.value:
                return ast.Invalid("@T" + tok.value, "a Time literal cannot have a timezone")
            value_t = Time.parse(tok.value)
            if value_t is None:
                raise self.fail(f"invalid time @T{tok.value}", tok)
            return ast.Literal(value_t)
        if kind == VARIABLE:
            self.next()
            return ast.Variable(tok.value)
        if kind == SPECIAL:
            self.next()
            if tok.value not in ("this", "index", "total"):
                raise self.fail(f"unknown special variable ${tok.value}", tok)
            return ast.Special(tok.value)
        if kind == OP:
            if tok.value == "(":
                self.next()
                inner = self.expression()
                self.expect(")")
                return inner
            if tok.value == "{":
                self.next()
                self.expect("}")
                return ast.EmptySet()
        if kind == IDENT:
            if tok.value in ("true", "false"):
                self.next()
                return ast.Literal(tok.value == "true")
            if tok.value in ("and", "or", "xor", "implies", "div", "mod") \
                    and not (self.tokens[self.i + 1].kind == OP
                             and self.tokens[self.i + 1].value == "("):
                raise self.fail(f"expected an expression, found operator {tok.value!r}", tok)
            return self.invocation(None)
        if kind == DELIMITED:
            return self.invocation(None)
        if kind == EOF:
            raise self.fail("unexpected end of expression", tok)
        raise self.fail(f"unexpected {tok.value!r}", tok)

    def date_literal(self, tok: Token) -> Date | DateTime:
        text = tok.value
        if "T" not in text:
            if text.endswith("Z") or "+" in text or text.count("-") > 2:
                raise self.fail(f"invalid date @{text}", tok)
            value = Date.parse(text)
        else:
            value = DateTime.parse_literal(text)  # type: ignore[assignment]
        if value is None:
            raise self.fail(f"invalid date/time @{text}", tok)
        return value


def parse(text: str) -> ast.Expr:
    """Parse a FHIRPath expression into a syntax tree (FHIRPath N1 grammar)."""
    if not isinstance(text, str):
        raise FhirPathError("a FHIRPath expression must be text", stage="syntax")
    parser = _Parser(text)
    expr = parser.expression()
    tok = parser.peek()
    if tok.kind != EOF:
        raise parser.fail(f"unexpected {tok.value!r} after the end of the expression", tok)
    return expr
