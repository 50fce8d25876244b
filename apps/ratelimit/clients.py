"""Who is calling, by network address: the key of per-address limits.

The address comes from the TCP peer (REMOTE_ADDR). Behind load balancers
the peer is the last proxy; then X-Forwarded-For is read from the right,
and each hop is believed only while it was appended by a proxy listed in
TRUSTED_PROXIES. The first hop that is not a trusted proxy is the client.
Anything left of it was written by the client itself and is ignored, so a
caller cannot pick its own address (and with it, a fresh bucket) by
sending a header.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# An IPv6 client usually holds a whole /64 and may rotate addresses inside
# it at will; counting per address would hand it 2**64 buckets.
IPV6_PREFIX = 64


@lru_cache(maxsize=8)
def _trusted_networks(cidrs: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    try:
        return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)
    except ValueError as exc:
        raise ImproperlyConfigured(f"TRUSTED_PROXIES: expected addresses or CIDRs, comma-separated ({exc})") from None


def trusted_networks() -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return _trusted_networks(tuple(settings.TRUSTED_PROXIES))


def _parse(value: str | None) -> Address | None:
    """An address from a header hop: bare, with a port, or [IPv6]:port."""
    value = (value or "").strip()
    if value.startswith("["):
        value = value[1:].split("]", 1)[0]
    elif value.count(":") == 1:  # IPv4 with a port
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def client_address(request) -> Address | None:
    """The caller's address: REMOTE_ADDR, or the nearest untrusted hop of
    X-Forwarded-For when REMOTE_ADDR is a trusted proxy."""
    meta = request.META
    address = _parse(meta.get("REMOTE_ADDR"))
    trusted = trusted_networks()
    if address is None or not trusted:
        return address
    hops = meta.get("HTTP_X_FORWARDED_FOR", "").split(",")
    for hop in reversed(hops):
        if not any(address in network for network in trusted):
            break
        previous = _parse(hop)
        if previous is None:  # not written by a proxy: stop at the last trusted hop
            break
        address = previous
    return address


def address_key(request) -> str:
    """The per-address bucket name of the caller (IPv6: its /64)."""
    address = client_address(request)
    if address is None:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network(f"{address}/{IPV6_PREFIX}", strict=False))
    return str(address)
