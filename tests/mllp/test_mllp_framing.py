"""The MLLP frame codec: any chunking of a stream of frames decodes to the same messages."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medarchive.mllp.framing import FrameDecoder, FrameError, encode_frame

payload = st.binary(max_size=300).map(lambda b: b.replace(b"\x0b", b"").replace(b"\x1c", b""))


@given(st.lists(payload, max_size=8), st.lists(st.integers(1, 50), min_size=1, max_size=20))
def test_any_chunking_yields_the_messages_in_order(messages: list[bytes],
                                                   sizes: list[int]) -> None:
    stream = b"".join(encode_frame(m) for m in messages)
    decoder, out, pos, i = FrameDecoder(), [], 0, 0
    while pos < len(stream):
        size = sizes[i % len(sizes)]
        out += decoder.feed(stream[pos:pos + size])
        pos, i = pos + size, i + 1
    assert out == messages
    assert decoder.pending == 0


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash(noise: bytes) -> None:
    decoder = FrameDecoder(max_size=64)
    try:
        frames = decoder.feed(noise)
    except FrameError:
        return
    assert all(len(f) <= 64 for f in frames)


def test_noise_between_frames_is_skipped() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\r\n" + encode_frame(b"A") + b"junk" + encode_frame(b"B")) == [
        b"A", b"B"]
    assert decoder.skipped == 6


def test_trailer_split_between_reads() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\x0bMSH|x\x1c") == [b"MSH|x"]
    assert decoder.feed(b"\r\x0bMSH|y\x1c\r") == [b"MSH|y"]


def test_oversized_frame_raises() -> None:
    decoder = FrameDecoder(max_size=10)
    with pytest.raises(FrameError, match="larger than 10"):
        decoder.feed(b"\x0b" + b"x" * 11)
