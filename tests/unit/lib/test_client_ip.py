from __future__ import annotations

import ipaddress

from auth_service.lib.client_ip import client_ip

PROXIES = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1/32")]


def test_untrusted_peer_cannot_choose_its_address() -> None:
    assert client_ip("203.0.113.9", "1.2.3.4", PROXIES) == "203.0.113.9"


def test_trusted_proxy_gives_rightmost_untrusted_hop() -> None:
    assert client_ip("10.0.0.2", "6.6.6.6, 198.51.100.7, 10.0.0.1", PROXIES) == "198.51.100.7"


def test_no_trusted_proxies_means_socket_peer() -> None:
    assert client_ip("127.0.0.1", "198.51.100.7", []) == "127.0.0.1"


def test_garbage_forwarded_for_falls_back_to_last_good_hop() -> None:
    assert client_ip("10.0.0.2", "<script>, 10.0.0.9", PROXIES) == "10.0.0.9"
    assert client_ip("10.0.0.2", "nonsense", PROXIES) == "10.0.0.2"


def test_every_forwarded_for_line_counts_in_order() -> None:
    """HAProxy's `option forwardfor` appends its own line: the first is the client's own words."""
    assert client_ip("10.0.0.2", ["6.6.6.6", "198.51.100.7"], PROXIES) == "198.51.100.7"
    assert client_ip("10.0.0.2", ["6.6.6.6, 7.7.7.7", "198.51.100.7, 10.0.0.1"], PROXIES) == "198.51.100.7"
    assert client_ip("10.0.0.2", [], PROXIES) == "10.0.0.2"
