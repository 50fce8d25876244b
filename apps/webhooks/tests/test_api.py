"""/api/v1/webhook-endpoints and /api/v1/webhook-events: owners and admins
only, the secret shown once, limits per plan, events with every attempt,
resend and replay; and nothing of one tenant reachable from another."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from apps.content.services import document_create
from apps.tenancy.activation import tenant_activated
from apps.webhooks import delivery
from apps.webhooks.models import Delivery, Endpoint

pytestmark = pytest.mark.django_db


def make_endpoint(client, url: str, types=("*",)) -> dict:
    answer = client.post("webhook-endpoints", {"url": url, "event_types": list(types)})
    assert answer.status_code == 201, answer.content
    return answer.json()


def test_an_owner_makes_an_endpoint_and_sees_its_secret_once(api, alpha, receiver, roomy):
    owner = api(alpha)
    made = make_endpoint(owner, f"{receiver.url}/hooks", ["document.created", "member.added"])
    assert made["secret"].startswith("whsec_") and made["event_types"] == ["document.created", "member.added"]
    listed = owner.get("webhook-endpoints").json()
    assert [e["id"] for e in listed] == [made["id"]] and "secret" not in listed[0]
    assert "secret" not in owner.get(f"webhook-endpoints/{made['id']}").json()
    with tenant_activated(alpha):
        stored = Endpoint.objects.get()
    assert made["secret"] not in {stored.secret_seed, stored.secret_hash}


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_members_and_viewers_may_not_see_or_make_endpoints(api, alpha, role, receiver):
    client = api(alpha, role=role)
    assert client.get("webhook-endpoints").status_code == 403
    assert client.post("webhook-endpoints", {"url": receiver.url, "event_types": ["*"]}).status_code == 403
    assert client.get("webhook-events").status_code == 403


def test_an_admin_may(api, alpha, receiver):
    assert api(alpha, role="admin").post("webhook-endpoints", {"url": receiver.url, "event_types": ["*"]}
                                         ).status_code == 201


def test_the_plan_limits_the_endpoints(api, alpha, receiver, settings):
    settings.WEBHOOKS_ENDPOINTS_PER_PLAN = {"free": 1}
    owner = api(alpha)
    make_endpoint(owner, f"{receiver.url}/one")
    refused = owner.post("webhook-endpoints", {"url": f"{receiver.url}/two", "event_types": ["*"]})
    assert refused.status_code == 403 and refused.json()["quota"] == "webhook_endpoints"


def test_a_bad_url_or_event_type_is_a_400_naming_the_field(api, alpha, receiver, settings):
    settings.WEBHOOKS_ALLOW_LOOPBACK = False
    owner = api(alpha)
    for body, field in [({"url": "https://169.254.169.254/", "event_types": ["*"]}, "url"),
                        ({"url": receiver.url, "event_types": ["*"]}, "url"),
                        ({"url": "https://hooks.example.com/", "event_types": ["document.renamed"]}, "event_types"),
                        ({"url": "https://hooks.example.com/", "event_types": []}, "event_types")]:
        answer = owner.post("webhook-endpoints", body)
        assert answer.status_code == 400 and field in answer.json()["errors"], (body, answer.content)


def test_disable_enable_rotate_and_delete(api, alpha, receiver, roomy):
    owner = api(alpha)
    made = make_endpoint(owner, f"{receiver.url}/hooks")
    path = f"webhook-endpoints/{made['id']}"
    assert owner.patch(path, {"enabled": False}).json()["disabled_reason"] == "manual"
    assert owner.patch(path, {"enabled": True}).json()["disabled_reason"] == ""
    rotated = owner.post(f"{path}/rotate-secret", {"overlap_seconds": 600}).json()
    assert rotated["secret"] != made["secret"] and rotated["secret_rotation_ends_at"]
    assert owner.delete(path).status_code == 204
    assert owner.get(path).status_code == 404


def test_events_list_with_their_delivery_state_filtered_by_type_and_state(api, alpha, receiver, roomy):
    owner = api(alpha)
    made = make_endpoint(owner, f"{receiver.url}/hooks")
    receiver.state.secrets, receiver.state.script = [made["secret"]], ["error"]
    with tenant_activated(alpha):
        document_create(title="first")
        document_create(title="second")
        delivery.run(budget=5)
    page = owner.get("webhook-events").json()
    assert [e["type"] for e in page["results"]] == ["document.created", "document.created"]
    assert sorted(e["state"] for e in page["results"]) == ["delivered", "pending"]
    pending = owner.get("webhook-events?state=pending").json()["results"]
    assert len(pending) == 1 and owner.get("webhook-events?type=member.added").json()["results"] == []
    assert owner.get("webhook-events?state=lost").status_code == 400
    detail = owner.get(f"webhook-events/{pending[0]['id']}").json()
    [attempt] = detail["deliveries"][0]["attempt_list"]
    assert (attempt["status_code"], attempt["succeeded"]) == (500, False) and "receiver told to fail" in \
        attempt["response_excerpt"] and attempt["duration_ms"] >= 0
    assert detail["data"]["title"] in ("first", "second")


def test_events_are_paged_by_cursor(api, alpha, hook):
    owner = api(alpha)
    with tenant_activated(alpha):
        for n in range(5):
            document_create(title=f"d{n}")
    first = owner.get("webhook-events?page_size=2").json()
    second = owner.client.get(first["next"], HTTP_AUTHORIZATION=owner.client.defaults["HTTP_AUTHORIZATION"]).json()
    assert len(first["results"]) == 2 and len(second["results"]) == 2
    assert not {e["id"] for e in first["results"]} & {e["id"] for e in second["results"]}


def test_resend_one_event_and_replay_an_endpoints_failures(api, alpha, receiver, roomy):
    owner = api(alpha)
    made = make_endpoint(owner, f"{receiver.url}/hooks")
    receiver.state.secrets = [made["secret"]]
    with tenant_activated(alpha):
        document_create(title="again")
        delivery.run(budget=5)
    [event] = owner.get("webhook-events").json()["results"]
    assert owner.post(f"webhook-events/{event['id']}/resend").json() == {"requeued": 1}
    with tenant_activated(alpha):
        delivery.run(budget=5)
        Delivery.objects.update(state="failed", created_at=timezone.now() - dt.timedelta(hours=2))
    assert [a["id"] for a in receiver.state.accepted] == [event["id"], event["id"]]  # the same webhook-id
    since = (timezone.now() - dt.timedelta(hours=3)).isoformat().replace("+00:00", "Z")
    answer = owner.post(f"webhook-endpoints/{made['id']}/replay", {"since": since})
    assert answer.status_code == 202 and answer.json() == {"requeued": 1}
    with tenant_activated(alpha):
        assert Delivery.objects.get().state == "pending"
    deliveries = owner.get(f"webhook-endpoints/{made['id']}/deliveries?state=pending").json()["results"]
    assert [d["event_id"] for d in deliveries] == [event["id"]]


def test_another_tenant_can_neither_see_nor_change_endpoints_events_or_deliveries(api, alpha, beta, receiver, roomy):
    alpha_owner, beta_owner = api(alpha), api(beta)
    made = make_endpoint(alpha_owner, f"{receiver.url}/hooks")
    with tenant_activated(alpha):
        document_create(title="alpha's")
    [event] = alpha_owner.get("webhook-events").json()["results"]
    endpoint = f"webhook-endpoints/{made['id']}"
    assert beta_owner.get("webhook-endpoints").json() == []
    assert beta_owner.get("webhook-events").json()["results"] == []
    for method, path, body in [("get", endpoint, None), ("patch", endpoint, {"enabled": False}),
                               ("post", f"{endpoint}/rotate-secret", {}), ("get", f"{endpoint}/deliveries", None),
                               ("post", f"{endpoint}/replay", {"since": "2026-01-01T00:00:00Z"}),
                               ("get", f"webhook-events/{event['id']}", None),
                               ("post", f"webhook-events/{event['id']}/resend", {}), ("delete", endpoint, None)]:
        answer = getattr(beta_owner, method)(path, body) if body is not None else getattr(beta_owner, method)(path)
        assert answer.status_code == 404, (method, path, answer.status_code)
    assert alpha_owner.get(endpoint).json()["enabled"] is True
