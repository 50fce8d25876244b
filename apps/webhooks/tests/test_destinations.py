"""Destination safety as production has it: https only, public addresses
only, checked after resolution and before any connection, again for every
connection (DNS rebinding) and for a redirect's target. Names resolve
through a resolver the test controls, and the connect itself is replaced by
a recorder: no traffic goes to a private or link-local address, nor anywhere."""

from __future__ import annotations

import importlib.util
import ipaddress
import socket

import pytest
from django.core.exceptions import ImproperlyConfigured, ValidationError

from apps.webhooks import destinations
from apps.webhooks.sending import Sender

FORBIDDEN = ["127.0.0.1", "10.0.0.1", "169.254.169.254", "192.168.1.5", "172.16.0.1", "100.64.0.1", "0.0.0.0",
             "224.0.0.1", "::1", "fe80::1", "fc00::1", "::ffff:10.0.0.1", "::ffff:169.254.169.254",
             "64:ff9b::a9fe:a9fe", "2002:a00:1::"]
PUBLIC = ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]


@pytest.fixture
def production(settings):
    settings.WEBHOOKS_ALLOW_LOOPBACK = False
    settings.WEBHOOKS_ALLOW_HTTP = False


_real_create_connection = socket.create_connection


@pytest.fixture
def net(monkeypatch):
    """Names resolve as ``net.names`` says; every connect is recorded, and
    refused unless it goes to 127.0.0.1 (where only this test's servers listen)."""

    class Net:
        names: dict[str, list] = {}
        resolved: list[str] = []
        connects: list[tuple] = []

    def resolve(host, port):
        Net.resolved.append(host)
        answers = Net.names[host] if host in Net.names else [str(ipaddress.ip_address(host))]  # a literal is itself
        return answers.pop(0) if answers and isinstance(answers[0], list) else answers

    def connect(address, *args, **kwargs):
        Net.connects.append(address)
        if address[0] == "127.0.0.1":
            return _real_create_connection(address, *args, **kwargs)
        raise ConnectionRefusedError("no traffic leaves a test")

    Net.names, Net.resolved, Net.connects = {}, [], []
    monkeypatch.setattr(destinations, "resolve", resolve)
    monkeypatch.setattr(socket, "create_connection", connect)
    return Net


@pytest.mark.parametrize("address", FORBIDDEN)
def test_private_loopback_link_local_and_reserved_addresses_are_refused(production, address):
    assert destinations.refusal(address) is not None


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(production, address):
    assert destinations.refusal(address) is None


def test_loopback_opens_only_with_the_test_switch_and_nothing_else_does(settings):
    settings.WEBHOOKS_ALLOW_LOOPBACK = True
    assert destinations.refusal("127.0.0.1") is None and destinations.refusal("::1") is None
    assert destinations.refusal("10.0.0.1") and destinations.refusal("169.254.169.254")


@pytest.mark.parametrize("url", ["http://hooks.example.com/x", "ftp://hooks.example.com/", "https:///nohost",
                                 "https://user:pass@hooks.example.com/", "not a url", "https://10.0.0.1/",
                                 "https://hooks.example.com:99999/", "https://hooks.example.com/a#b"])
def test_only_https_urls_without_credentials_are_accepted(production, url):
    with pytest.raises(destinations.DestinationRefused):
        destinations.parse(url)


@pytest.mark.parametrize("host,address", [("127.0.0.1", "127.0.0.1"), ("10.0.0.1", "10.0.0.1"),
                                          ("169.254.169.254", "169.254.169.254"), ("internal.test", "10.0.0.1"),
                                          ("metadata.test", "169.254.169.254"), ("local.test", "127.0.0.1")])
def test_a_delivery_to_a_forbidden_address_is_refused_before_any_connection(production, net, host, address):
    """An address literal is no destination at all; a name is refused for what it resolves to."""
    net.names[host] = [address]
    outcome = Sender().post(f"https://{host}/hook", b"{}", {})
    literal = host == address
    assert outcome.refused and outcome.status is None
    assert ("not an address" if literal else f"resolves to {destinations.refusal(address)}") in outcome.error
    assert net.connects == []


def test_a_name_answering_with_a_public_and_a_private_address_is_refused(production, net):
    net.names["mixed.test"] = ["93.184.216.34", "10.0.0.1"]
    assert Sender().post("https://mixed.test/hook", b"{}", {}).refused
    assert net.connects == []


def test_every_connection_resolves_and_checks_again_so_rebinding_is_caught(production, net):
    net.names["rebind.test"] = [["93.184.216.34"], ["169.254.169.254"]]
    first = Sender().post("https://rebind.test/hook", b"{}", {})
    second = Sender().post("https://rebind.test/hook", b"{}", {})
    assert not first.refused and first.error == "connection refused"  # the checked public address, recorded
    assert second.refused
    assert net.connects == [("93.184.216.34", 443)] and net.resolved == ["rebind.test", "rebind.test"]


def test_a_redirect_target_is_checked_like_the_url(settings, net):
    """Even where redirects are followed, the next hop meets the same check."""
    import http.server
    import threading

    settings.WEBHOOKS_MAX_REDIRECTS = 2  # loopback and http stay on (test settings) for the first hop

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.send_response(307)
            self.send_header("Location", "http://metadata.test/latest/meta-data")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    net.names.update({"hooks.test": ["127.0.0.1"], "metadata.test": ["169.254.169.254"]})
    try:
        outcome = Sender().post(f"http://hooks.test:{server.server_address[1]}/hook", b"{}", {})
    finally:
        server.shutdown()
    assert outcome.refused and "metadata.test resolves to a link-local address" in outcome.error
    assert net.connects == [("127.0.0.1", server.server_address[1])]


def test_saving_an_endpoint_refuses_address_literals_and_http_and_checks_names_only_when_delivering(
        production, net, alpha, roomy):
    from apps.tenancy.activation import tenant_activated
    from apps.webhooks.services import endpoint_create

    net.names["internal.test"] = ["10.0.0.1"]
    with tenant_activated(alpha):
        for url in ("https://169.254.169.254/latest", "https://10.0.0.1/hook", "https://127.0.0.1/",
                    "http://hooks.example.com/", "https://[::1]/", "https://HOOKS.example.com/"):
            with pytest.raises(ValidationError) as refused:
                endpoint_create(url=url, event_types=["*"])
            assert "url" in refused.value.message_dict, url
        # A name: its addresses may change any time, so they are checked at every connection instead.
        endpoint_create(url="https://internal.test/hook", event_types=["*"])
    assert net.resolved == [] and net.connects == []
    assert Sender().post("https://internal.test/hook", b"{}", {}).refused and net.connects == []


def test_production_settings_refuse_to_start_with_the_test_switches_on(monkeypatch):
    import config.settings.base as base

    for name in ("DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS", "PLATFORM_DOMAIN", "DATABASE_URL", "REDIS_URL",
                 "EMAIL_HOST", "EMAIL_PORT"):
        monkeypatch.setenv(name, {"EMAIL_PORT": "587", "DATABASE_URL": "postgres://h/db",
                                  "REDIS_URL": "redis://h:6379/0"}.get(name, "x" * 60))
    for switch in ("WEBHOOKS_ALLOW_LOOPBACK", "WEBHOOKS_ALLOW_HTTP"):
        monkeypatch.setattr(base, "WEBHOOKS_ALLOW_LOOPBACK", switch == "WEBHOOKS_ALLOW_LOOPBACK")
        monkeypatch.setattr(base, "WEBHOOKS_ALLOW_HTTP", switch == "WEBHOOKS_ALLOW_HTTP")
        spec = importlib.util.spec_from_file_location("config.settings.production_probe",
                                                      base.BASE_DIR / "config" / "settings" / "production.py")
        module = importlib.util.module_from_spec(spec)
        with pytest.raises(ImproperlyConfigured, match="must be off in production"):
            spec.loader.exec_module(module)
