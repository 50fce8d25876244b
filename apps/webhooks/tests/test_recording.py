"""Events are written in the transaction of their change: a rollback leaves
nothing, a commit leaves the event and one delivery per endpoint that wants it;
control-plane changes travel through the control outbox, once."""

from __future__ import annotations

import pytest
from django.db import transaction

from apps.content.services import document_create, document_delete, document_update
from apps.tenancy.activation import tenant_activated
from apps.webhooks.models import Delivery, Event
from apps.webhooks.services import endpoint_create
from apps.webhooks.tests.helpers import fanned_out

pytestmark = pytest.mark.django_db


def test_a_document_write_records_its_event_in_its_transaction_and_the_run_makes_its_delivery(alpha, hook):
    with tenant_activated(alpha):
        document = document_create(title="Hello")
        event = Event.objects.get(type="document.created")
        assert (event.object_type, event.object_id, event.data["title"]) == ("document", str(document.pk), "Hello")
        assert not event.fanned_out and not Delivery.objects.exists()
    fanned_out(alpha)
    with tenant_activated(alpha):
        assert list(Delivery.objects.values_list("event_id", "endpoint_id", "state")) == [
            (event.id, hook.endpoint.pk, "pending")]


def test_a_tenant_whose_endpoints_want_nothing_of_it_records_nothing(alpha, receiver, roomy):
    with tenant_activated(alpha):
        endpoint_create(url=f"{receiver.url}/members", event_types=["member.added"])
        document_create(title="Unwanted")
        assert not Event.objects.exists()


def test_later_events_of_one_object_wait_behind_the_first(alpha, hook):
    with tenant_activated(alpha):
        document = document_create(title="v1")
        document_update(document_id=document.pk, expected_version=1, changes={"title": "v2"})
    fanned_out(alpha)
    with tenant_activated(alpha):
        document_update(document_id=document.pk, expected_version=2, changes={"title": "v3"})
    fanned_out(alpha)
    with tenant_activated(alpha):
        states = list(Delivery.objects.order_by("sequence").values_list("event__type", "state"))
    assert states == [("document.created", "pending"), ("document.updated", "waiting"),
                      ("document.updated", "waiting")]


def test_a_rolled_back_write_records_nothing(alpha, hook):
    with tenant_activated(alpha):
        with pytest.raises(RuntimeError), transaction.atomic(using="shard_main"):
            document_create(title="Never")
            raise RuntimeError("the change fails after its event was written")
        assert not Event.objects.exists() and not Delivery.objects.exists()


def test_each_change_of_one_object_has_a_larger_sequence_and_its_own_type(alpha, hook):
    with tenant_activated(alpha):
        document = document_create(title="v1")
        document = document_update(document_id=document.pk, expected_version=1, changes={"title": "v2"})
        document_delete(document_id=document.pk, expected_version=2)
        events = list(Event.objects.order_by("sequence"))
    assert [e.type for e in events] == ["document.created", "document.updated", "document.deleted"]
    assert events[1].data["changed"] == ["title"] and events[2].data == {"id": document.pk, "version": 2}
    assert len({e.sequence for e in events}) == 3


def test_only_enabled_endpoints_that_want_the_type_get_a_delivery(alpha, hook, receiver):
    from apps.webhooks.services import endpoint_update

    with tenant_activated(alpha):
        members_only = endpoint_create(url=f"{receiver.url}/members", event_types=["member.added"]).endpoint
        off = endpoint_create(url=f"{receiver.url}/off", event_types=["*"]).endpoint
        endpoint_update(endpoint=off, changes={"enabled": False})
        document_create(title="Hello")
    fanned_out(alpha)
    with tenant_activated(alpha):
        wanted_by = set(Delivery.objects.values_list("endpoint_id", flat=True))
    assert wanted_by == {hook.endpoint.pk} and members_only.pk not in wanted_by


def test_a_bulk_write_records_one_event_per_document(alpha, hook):
    from apps.content.services import DocumentInput, document_bulk_create

    with tenant_activated(alpha):
        created = document_bulk_create(documents=[DocumentInput(title=f"d{n}") for n in range(50)])
        assert Event.objects.filter(type="document.created").count() == 50
    fanned_out(alpha)
    with tenant_activated(alpha):
        assert Delivery.objects.count() == 50
    assert len(created) == 50


def test_control_plane_changes_reach_the_tenant_through_the_control_outbox_once(
        alpha, hook, django_capture_on_commit_callbacks, outbox_inline):
    from apps.accounts.models import User
    from apps.accounts.services import membership_grant, membership_remove
    from apps.billing.services import subscription_change_plan
    from apps.tenancy.models import Tenant

    user = User.objects.create_user(email="new@alpha.example", password="password-123")
    with django_capture_on_commit_callbacks(execute=True, using="default"):
        membership = membership_grant(user=user, tenant_id=alpha.pk, role="member")
    membership_id = membership.pk  # gone from the instance once removed
    with django_capture_on_commit_callbacks(execute=True, using="default"):
        membership_remove(membership=membership, acting_role="owner")
    with django_capture_on_commit_callbacks(execute=True, using="default"):
        # A copy: the session's tenant object would keep the new plan after the rollback.
        subscription_change_plan(tenant=Tenant.objects.get(pk=alpha.pk), plan_code="pro")
    assert outbox_inline.count("webhooks.record") == 3
    fanned_out(alpha)
    with tenant_activated(alpha):
        events = list(Event.objects.order_by("sequence"))
        assert [e.type for e in events] == ["member.added", "member.removed", "tenant.plan_changed"]
        assert events[0].data == {"membership_id": membership_id, "user_id": user.pk, "email": user.email,
                                  "role": "member"}
        assert events[2].data == {"from_plan": "free", "to_plan": "pro"}
        assert events[0].sequence < events[1].sequence
        assert Delivery.objects.filter(endpoint=hook.endpoint).count() == 3


def test_a_redelivered_control_message_records_its_events_once(alpha, hook):
    from apps.webhooks.recording import record_relayed_events

    items = [{"object_id": 7, "data": {"membership_id": 7, "user_id": 1, "email": "a@b.c", "role": "member"}}]
    with tenant_activated(alpha):
        for _ in range(2):
            record_relayed_events("member.added", items, 123, source="3f2b6a2e-0000-4000-8000-000000000001")
    fanned_out(alpha)
    with tenant_activated(alpha):
        assert Event.objects.count() == 1 and Delivery.objects.count() == 1


def test_an_event_type_outside_the_catalogue_is_refused_where_it_is_emitted(alpha, hook):
    from apps.outbox.services import tenant_events_emit

    with tenant_activated(alpha), pytest.raises(ValueError):
        tenant_events_emit("document.renamed", [{"object_id": 1, "data": {}}])
