"""Messages, the archive handle and the frame exchange shared by the MLLP tests (written
for these tests)."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from medarchive.app import Services
from medarchive.mllp.framing import FrameDecoder, encode_frame
from medarchive.mllp.gateway import Gateway
from medarchive.mllp.log import MessageLog

MSH = ("MSH|^~\\&|{app}|CITYHOSP|ARCHIVE|MEDARCHIVE|20240102030405+0100||ADT^A01^ADT_A01|"
       "{ctrl}|P|2.5.1{extra}")


def adt(ctrl: str, mrn: str = "12345", family: str = "Doe", *, app: str = "HIS",
        extra: str = "") -> str:
    """A small ADT^A01 written for these tests, CR segment endings."""
    return "\r".join([
        MSH.format(app=app, ctrl=ctrl, extra=extra),
        "EVN|A01|20240102030405",
        f"PID|1||{mrn}^^^HOSP^MR||{family}^John||19800315|M",
        "PV1|1|I|WARD1^101^A",
    ]) + "\r"


@dataclass
class Archive:
    services: Services
    log: MessageLog
    gateway: Gateway

    def versions(self, resource_type: str) -> list[tuple[str, int]]:
        """(id, version) of every stored version of ``resource_type``, in write order."""
        return [(v.id, v.version_id) for v in self.services.store.changes(0, 100_000)
                if v.resource_type == resource_type]


def exchange(sock: socket.socket, data: bytes | str) -> bytes:
    """Send one framed message on ``sock`` and return the content of the framed answer."""
    sock.sendall(encode_frame(data))
    decoder, frames = FrameDecoder(), []
    while not frames:
        chunk = sock.recv(65536)
        assert chunk, "connection closed without an ACK"
        frames = decoder.feed(chunk)
    return frames[0]
