"""Who is the client: the socket peer, unless the peer is a trusted proxy."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

__all__ = ["client_ip"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def client_ip(peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The client address for limits and login records.

    When the socket peer is a trusted proxy, walk X-Forwarded-For from the right and
    take the first address that is not itself a trusted proxy; anything the client
    wrote further left is ignored, so an untrusted client cannot pick its identity.

    Args:
        peer: the socket peer address.
        forwarded_for: the X-Forwarded-For header, if any.
        trusted: the TRUSTED_PROXIES networks.
    """
    peer = peer or "unknown"
    if not forwarded_for or not trusted or not _is_trusted(peer, trusted):
        return peer
    current = peer
    for hop in reversed([part.strip() for part in forwarded_for.split(",")]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return current
        current = hop
        if not _is_trusted(hop, trusted):
            return hop
    return current
