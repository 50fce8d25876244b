"""Where a webhook may go: public addresses only.

A tenant chooses the URL, so a careless check would let it make the
platform's workers call their own network (a metadata service at
169.254.169.254, a database, a loopback admin port). Every connection is
therefore made to an address checked right before it:

* the URL's scheme is https (http only where WEBHOOKS_ALLOW_HTTP, never in
  production), its host a name (no address literal), and it carries no
  user:password (``url_pattern``);
* the host name is resolved by ``resolve`` at delivery time, every address
  it gives is checked, and the connection goes to the checked address
  itself, so a name that answers differently the second time (DNS
  rebinding) meets the check again, never an unchecked connect;
* loopback, private, link-local, shared, multicast, reserved and
  unspecified addresses are refused, IPv4 inside IPv6 (mapped, NAT64,
  6to4) included; loopback opens only with WEBHOOKS_ALLOW_LOOPBACK (tests);
* a redirect is not followed unless WEBHOOKS_MAX_REDIRECTS allows it, and
  then its target goes through all of the above again.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

NAT64 = ipaddress.ip_network("64:ff9b::/96")


class DestinationRefused(Exception):
    """The URL or the address it resolves to may not be called."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str  # path and query, as sent

    @property
    def origin(self) -> str:
        default = 443 if self.scheme == "https" else 80
        return self.host if self.port == default else f"{self.host}:{self.port}"


# The URLs an endpoint may have, as one pattern (the API's schema states the
# same one, so a URL the schema allows is accepted and one it forbids is
# refused): the scheme, a host *name* in lower case (never an address: which
# address a name means is decided when a delivery connects), an optional port
# 1-65535, and a path and query of printable ASCII without a fragment. Where
# WEBHOOKS_ALLOW_LOOPBACK is on (tests), 127.0.0.1 too.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_TOP = r"(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})"
_PORT = r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"


def url_pattern() -> str:
    scheme = "https?" if settings.WEBHOOKS_ALLOW_HTTP else "https"
    host = rf"(?:{_LABEL}\.)+{_TOP}" + (r"|127\.0\.0\.1" if settings.WEBHOOKS_ALLOW_LOOPBACK else "")
    return rf'^{scheme}://(?:{host})(?::{_PORT})?(?:[/?][!"$-~]*)?$'


def parse(url: str) -> Target:
    """The parts of a URL a webhook may be sent to; DestinationRefused otherwise."""
    if not isinstance(url, str) or not re.fullmatch(url_pattern(), url):
        scheme = "https:// (or http://)" if settings.WEBHOOKS_ALLOW_HTTP else "https://"
        raise DestinationRefused(f"The URL must be {scheme} and a host name in lower case (not an address), with "
                                 "an optional port, path and query of printable characters; no user or password.")
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), path)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def refusal(address: str) -> str | None:
    """Why ``address`` may not be connected to, or None when it may."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        ip = _embedded_ipv4(ip) or ip
    if ip.is_loopback:
        return None if settings.WEBHOOKS_ALLOW_LOOPBACK else "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_private:
        return "a private address"
    if ip.is_multicast or ip.is_unspecified or ip.is_reserved or not ip.is_global:
        return "a reserved address"
    return None


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to now (replaced in tests)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise ConnectionError(f"{host} does not resolve: {exc.strerror or exc}") from exc
    return list(dict.fromkeys(info[4][0] for info in infos))


def checked_addresses(target: Target) -> list[str]:
    """The addresses to connect to for ``target``: all of them public, or
    DestinationRefused (one bad address refuses the host: which one a
    client would pick is not ours to guess)."""
    addresses = resolve(target.host, target.port)
    if not addresses:
        raise ConnectionError(f"{target.host} resolves to no address")
    for address in addresses:
        reason = refusal(address)
        if reason:
            raise DestinationRefused(f"{target.host} resolves to {reason}")
    return addresses


def check_url(url: str) -> Target:
    """For a URL being saved: its form only. What its name resolves to is
    checked before every connection (it may change any time), not here."""
    return parse(url)
