"""The MLLP frame codec: <VT> message <FS><CR> (HL7 v2.8 Appendix C, MLLP release 2 §C.4.3).

Why a codec of our own: the frame is three bytes, but a listener facing other hospitals' systems
must survive garbage between frames, split and coalesced TCP reads, and senders that never send
the trailer. ``FrameDecoder`` is incremental (feed any chunk, get whole messages back) and
bounded (a frame larger than ``max_size`` raises instead of growing memory without limit).
"""

from __future__ import annotations

from dataclasses import dataclass, field

START = b"\x0b"
END = b"\x1c\x0d"
_FS = 0x1C


class FrameError(ValueError):
    """The byte stream cannot be framed (a message larger than allowed)."""


def encode_frame(message: bytes | str) -> bytes:
    """Wrap one message in an MLLP block (HL7 v2.8 Appendix C §C.4.3 block format)."""
    data = message.encode("utf-8") if isinstance(message, str) else message
    return START + data + END


@dataclass
class FrameDecoder:
    """Incremental MLLP decoder; bytes outside a block (noise, keep-alive newlines) are dropped.

    ``feed`` returns every message completed by the chunk, in order. ``skipped`` counts
    bytes dropped outside blocks, for the connection log.
    """

    max_size: int = 16 * 1024 * 1024
    skipped: int = 0
    _buffer: bytearray = field(default_factory=bytearray, repr=False)
    _inside: bool = False

    def feed(self, chunk: bytes) -> list[bytes]:
        """Add ``chunk`` and return the messages it completes (MLLP release 2 §C.4.3)."""
        frames: list[bytes] = []
        data = memoryview(chunk)
        pos = 0
        while pos < len(data):
            if not self._inside:
                start = chunk.find(START, pos)
                if start < 0:
                    self.skipped += len(data) - pos
                    return frames
                self.skipped += start - pos
                pos = start + 1
                self._inside = True
                self._buffer.clear()
                continue
            end = chunk.find(b"\x1c", pos)
            if end < 0:
                self._append(data[pos:])
                return frames
            self._append(data[pos:end])
            pos = end + 1
            # <FS> must be followed by <CR>; the CR may arrive in the next read.
            if pos < len(data) and data[pos] == 0x0D:
                pos += 1
            elif pos >= len(data):
                # keep the FS pending: mark by appending and checking next feed
                self._buffer.append(_FS)
                return self._pending_fs(frames)
            frames.append(bytes(self._buffer))
            self._buffer.clear()
            self._inside = False
        return frames

    def _pending_fs(self, frames: list[bytes]) -> list[bytes]:
        # A trailing FS at the end of a read: accept it as the end of the block (some senders
        # omit the CR) but let a following CR be dropped as noise.
        self._buffer.pop()
        frames.append(bytes(self._buffer))
        self._buffer.clear()
        self._inside = False
        return frames

    def _append(self, part: memoryview) -> None:
        if len(self._buffer) + len(part) > self.max_size:
            self._buffer.clear()
            self._inside = False
            raise FrameError(f"MLLP message larger than {self.max_size} bytes")
        self._buffer += part

    @property
    def pending(self) -> int:
        """Bytes of an unfinished block held in the buffer."""
        return len(self._buffer) if self._inside else 0
