"""The tenant admin's webhook pages and the operator console's: endpoints
with the secret shown once, disable and rotate, the events with their
attempts, resend and replay; owners and admins of the host's tenant only,
and another tenant's rows out of reach."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.test import Client
from django.utils import timezone

from apps.backoffice.tests.test_tenant_admin_pages import browser_for, person, post, text
from apps.content.services import document_create
from apps.tenancy.activation import tenant_activated
from apps.webhooks import delivery
from apps.webhooks.models import Delivery, Endpoint
from apps.webhooks.tests.helpers import fanned_out

pytestmark = pytest.mark.django_db


def form_key(client: Client) -> str:
    page = client.get("/admin/webhooks/").content.decode()
    return re.search(r'name="submission" value="([^"]+)"', page).group(1)


def create(client: Client, url: str):
    return post(client, "webhooks/create/", {"url": url, "event_types": ["*"], "description": "ci",
                                             "submission": form_key(client)})


def test_an_owner_adds_an_endpoint_and_sees_its_secret_once(alpha, receiver, roomy):
    owner = browser_for(alpha, person(alpha, "owner"))
    page = create(owner, f"{receiver.url}/hooks")
    secret = re.search(r'id="new-webhook-secret-value">(whsec_[^<]+)<', page.content.decode()).group(1)
    assert page.status_code == 200
    again = owner.get("/admin/webhooks/")
    assert secret not in again.content.decode() and f"{receiver.url}/hooks" in text(again)
    with tenant_activated(alpha):
        assert Endpoint.objects.count() == 1


def test_sending_the_form_again_makes_no_second_endpoint(alpha, receiver, roomy):
    owner = browser_for(alpha, person(alpha, "owner"))
    key = form_key(owner)
    for _ in range(2):
        post(owner, "webhooks/create/", {"url": f"{receiver.url}/hooks", "event_types": ["*"], "submission": key})
    with tenant_activated(alpha):
        assert Endpoint.objects.count() == 1


def test_a_forbidden_url_is_refused_with_a_message(alpha, settings, roomy):
    settings.WEBHOOKS_ALLOW_LOOPBACK = False
    owner = browser_for(alpha, person(alpha, "owner"))
    page = create(owner, "https://169.254.169.254/latest")
    assert page.status_code == 400 and "not an address" in text(page)


def test_disable_rotate_and_the_events_with_their_attempts_and_resend(alpha, receiver, roomy):
    owner = browser_for(alpha, person(alpha, "admin"))
    secret = re.search(r"(whsec_[A-Za-z0-9+/=]+)", create(owner, f"{receiver.url}/hooks").content.decode()).group(1)
    receiver.state.secrets, receiver.state.script = [secret], ["error"]
    with tenant_activated(alpha):
        endpoint = Endpoint.objects.get()
        document_create(title="Seen in the admin")
        delivery.run(budget=5)
    listing = owner.get("/admin/webhooks/events/?state=pending")
    event_id = re.search(r'data-event="(evt_[0-9a-f]+)"', listing.content.decode()).group(1)
    detail = owner.get(f"/admin/webhooks/events/{event_id}/")
    assert "receiver told to fail" in text(detail) and "500" in text(detail)
    with tenant_activated(alpha):
        Delivery.objects.update(state="failed")
    post(owner, f"webhooks/events/{event_id}/resend/")
    with tenant_activated(alpha):
        assert Delivery.objects.get().state == "pending"
    rotated = post(owner, f"webhooks/{endpoint.pk}/rotate/", {"submission": "one-off-key-1"})
    assert "whsec_" in rotated.content.decode() and secret not in rotated.content.decode()
    post(owner, f"webhooks/{endpoint.pk}/toggle/")
    with tenant_activated(alpha):
        assert Endpoint.objects.get().disabled_reason == "manual"


def test_replay_from_the_admin_requeues_what_failed(alpha, hook):
    owner = browser_for(alpha, person(alpha, "owner"))
    with tenant_activated(alpha):
        document_create(title="Lost")
    fanned_out(alpha)
    with tenant_activated(alpha):
        Delivery.objects.update(state="failed")
    post(owner, f"webhooks/{hook.endpoint.pk}/replay/", {"since": timezone.localdate().isoformat()})
    with tenant_activated(alpha):
        assert Delivery.objects.get().state == "pending"


def test_members_may_not_open_the_pages(alpha, hook):
    member = browser_for(alpha, person(alpha, "member"))
    assert member.get("/admin/webhooks/").status_code == 302  # to the admin's login


def test_another_tenants_admin_sees_and_changes_nothing_of_it(alpha, beta, hook):
    with tenant_activated(alpha):
        document_create(title="alpha only")
    fanned_out(alpha)
    with tenant_activated(alpha):
        event_id = Endpoint.objects.get().deliveries.get().event.public_id
    beta_owner = browser_for(beta, person(beta, "owner"))
    assert hook.endpoint.url not in text(beta_owner.get("/admin/webhooks/"))
    assert event_id not in beta_owner.get("/admin/webhooks/events/").content.decode()
    assert beta_owner.get(f"/admin/webhooks/events/{event_id}/").status_code == 404
    for action in ("toggle", "delete"):
        assert post(beta_owner, f"webhooks/{hook.endpoint.pk}/{action}/", follow=False).status_code == 404
    # An alpha owner's session opens nothing on beta's host either.
    alpha_owner_on_beta = browser_for(beta, person(alpha, "owner"))
    assert alpha_owner_on_beta.get("/admin/webhooks/").status_code == 302
    with tenant_activated(alpha):
        assert Endpoint.objects.get().enabled


def test_an_operator_replays_an_endpoints_failures_from_the_console(alpha, hook):
    from apps.accounts.models import User
    from apps.backoffice.models import OperatorAction

    with tenant_activated(alpha):
        document_create(title="Lost")
    fanned_out(alpha)
    with tenant_activated(alpha):
        Delivery.objects.update(state="failed", created_at=timezone.now() - dt.timedelta(days=1))
    operator = User.objects.create_superuser(email="ops@webhooks.test", password="ops-pass-123")
    console = Client(HTTP_HOST="localhost")
    console.force_login(operator)
    page = console.get(f"/admin/console/tenants/{alpha.slug}/webhooks/")
    assert page.status_code == 200 and f'data-endpoint="{hook.endpoint.pk}"' in page.content.decode()
    since = (timezone.localdate() - dt.timedelta(days=2)).isoformat()
    console.post(f"/admin/console/tenants/{alpha.slug}/webhooks/",
                 {"endpoint": hook.endpoint.pk, "since": since, "reason": "receiver fixed, ticket 42"})
    action = OperatorAction.objects.get(kind="webhook.replay")
    assert action.detail["requeued"] == 1 and action.tenant_id == alpha.pk
    with tenant_activated(alpha):
        assert Delivery.objects.get().state == "pending"
