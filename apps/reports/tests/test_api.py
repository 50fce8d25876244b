"""Export requests."""

from __future__ import annotations

import pytest

from apps.reports.models import ExportRequest
from apps.tenancy.activation import tenant_activated

pytestmark = pytest.mark.django_db


def test_request_an_export_answers_202_with_a_status_url(api, alpha):
    client = api(alpha, role="member")
    response = client.post("exports", {"kind": "documents", "format": "xlsx", "filters": {"status": "published"}})
    assert response.status_code == 202
    status_url = response["Location"]
    assert status_url == response.json()["status_url"]
    detail = client.get(status_url.removeprefix("/api/v1/"))
    assert detail.status_code == 200 and detail.json()["status"] == "pending"


def test_the_same_idempotency_key_does_not_start_a_second_export(api, alpha):
    client = api(alpha, role="member")
    first = client.post("exports", {"kind": "events"}, idempotency_key="export-1")
    second = client.post("exports", {"kind": "events"}, idempotency_key="export-1")
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"] and second["Idempotent-Replayed"] == "true"
    with tenant_activated(alpha):
        assert ExportRequest.objects.count() == 1


@pytest.mark.parametrize("body", [{"kind": "users"}, {"kind": "documents", "format": "pdf"},
                                  {"kind": "documents", "filters": {"color": "red"}}, {}])
def test_export_input_errors(api, alpha, body):
    assert api(alpha).post("exports", body).status_code == 400


def test_unknown_export_is_404(api, alpha):
    assert api(alpha).get("exports/00000000-0000-0000-0000-000000000000").status_code == 404
    assert api(alpha).get("exports/not-a-uuid").status_code == 404


def test_the_status_shows_attempts_and_a_stalled_export(api, alpha, settings):
    """A second attempt (a retry, or a redelivery after its worker died) and a
    running export with no progress for EXPORT_STALL_SECONDS show as such."""
    import datetime as dt

    from django.utils import timezone

    settings.EXPORT_STALL_SECONDS = 60
    client = api(alpha, role="member")
    with tenant_activated(alpha):
        export = ExportRequest.objects.create(kind="documents", status=ExportRequest.Status.RUNNING, attempts=2,
                                              heartbeat_at=timezone.now())
    shown = client.get(f"exports/{export.pk}").json()
    assert (shown["status"], shown["status_label"], shown["attempts"], shown["stalled"]) == (
        "running", "running (attempt 2)", 2, False)

    with tenant_activated(alpha):
        ExportRequest.objects.filter(pk=export.pk).update(heartbeat_at=timezone.now() - dt.timedelta(seconds=61))
    shown = client.get(f"exports/{export.pk}").json()
    assert (shown["status"], shown["status_label"], shown["stalled"]) == ("running", "stalled (attempt 2)", True)

    with tenant_activated(alpha):
        ExportRequest.objects.filter(pk=export.pk).update(status=ExportRequest.Status.DONE)
    shown = client.get(f"exports/{export.pk}").json()
    assert (shown["status_label"], shown["stalled"], shown["attempts"]) == ("done", False, 2)
