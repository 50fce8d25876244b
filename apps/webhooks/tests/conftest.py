"""Shared by the webhook tests: a receiver on loopback and an endpoint pointing at it."""

from __future__ import annotations

import pytest

from apps.tenancy.activation import tenant_activated
from tests.webhook_receiver import Receiver


@pytest.fixture
def receiver():
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def roomy(settings):
    """Every plan allows a few endpoints (the tests make more than free's one)."""
    settings.WEBHOOKS_ENDPOINTS_PER_PLAN = {"free": 5, "pro": 5, "enterprise": 5}


@pytest.fixture
def hook(alpha, receiver, roomy, clean_breaker):
    """alpha's endpoint to the receiver, every event type; the receiver knows its secret."""
    from apps.webhooks.services import endpoint_create

    with tenant_activated(alpha):
        made = endpoint_create(url=f"{receiver.url}/hooks", event_types=["*"])
    receiver.state.secrets = [made.secret]
    return made
