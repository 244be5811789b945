"""Enough UCUM to compare and convert the quantities clinical data carries (N1 §2.1.20.7).

FHIRPath compares ``4.0 'g' = 4000 'mg'`` and ``185 '[lb_av]' < 100 'kg'`` by converting both
sides to base units. This module parses UCUM unit expressions (products, quotients, exponents,
prefixes, annotations, ``10*n``) into a factor and a dimension vector, using a table of the
common metric, time, customary (US/imperial) and clinical units. Units outside the table are
reported as unknown, which FHIRPath treats as "not comparable" (an empty result).
The two temperature scales with offsets (``Cel``, ``[degF]``) convert only on their own.
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache

Dims = tuple[tuple[str, int], ...]
Canonical = tuple[Decimal, Dims]

_PREFIXES = {
    "Y": Decimal("1e24"), "Z": Decimal("1e21"), "E": Decimal("1e18"), "P": Decimal("1e15"),
    "T": Decimal("1e12"), "G": Decimal("1e9"), "M": Decimal("1e6"), "k": Decimal("1e3"),
    "h": Decimal("1e2"), "da": Decimal("1e1"), "d": Decimal("1e-1"), "c": Decimal("1e-2"),
    "m": Decimal("1e-3"), "u": Decimal("1e-6"), "n": Decimal("1e-9"), "p": Decimal("1e-12"),
    "f": Decimal("1e-15"), "a": Decimal("1e-18"), "z": Decimal("1e-21"), "y": Decimal("1e-24"),
}
_BASE = {"m", "s", "g", "rad", "K", "C", "cd"}
# Arbitrary units: each is its own dimension, comparable only with itself.
_ARBITRARY = {"[iU]", "[arb'U]", "[USP'U]", "[CFU]", "[PFU]", "[FFU]", "[BAU]", "[AU]",
              "[Amb'a'1'U]", "[tb'U]", "[GPL'U]", "[MPL'U]", "[APL'U]", "[beth'U]",
              "[anti'Xa'U]", "[todd'U]", "[dye'U]", "[smgy'U]", "[bdsk'U]", "[ka'U]",
              "[knk'U]", "[mclg'U]", "[hp_X]", "[hp_C]", "[kp_X]", "[kp_C]"}
_SPECIAL = {"Cel", "[degF]"}

# code: (metric, factor, definition in other units)
_UNITS: dict[str, tuple[bool, str, str]] = {
    "1": (False, "1", ""),
    "%": (False, "0.01", ""), "[ppth]": (False, "1e-3", ""), "[ppm]": (False, "1e-6", ""),
    "[ppb]": (False, "1e-9", ""), "[pptr]": (False, "1e-12", ""),
    "[pi]": (False, "3.1415926535897932384626433832795028841971693993751058209749445923", ""),
    "mol": (True, "6.0221367e23", ""), "sr": (True, "1", "rad2"), "Hz": (True, "1", "s-1"),
    "N": (True, "1", "kg.m/s2"), "Pa": (True, "1", "N/m2"), "J": (True, "1", "N.m"),
    "W": (True, "1", "J/s"), "A": (True, "1", "C/s"), "V": (True, "1", "J/C"),
    "F": (True, "1", "C/V"), "Ohm": (True, "1", "V/A"), "S": (True, "1", "Ohm-1"),
    "Wb": (True, "1", "V.s"), "T": (True, "1", "Wb/m2"), "H": (True, "1", "Wb/A"),
    "lm": (True, "1", "cd.sr"), "lx": (True, "1", "lm/m2"), "Bq": (True, "1", "s-1"),
    "Gy": (True, "1", "J/kg"), "Sv": (True, "1", "J/kg"), "l": (True, "1", "dm3"),
    "L": (True, "1", "dm3"), "ar": (True, "100", "m2"), "t": (True, "1000", "kg"),
    "bar": (True, "1e5", "Pa"), "eV": (True, "1.60217733e-19", "J"),
    "cal": (True, "4.184", "J"), "[Cal]": (False, "1", "kcal"), "eq": (True, "1", "mol"),
    "osm": (True, "1", "mol"), "kat": (True, "1", "mol/s"), "U": (True, "1", "umol/min"),
    "g%": (True, "1", "g/dl"), "atm": (False, "101325", "Pa"),
    "m[Hg]": (True, "133.3220", "kPa"), "m[H2O]": (True, "9.80665", "kPa"),
    "[g]": (False, "9.80665", "m/s2"), "[lbf_av]": (False, "1", "[lb_av].[g]"),
    "[psi]": (False, "1", "[lbf_av]/[in_i]2"),
    "min": (False, "60", "s"), "h": (False, "3600", "s"), "d": (False, "86400", "s"),
    "wk": (False, "604800", "s"), "a_j": (False, "31557600", "s"), "a": (False, "31557600", "s"),
    "a_t": (False, "365.24219", "d"), "a_g": (False, "365.2425", "d"),
    "mo_j": (False, "2629800", "s"), "mo": (False, "2629800", "s"),
    "mo_g": (False, "30.436875", "d"), "mo_s": (False, "29.53059", "d"),
    "[in_i]": (False, "2.54", "cm"), "[ft_i]": (False, "12", "[in_i]"),
    "[yd_i]": (False, "3", "[ft_i]"), "[mi_i]": (False, "5280", "[ft_i]"),
    "[nmi_i]": (False, "1852", "m"), "[lb_av]": (False, "453.59237", "g"),
    "[oz_av]": (False, "0.0625", "[lb_av]"), "[gr]": (False, "64.79891", "mg"),
    "[ston_av]": (False, "14", "[lb_av]"), "[dr_av]": (False, "0.0625", "[oz_av]"),
    "[foz_us]": (False, "29.5735295625", "ml"), "[tsp_us]": (False, "4.92892159375", "ml"),
    "[tbs_us]": (False, "14.78676478125", "ml"), "[cup_us]": (False, "236.5882365", "ml"),
    "[pt_us]": (False, "473.176473", "ml"), "[qt_us]": (False, "946.352946", "ml"),
    "[gal_us]": (False, "3785.411784", "ml"), "[foz_br]": (False, "28.4130625", "ml"),
    "[pt_br]": (False, "568.26125", "ml"), "[gal_br]": (False, "4546.09", "ml"),
    "[drp]": (False, "0.05", "ml"), "deg": (False, "0.01745329251994329576923690768", "rad"),
    "gon": (False, "0.9", "deg"), "'": (False, "1", "deg/60"), "''": (False, "1", "'/60"),
    "[mesh_i]": (False, "1", "/[in_i]"), "[Ch]": (False, "1", "mm/3"),
    "[diop]": (False, "1", "/m"), "[hnsf'U]": (False, "1", "1"), "[mclg'U]": (False, "1", "1"),
    "[D'ag'U]": (False, "1", "1"), "[car_m]": (False, "0.2", "g"), "[car_Au]": (False, "1", "/24"),
    "Ao": (False, "0.1", "nm"), "b": (False, "1e-28", "m2"), "kn": (False, "1", "[nmi_i]/h"),
    "Ci": (True, "3.7e10", "Bq"), "R": (True, "2.58e-4", "C/kg"), "RAD": (True, "100", "erg/g"),
    "REM": (True, "1", "RAD"), "erg": (True, "1e-7", "J"), "dyn": (True, "1", "g.cm/s2"),
    "P": (True, "1", "dyn.s/cm2"), "St": (True, "1", "cm2/s"), "G": (True, "1e-4", "T"),
    "Mx": (True, "1e-8", "Wb"), "mho": (True, "1", "S"), "bit": (True, "1", "1"),
    "By": (True, "8", "bit"), "Bd": (True, "1", "/s"), "g.m-2": (True, "1", "g/m2"),
}


class _Parser:
    """Recursive-descent reader of a UCUM unit expression."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0

    def fail(self) -> None:
        raise ValueError(f"bad UCUM unit {self.text!r}")

    def parse(self) -> Canonical:
        if not self.text:
            return Decimal(1), ()
        if self.text.startswith("/"):
            self.i = 1
            factor, dims = self.term()
            result = (1 / factor, _scale(dims, -1))
        else:
            result = self.term()
        if self.i != len(self.text):
            self.fail()
        return result

    def term(self) -> Canonical:
        factor, dims = self.component()
        while self.i < len(self.text) and self.text[self.i] in "./":
            op = self.text[self.i]
            self.i += 1
            f2, d2 = self.component()
            if op == ".":
                factor, dims = factor * f2, _merge(dims, d2, 1)
            else:
                factor, dims = factor / f2, _merge(dims, d2, -1)
        return factor, dims

    def component(self) -> Canonical:
        text = self.text
        if self.i < len(text) and text[self.i] == "(":
            self.i += 1
            result = self.term()
            if self.i >= len(text) or text[self.i] != ")":
                self.fail()
            self.i += 1
            return result
        if self.i < len(text) and text[self.i] == "{":
            self._annotation()
            return Decimal(1), ()
        start = self.i
        if text.startswith(("10*", "10^"), start):
            self.i += 3
            exp = self._exponent()
            if exp is None:
                self.fail()
            assert exp is not None
            self._annotation()
            return Decimal(10) ** exp, ()
        if self.i < len(text) and text[self.i].isdigit():
            while self.i < len(text) and text[self.i].isdigit():
                self.i += 1
            value = Decimal(text[start:self.i])
            self._annotation()
            return value, ()
        while self.i < len(text):
            ch = text[self.i]
            if ch == "[":
                end = text.find("]", self.i)
                if end < 0:
                    self.fail()
                self.i = end + 1
                continue
            if ch in "./(){}" or ch.isdigit() or (ch in "+-" and self.i > start):
                break
            self.i += 1
        symbol = text[start:self.i]
        if not symbol:
            self.fail()
        exp = self._exponent()
        self._annotation()
        factor, dims = _atom(symbol)
        if exp is not None and exp != 1:
            factor, dims = factor ** exp, _scale(dims, exp)
        return factor, dims

    def _exponent(self) -> int | None:
        text = self.text
        start = self.i
        if self.i < len(text) and text[self.i] in "+-":
            self.i += 1
        digits = self.i
        while self.i < len(text) and text[self.i].isdigit():
            self.i += 1
        if self.i == digits:
            self.i = start
            return None
        return int(text[start:self.i])

    def _annotation(self) -> None:
        if self.i < len(self.text) and self.text[self.i] == "{":
            end = self.text.find("}", self.i)
            if end < 0:
                self.fail()
            self.i = end + 1


def _merge(a: Dims, b: Dims, sign: int) -> Dims:
    out = dict(a)
    for name, exp in b:
        out[name] = out.get(name, 0) + sign * exp
    return tuple(sorted((k, v) for k, v in out.items() if v))


def _scale(dims: Dims, exp: int) -> Dims:
    return tuple((k, v * exp) for k, v in dims)


def _atom(symbol: str) -> Canonical:
    found = _unit(symbol)
    if found is not None:
        return found
    for prefix in sorted(_PREFIXES, key=len, reverse=True):
        if symbol.startswith(prefix) and len(symbol) > len(prefix):
            rest = symbol[len(prefix):]
            if rest in _BASE or (rest in _UNITS and _UNITS[rest][0]):
                base = _unit(rest)
                if base is not None:
                    return _PREFIXES[prefix] * base[0], base[1]
    raise ValueError(f"unknown UCUM unit {symbol!r}")


@lru_cache(maxsize=512)
def _unit(symbol: str) -> Canonical | None:
    if symbol in _BASE:
        return Decimal(1), ((symbol, 1),)
    if symbol in _ARBITRARY:
        return Decimal(1), ((symbol, 1),)
    if symbol == "[IU]":
        return Decimal(1), (("[iU]", 1),)
    entry = _UNITS.get(symbol)
    if entry is None:
        return None
    _metric, factor, definition = entry
    if not definition:
        return Decimal(factor), ()
    base_factor, dims = _Parser(definition).parse()
    return Decimal(factor) * base_factor, dims


@lru_cache(maxsize=4096)
def canonical(unit: str) -> Canonical | None:
    """Factor and base dimensions of a UCUM unit; None for unknown or offset (Cel) units."""
    if unit in _SPECIAL:
        return None
    try:
        return _Parser(unit).parse()
    except (ValueError, ArithmeticError):
        return None


def is_valid(unit: str) -> bool:
    """Whether ``unit`` is a UCUM expression this module understands."""
    return unit in _SPECIAL or canonical(unit) is not None


def _to_kelvin(value: Decimal, unit: str) -> Decimal | None:
    if unit == "Cel":
        return value + Decimal("273.15")
    if unit == "[degF]":
        return (value + Decimal("459.67")) * 5 / 9
    if unit == "K":
        return value
    return None


def _from_kelvin(value: Decimal, unit: str) -> Decimal | None:
    if unit == "Cel":
        return value - Decimal("273.15")
    if unit == "[degF]":
        return value * 9 / 5 - Decimal("459.67")
    if unit == "K":
        return value
    return None


def convert(value: Decimal, source: str, target: str) -> Decimal | None:
    """``value`` in unit ``source`` expressed in unit ``target``; None if not commensurable."""
    if source == target:
        return value
    if source in _SPECIAL or target in _SPECIAL:
        kelvin = _to_kelvin(value, source)
        return None if kelvin is None else _from_kelvin(kelvin, target)
    a, b = canonical(source), canonical(target)
    if a is None or b is None or a[1] != b[1]:
        return None
    return value * a[0] / b[0]


def to_base(value: Decimal, unit: str) -> tuple[Decimal, Dims] | None:
    """``value`` expressed in base units, with the dimensions; None if the unit is unknown."""
    if unit in _SPECIAL:
        kelvin = _to_kelvin(value, unit)
        return None if kelvin is None else (kelvin, (("K", 1),))
    found = canonical(unit)
    if found is None:
        return None
    return value * found[0], found[1]
