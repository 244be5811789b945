"""The row codec and the table digest: lossless, portable, order-independent."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medarchive.backup.codec import decode_rows, encode_rows, normalize, table_digest
from medarchive.backup.errors import BackupError

values = st.one_of(st.none(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
                   st.floats(allow_nan=False, allow_infinity=False), st.text(), st.binary())
rows = st.lists(st.lists(values, max_size=6), max_size=20)


@given(rows)
def test_rows_round_trip(data: list[list[object]]) -> None:
    assert decode_rows(encode_rows(data), "t") == data


@given(rows)
def test_digest_ignores_row_order(data: list[list[object]]) -> None:
    assert table_digest(data) == table_digest(list(reversed(data)))


def test_digest_sees_one_changed_value() -> None:
    assert table_digest([[1, b"a"], [2, b"b"]]) != table_digest([[1, b"a"], [2, b"c"]])


def test_booleans_and_buffers_encode_like_their_portable_form() -> None:
    assert normalize(True) == 1 and normalize(memoryview(b"x")) == b"x"
    assert table_digest([[True, memoryview(b"x")]]) == table_digest([[1, b"x"]])
    assert decode_rows(encode_rows([[True, memoryview(b"x")]]), "t") == [[1, b"x"]]


@given(rows)
def test_column_positions_give_the_same_chunk(data: list[list[object]]) -> None:
    width = max((len(row) for row in data), default=0)
    rectangular = [row + [None] * (width - len(row)) for row in data]
    binary = sorted({i for row in rectangular for i, v in enumerate(row)
                     if isinstance(v, bytes | bool)})
    assert decode_rows(encode_rows(rectangular, binary), "t") == decode_rows(
        encode_rows(rectangular), "t")


@pytest.mark.parametrize("blob", [b"", b"not zstd", encode_rows([[1]])[:-3]])
def test_damaged_chunk_is_a_clear_error(blob: bytes) -> None:
    with pytest.raises(BackupError, match="damaged"):
        decode_rows(blob, "x/chunk")
