"""Idempotency-Key on POST."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from apps.content.models import Document
from apps.idempotency.models import IdempotencyRecord
from apps.tenancy.activation import tenant_activated

pytestmark = pytest.mark.django_db


def documents(tenant) -> int:
    with tenant_activated(tenant):
        return Document.objects.count()


def test_same_key_same_body_replays_the_first_response(api, alpha):
    client = api(alpha, role="member")
    first = client.post("documents", {"title": "once"}, idempotency_key="k-1")
    again = client.post("documents", {"title": "once"}, idempotency_key="k-1")
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json() and again["Idempotent-Replayed"] == "true"
    assert again["Location"] == first["Location"]
    assert documents(alpha) == 1


def test_same_key_different_body_is_422(api, alpha):
    client = api(alpha, role="member")
    client.post("documents", {"title": "one"}, idempotency_key="k-2")
    response = client.post("documents", {"title": "two"}, idempotency_key="k-2")
    assert response.status_code == 422
    assert documents(alpha) == 1


def test_validation_errors_replay_too_but_server_side_refusals_do_not(api, alpha):
    client = api(alpha, role="member")
    assert client.post("documents", {"title": ""}, idempotency_key="k-3").status_code == 400
    assert client.post("documents", {"title": ""}, idempotency_key="k-3")["Idempotent-Replayed"] == "true"
    viewer = api(alpha, role="viewer")
    assert viewer.post("documents", {"title": "x"}, idempotency_key="k-4").status_code == 403
    with tenant_activated(alpha):
        assert not IdempotencyRecord.objects.filter(key="k-4").exists()


def test_keys_expire_after_a_day(api, alpha):
    client = api(alpha, role="member")
    client.post("documents", {"title": "day one"}, idempotency_key="k-5")
    with tenant_activated(alpha):
        IdempotencyRecord.objects.filter(key="k-5").update(created_at=timezone.now() - dt.timedelta(hours=25))
    again = client.post("documents", {"title": "day one"}, idempotency_key="k-5")
    assert again.status_code == 201 and "Idempotent-Replayed" not in again
    assert documents(alpha) == 2


def test_keys_are_per_client(api, alpha):
    one, two = api(alpha, role="member"), api(alpha, role="member")
    one.post("documents", {"title": "mine"}, idempotency_key="shared")
    assert two.post("documents", {"title": "mine"}, idempotency_key="shared").status_code == 201
    assert documents(alpha) == 2


def test_too_long_key_is_400(api, alpha):
    assert api(alpha).post("documents", {"title": "x"}, idempotency_key="k" * 300).status_code == 400
