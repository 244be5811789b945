"""Builders for the HL7 v2 tests: small hand-written messages and a hard time limit.

The messages are written for these tests (not copied from elsewhere); each builder returns ER7
text with CR segment endings, so a test can tweak a segment before parsing it.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

MSH = "MSH|^~\\&|LABAPP|CITYHOSP^1.2.840.99.1^ISO|ARCHIVE|MEDARCHIVE|{ts}||{type}|{ctrl}|P|{ver}"


def message(*segments: str, type_: str = "ADT^A01^ADT_A01", ctrl: str = "C1",
            ver: str = "2.5.1", ts: str = "20240102030405+0100") -> str:
    """An ER7 message: the MSH above followed by ``segments``, CR-terminated."""
    return "\r".join([MSH.format(ts=ts, type=type_, ctrl=ctrl, ver=ver), *segments]) + "\r"


PID = ("PID|1||12345^^^HOSP^MR~987654321^^^USSSA^SS||Doe&van&Doe&de&Smith^John^Quincy^Jr^Dr^"
       "MD^L^^^20200101&20301231^^^^PhD|Roe^Mary|19800315123000+0200|M|||"
       "12 Main St&Main St&12^Apt 4^Springfield^IL^62701^USA^H^^Sangamon|"
       "|^PRN^PH^^1^217^5551234^99~^NET^Internet^john@example.org|^WPN^CP^^^217^5559876|"
       "en^English^ISO639|M^Married^HL70002")
def seg(name: str, fields: dict[int, str]) -> str:
    """A segment with the given fields (1-based positions), the others empty."""
    last = max(fields, default=0)
    return "|".join([name, *(fields.get(n, "") for n in range(1, last + 1))])


PV1 = seg("PV1", {1: "1", 2: "I", 3: "WARD1^101^A^MAINHOSP",
                  7: "1234^Welby^Marcus^^^Dr^^^NPI&2.16.840.1.113883.4.6&ISO", 10: "MED",
                  14: "7", 19: "V100^^^HOSP^VN", 36: "01", 44: "20240101080000+0100",
                  45: "20240105120000+0100"})


def adt(trigger: str = "A01", *extra: str, pv1: str = PV1) -> str:
    return message("EVN|" + trigger + "|20240102030405", PID, pv1, *extra,
                   type_=f"ADT^{trigger}^ADT_A01")


class TimeLimitExceeded(Exception):
    """Raised inside the code under test when it runs longer than allowed."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block with TimeLimitExceeded after ``seconds`` (a hang becomes a failure)."""

    def expire(signum: int, frame: object) -> None:
        raise TimeLimitExceeded(f"took longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
