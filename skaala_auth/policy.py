"""Per-key restrictions, in the form the per-request check wants, and the client address.

Rules of this module: no I/O, no framework imports, no clock.

- :class:`KeyPolicy` is built once per load from a key's record (its IP allow-list parsed, its
  usage limit noted); a key without restrictions has none, and pays nothing per request.
- :func:`client_address` is the request's client: the address the server saw (ASGI ``client``,
  WSGI ``REMOTE_ADDR``), or — only when that address is a configured trusted proxy — the
  right-most address of ``X-Forwarded-For`` that is not a trusted proxy itself. A forwarded
  header from anyone else is ignored: a client could write any address into it.

.. versionadded:: 0.4.0
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Final

from .credentials import HeadersLike
from .sessionflow import _header_values

__all__ = ["KeyPolicy", "Network", "client_address", "parse_networks"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_FORWARDED_FOR: Final = ("x-forwarded-for",)


def parse_networks(networks: Iterable[str], setting: str = "allowed_ips") -> tuple[Network, ...]:
    """CIDRs (``"203.0.113.0/24"``, ``"2001:db8::/32"``, or one address) as networks.

    Raises:
        ValueError: an entry that is not an address or a network (host bits set included:
            ``10.0.0.1/8`` is refused rather than silently widened).
    """
    if isinstance(networks, str):
        raise TypeError(f"{setting} is a list of networks, not one string")
    parsed: list[Network] = []
    for text in networks:
        if not isinstance(text, str):
            raise TypeError(f"{setting}: {text!r} is not a network (write '203.0.113.0/24')")
        try:
            parsed.append(ipaddress.ip_network(text.strip(), strict=True))
        except ValueError:
            raise ValueError(
                f"{setting}: {text[:60]!r} is not an address or a network (write "
                "'203.0.113.0/24'; host bits must be zero)"
            ) from None
    return tuple(dict.fromkeys(parsed))


def _address(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:203.0.113.7 is 203.0.113.7
    return address


def _within(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, networks: Sequence[Network]
) -> bool:
    return any(address in network for network in networks)


def client_address(
    server_client: str | None, headers: HeadersLike, trusted: Sequence[Network]
) -> str | None:
    """The client's address: the server's, or, behind a trusted proxy, the right-most
    untrusted address of ``X-Forwarded-For`` (all its values, in order). ``None`` when unknown.

    .. versionadded:: 0.4.0
    """
    if not trusted or server_client is None:
        return server_client
    peer = _address(server_client)
    if peer is None or not _within(peer, trusted):
        return server_client
    values = _header_values(headers, _FORWARDED_FOR).get("x-forwarded-for", [])
    hops = [hop.strip() for value in values for hop in value.split(",")]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            return None  # a hop the proxies did not write: the chain cannot be trusted past it
        if not _within(address, trusted):
            return str(address)
    # Every hop is a trusted proxy (or there is none): the left-most is the closest we know.
    if hops:
        first = _address(hops[0])
        return None if first is None else str(first)
    return server_client


class KeyPolicy:
    """A loaded key's restrictions, checked on each of its requests.

    Attributes:
        networks: the IP allow-list (empty: from anywhere).
        counted: the key has a usage limit (each request uses one, in the store).

    .. versionadded:: 0.4.0
    """

    __slots__ = ("counted", "networks")

    def __init__(self, networks: tuple[Network, ...], counted: bool) -> None:
        self.networks = networks
        self.counted = counted

    def allows(self, client: str | None) -> bool:
        """True when ``client`` (an address) is within the allow-list; an unknown or
        unreadable address is refused."""
        if not self.networks:
            return True
        address = _address(client)
        return address is not None and _within(address, self.networks)

    def __repr__(self) -> str:
        return f"KeyPolicy(networks={len(self.networks)}, counted={self.counted})"
