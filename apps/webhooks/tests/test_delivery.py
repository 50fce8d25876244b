"""A delivery run against a receiver on loopback: signed as Standard Webhooks
says, retried with backoff, given up after the retry window, one object's
events in order, bounded answers, open circuits, rotation, disabling."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from apps.content.services import document_create, document_update
from apps.tenancy.activation import tenant_activated
from apps.webhooks import delivery
from apps.webhooks.models import Attempt, Delivery, Endpoint, Event

pytestmark = pytest.mark.django_db


def run(tenant, rounds: int = 1) -> None:
    with tenant_activated(tenant):
        for _ in range(rounds):
            delivery.run(budget=5)


def due_again(tenant) -> None:
    """Bring every pending delivery's next attempt to now (as if the backoff had passed)."""
    with tenant_activated(tenant):
        Delivery.objects.filter(state="pending").update(next_attempt_at=timezone.now() - dt.timedelta(seconds=1))


def test_a_delivery_is_signed_as_standard_webhooks_verifies_it(alpha, hook, receiver):
    with tenant_activated(alpha):
        document = document_create(title="Signed")
    run(alpha)
    [got] = receiver.state.accepted
    assert receiver.state.bad_signatures == 0
    body = got["body"]
    assert got["id"] == body["id"] and body["id"].startswith("evt_")
    assert (body["type"], body["version"], body["tenant"]) == ("document.created", 1, "alpha")
    assert body["object"]["id"] == str(document.pk) and body["data"]["title"] == "Signed"
    with tenant_activated(alpha):
        record = Delivery.objects.get()
        assert (record.state, record.attempts, record.last_status) == ("delivered", 1, 200)
        attempt = Attempt.objects.get()
        assert attempt.succeeded and attempt.duration_ms >= 0 and '"received": true' in attempt.response_excerpt


def test_a_failed_attempt_is_retried_later_and_recorded(alpha, hook, receiver):
    receiver.state.script = ["error"]
    with tenant_activated(alpha):
        document_create(title="Retry me")
    run(alpha)
    with tenant_activated(alpha):
        record = Delivery.objects.get()
        assert (record.state, record.attempts, record.last_status) == ("pending", 1, 500)
        wait = (record.next_attempt_at - timezone.now()).total_seconds()
        assert 5 < wait <= 30  # half to all of WEBHOOKS_RETRY_BASE_SECONDS
    run(alpha)
    assert receiver.state.accepted == []  # not due yet
    due_again(alpha)
    run(alpha)
    assert len(receiver.state.accepted) == 1
    with tenant_activated(alpha):
        assert [a.status_code for a in Attempt.objects.order_by("number")] == [500, 200]


def test_backoff_doubles_with_jitter_up_to_its_cap(settings):
    settings.WEBHOOKS_RETRY_BASE_SECONDS, settings.WEBHOOKS_RETRY_MAX_SECONDS = 30, 6 * 3600
    for attempt, full in [(1, 30), (2, 60), (5, 480), (20, 6 * 3600)]:
        waits = [delivery.backoff(attempt) for _ in range(200)]
        assert full / 2 <= min(waits) and max(waits) <= full and max(waits) - min(waits) > full / 10


def test_a_delivery_failing_past_the_retry_window_is_dead_and_visible(alpha, hook, receiver, settings):
    receiver.state.default = "error"
    with tenant_activated(alpha):
        document_create(title="Doomed")
    run(alpha)
    with tenant_activated(alpha):
        Delivery.objects.update(first_attempt_at=timezone.now() - dt.timedelta(seconds=settings.WEBHOOKS_RETRY_FOR_SECONDS))
    due_again(alpha)
    run(alpha)
    with tenant_activated(alpha):
        record = Delivery.objects.get()
        assert (record.state, record.attempts) == ("failed", 2)


def test_one_objects_events_reach_an_endpoint_in_order_a_retry_holding_back_the_next(alpha, hook, receiver):
    receiver.state.script = ["error"]
    with tenant_activated(alpha):
        document = document_create(title="v1")
        document_update(document_id=document.pk, expected_version=1, changes={"title": "v2"})
        other = document_create(title="other")
    run(alpha)
    # v1 failed; v2 waits behind it; the other document's event went.
    assert [a["body"]["object"]["id"] for a in receiver.state.accepted] == [str(other.pk)]
    due_again(alpha)
    run(alpha, rounds=2)
    titles = [a["body"]["data"]["title"] for a in receiver.state.accepted]
    assert titles == ["other", "v1", "v2"]
    sequences = [a["body"]["object"]["sequence"] for a in receiver.state.accepted[1:]]
    assert sequences == sorted(sequences)


def test_a_large_payload_carries_a_link_instead_of_its_data(alpha, hook, receiver, settings):
    settings.WEBHOOKS_MAX_PAYLOAD_BYTES = 2048
    with tenant_activated(alpha):
        document_create(title="Big", body="x" * 5000)
    run(alpha)
    body = receiver.state.accepted[0]["body"]
    assert body["data"] is None and body["data_url"].endswith(f"/api/v1/webhook-events/{body['id']}")


def test_an_answer_is_read_up_to_a_bound_and_only_its_first_bytes_kept(alpha, hook, settings):
    from apps.webhooks.sending import Sender
    from tests.webhook_receiver import Receiver

    settings.WEBHOOKS_RESPONSE_READ_BYTES, settings.WEBHOOKS_RESPONSE_KEEP_BYTES = 100, 20
    big = Receiver().start()
    big.state.secrets, big.state.default = [], "ok"  # answers 400 with a body (no secret known)
    try:
        outcome = Sender().post(f"{big.url}/x", b"{}", {"webhook-id": "evt_1"})
    finally:
        big.stop()
    assert outcome.status == 400 and len(outcome.excerpt) <= 20


def test_a_receiver_that_never_answers_costs_one_timeout(alpha, hook, receiver, settings):
    settings.WEBHOOKS_TIMEOUT_SECONDS = 0.5
    receiver.state.script, receiver.state.hang_seconds = ["hang"], 2
    with tenant_activated(alpha):
        document_create(title="Slow")
    run(alpha)
    with tenant_activated(alpha):
        attempt = Attempt.objects.get()
    assert attempt.error == "timed out" and 400 <= attempt.duration_ms < 1500


def test_a_redirect_is_not_followed(alpha, hook, receiver):
    import http.server
    import threading

    from apps.webhooks.sending import Sender

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        outcome = Sender().post(f"http://127.0.0.1:{server.server_address[1]}/", b"{}", {})
    finally:
        server.shutdown()
    assert outcome.status == 302 and not outcome.succeeded and "not followed" in outcome.error


def test_after_repeated_failures_a_hosts_circuit_opens_and_its_deliveries_wait(alpha, hook, receiver, settings):
    from apps.content.services import DocumentInput, document_bulk_create

    settings.WEBHOOKS_BREAKER_FAIL_MAX = 3
    receiver.state.default = "error"
    with tenant_activated(alpha):
        document_bulk_create(documents=[DocumentInput(title=f"d{n}") for n in range(6)])
    run(alpha)
    assert receiver.state.requests == 3
    with tenant_activated(alpha):
        waiting = Delivery.objects.filter(attempts=0)
        assert waiting.count() == 3 and all("circuit" in d.last_error for d in waiting)
        assert all(d.next_attempt_at > timezone.now() + dt.timedelta(seconds=30) for d in waiting)


def test_during_a_rotation_both_secrets_sign_and_either_verifies(alpha, hook, receiver):
    from apps.webhooks.services import endpoint_rotate_secret

    with tenant_activated(alpha):
        rotated = endpoint_rotate_secret(endpoint=hook.endpoint, overlap_seconds=3600)
        document_create(title="Rotating")
    for secret in (hook.secret, rotated.secret):  # a receiver that knows either one
        receiver.state.secrets = [secret]
        receiver.state.accepted.clear()
        due_again(alpha)
        with tenant_activated(alpha):
            Delivery.objects.update(state="pending")
        run(alpha)
        assert len(receiver.state.accepted) == 1, secret


def test_an_endpoint_failing_for_days_is_disabled_and_its_owners_are_emailed(alpha, hook, receiver, settings):
    from apps.outbox.models import TenantOutboxMessage

    receiver.state.default = "error"
    with tenant_activated(alpha):
        document_create(title="Nobody home")
        Endpoint.objects.update(failing_since=timezone.now() - dt.timedelta(seconds=settings.WEBHOOKS_DISABLE_AFTER_SECONDS))
    run(alpha)
    with tenant_activated(alpha):
        endpoint = Endpoint.objects.get()
        assert (endpoint.enabled, endpoint.disabled_reason) == (False, "failing")
        [email] = TenantOutboxMessage.objects.filter(task_name="notifications.send_email")
        assert email.kwargs["template"] == "webhook_endpoint_disabled" and email.kwargs["to"] == ["owner@alpha.test"]
        assert "url" not in email.kwargs["context"]  # a URL may carry a token: the host only
        assert Delivery.objects.get().state == "pending"  # nothing lost; it waits for the endpoint


def test_a_success_clears_the_failure_clock(alpha, hook, receiver):
    receiver.state.script = ["error"]
    with tenant_activated(alpha):
        document_create(title="Flaky")
    run(alpha)
    with tenant_activated(alpha):
        assert Endpoint.objects.get().failing_since is not None
    due_again(alpha)
    run(alpha)
    with tenant_activated(alpha):
        assert Endpoint.objects.get().failing_since is None


def test_events_past_retention_are_purged_with_their_deliveries_and_attempts(alpha, hook, receiver, settings):
    from apps.webhooks.services import events_purge

    with tenant_activated(alpha):
        document_create(title="Old")
        document_create(title="New")
    run(alpha)
    with tenant_activated(alpha):
        old = Event.objects.get(data__title="Old")
        Event.objects.filter(pk=old.pk).update(
            created_at=timezone.now() - dt.timedelta(seconds=settings.WEBHOOKS_EVENT_RETENTION_SECONDS + 60))
        assert events_purge() == 1
        assert list(Event.objects.values_list("data__title", flat=True)) == ["New"]
        assert Delivery.objects.count() == 1 and Attempt.objects.count() == 1
