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


def client_ip(peer: str | None, forwarded_for: str | Sequence[str] | None, trusted: Sequence[Network]) -> str:
    """The client address for limits and login records.

    When the socket peer is a trusted proxy, walk X-Forwarded-For from the right and
    take the first address that is not itself a trusted proxy; anything the client
    wrote further left is ignored, so an untrusted client cannot pick its identity.

    Args:
        peer: the socket peer address.
        forwarded_for: the X-Forwarded-For header, or every line of it in the order received:
            a proxy may append its own line (HAProxy's `option forwardfor`) instead of
            extending the client's, and then the first line is the client's own words.
        trusted: the TRUSTED_PROXIES networks.
    """
    peer = peer or "unknown"
    if forwarded_for is not None and not isinstance(forwarded_for, str):
        forwarded_for = ",".join(forwarded_for)
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
