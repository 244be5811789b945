"""Which senders the MLLP listener accepts: the ``mllp_allowed_senders`` allow-list.

MLLP has no authentication of its own (HL7 v2.8 Appendix C leaves it to the network), and
anyone who reaches the port could create, overwrite or merge patients. The allow-list names the
interfaces a site expects: sending application and facility pairs (``MSH-3^MSH-4``, each side
``*`` for any) and/or source networks (``10.1.0.0/16``, ``192.0.2.7``). Each kind that is
listed must match: with both, a message must come from a listed network AND name a listed
pair. A message that does not match is refused with AR and an ERR (table 0357 code 207, HL7
v2.8 §2.9.2: the receiver rejects a message it will not process) and kept as a dead letter, so
the attempt is on record. MSH-3/4 are what the sender claims; only with mutual TLS
(``mllp_tls_ca``) or a network the site controls is the claim worth more than a label.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from medarchive.hl7v2 import Hl7Error, Location, Message

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Senders:
    """An allow-list; empty (the default) accepts every sender."""

    pairs: frozenset[tuple[str, str]] = frozenset()
    networks: tuple[Network, ...] = ()

    def refusal(self, message: Message, peer: str | None) -> Hl7Error | None:
        """None when ``message`` from ``peer`` (an IP address, None when unknown) may be
        applied, else the error to refuse it with."""
        if self.networks and not _in(peer, self.networks):
            return Hl7Error(f"sender address {peer or 'unknown'} is not allowed "
                            "(mllp_allowed_senders)", hl7_code=207, ack_code="AR",
                            location=Location("MSH"))
        claimed = (message.sending_app, message.sending_facility)
        if self.pairs and not any(_match(claimed, pair) for pair in self.pairs):
            return Hl7Error(f"sending application^facility {claimed[0]}^{claimed[1]} is not "
                            "allowed (mllp_allowed_senders)", hl7_code=207, ack_code="AR",
                            location=Location("MSH", field=3))
        return None


def parse_senders(text: str) -> Senders:
    """Read ``mllp_allowed_senders``: comma-separated ``APP^FACILITY`` pairs and IP networks
    or addresses. Raises ValueError naming an entry that is neither."""
    pairs: set[tuple[str, str]] = set()
    networks: list[Network] = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        if "^" in entry:
            app, _, facility = entry.partition("^")
            if not app.strip() or not facility.strip() or "^" in facility:
                raise ValueError(f"mllp_allowed_senders: {entry!r} is not APP^FACILITY")
            pairs.add((app.strip(), facility.strip()))
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"mllp_allowed_senders: {entry!r} is neither APP^FACILITY nor "
                             "an IP network") from None
    return Senders(frozenset(pairs), tuple(networks))


def _match(claimed: tuple[str, str], pair: tuple[str, str]) -> bool:
    return all(want == "*" or want == got for got, want in zip(claimed, pair, strict=True))


def _in(peer: str | None, networks: tuple[Network, ...]) -> bool:
    if peer is None:
        return False
    try:
        address = ipaddress.ip_address(peer.split("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)
