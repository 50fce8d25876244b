"""Writes to webhook endpoints and deliveries. Callers have a tenant active.

The API, the tenant admin and the operator console all come here, so the
same rules hold whichever way a change arrives: the destination check, the
plan's endpoint limit, the secret shown once, the tenant's audit log.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connections, transaction
from django.utils import timezone

from apps.audit.services import audit_record
from apps.billing.selectors import plan_of
from apps.http.errors import QuotaExceeded
from apps.tenancy.context import require_active_tenant
from apps.tenancy.routers import tenant_write_alias

from . import destinations, signing
from .catalogue import ALL, CATALOGUE
from .models import Delivery, Endpoint, Event

UPDATABLE = {"url", "description", "event_types", "enabled"}


@dataclass(frozen=True)
class EndpointWithSecret:
    endpoint: Endpoint
    secret: str  # shown once: only a seed and a hash are stored


def endpoint_limit(tenant) -> int:
    """Endpoints the tenant's plan allows (WEBHOOKS_ENDPOINTS_PER_PLAN by plan code)."""
    return settings.WEBHOOKS_ENDPOINTS_PER_PLAN.get(plan_of(tenant).code, settings.WEBHOOKS_ENDPOINTS_DEFAULT)


def _url_error(url: str) -> str | None:
    if len(url) > 2000:
        return "A URL is at most 2,000 characters."
    try:
        destinations.check_url(url)
    except destinations.DestinationRefused as exc:
        return str(exc)
    return None


def _event_types(wanted) -> list[str]:
    wanted = sorted(set(wanted or []))
    if not wanted or any(t != ALL and t not in CATALOGUE for t in wanted):
        raise ValidationError({"event_types": f"Choose event types from {', '.join(sorted(CATALOGUE))}, "
                                              f"or {ALL} for all."})
    return [ALL] if ALL in wanted else wanted


def _clean(values: dict) -> dict:
    errors = {}
    if "url" in values:
        values["url"] = (values["url"] or "").strip()
        if error := _url_error(values["url"]):
            errors["url"] = error
    if "event_types" in values:
        try:
            values["event_types"] = _event_types(values["event_types"])
        except ValidationError as exc:
            errors.update(exc.message_dict)
    if "description" in values:
        values["description"] = (values["description"] or "").strip()[:200]
    if errors:
        raise ValidationError(errors)
    return values


def _enforce_limit(tenant) -> None:
    used = Endpoint.objects.using(tenant_write_alias(tenant)).count()
    limit = endpoint_limit(tenant)
    if used + 1 > limit:
        plan = plan_of(tenant)
        raise QuotaExceeded(f"The {plan.name} plan allows {limit} webhook endpoint(s).", quota="webhook_endpoints",
                            limit=limit, used=used, requested=1, plan=plan.code)


def endpoint_create(*, url: str, event_types: list[str], description: str = "",
                    created_by_id: int | None = None) -> EndpointWithSecret:
    tenant = require_active_tenant()
    values = _clean({"url": url, "event_types": event_types, "description": description})
    secret, seed, digest = signing.new_secret()
    with transaction.atomic(using=tenant_write_alias(tenant)):
        _enforce_limit(tenant)
        endpoint = Endpoint.objects.create(secret_seed=seed, secret_hash=digest, created_by_id=created_by_id,
                                           **values)
        audit_record(action="create", object_type="webhook_endpoint", object_id=endpoint.pk,
                     changes={"url": [None, endpoint.url], "event_types": [None, endpoint.event_types]})
    return EndpointWithSecret(endpoint, secret)


def endpoint_update(*, endpoint: Endpoint, changes: dict) -> Endpoint:
    """Change the URL, description, event types, or enable/disable it.
    Enabling a disabled endpoint resumes its deliveries (and its failure clock)."""
    unknown = set(changes) - UPDATABLE
    if unknown:
        raise ValidationError({name: "This field cannot be changed." for name in unknown})
    changes = _clean(dict(changes))
    with transaction.atomic(using=tenant_write_alias()):
        locked = Endpoint.objects.select_for_update().get(pk=endpoint.pk)
        before = {name: getattr(locked, name) for name in changes}
        for name, value in changes.items():
            setattr(locked, name, value)
        if changes.get("enabled") is True and not before.get("enabled", True):
            locked.disabled_reason, locked.disabled_at, locked.failing_since = "", None, None
        elif changes.get("enabled") is False and before.get("enabled", False):
            locked.disabled_reason, locked.disabled_at = Endpoint.DisabledReason.MANUAL, timezone.now()
        locked.save()
        audit_record(action="update", object_type="webhook_endpoint", object_id=locked.pk,
                     changes={name: [before[name], getattr(locked, name)] for name in changes
                              if before[name] != getattr(locked, name)})
    if changes.get("enabled"):
        _wake_after_commit()
    return locked


def endpoint_rotate_secret(*, endpoint: Endpoint, overlap_seconds: int | None = None) -> EndpointWithSecret:
    """A new secret, shown once; the one it replaces keeps signing (both
    signatures are sent) for ``overlap_seconds`` (WEBHOOKS_ROTATION_OVERLAP_SECONDS)."""
    overlap = settings.WEBHOOKS_ROTATION_OVERLAP_SECONDS if overlap_seconds is None else overlap_seconds
    if not 0 <= overlap <= 7 * 24 * 3600:
        raise ValidationError({"overlap_seconds": "Between 0 and 604800 seconds (7 days)."})
    secret, seed, digest = signing.new_secret()
    with transaction.atomic(using=tenant_write_alias()):
        locked = Endpoint.objects.select_for_update().get(pk=endpoint.pk)
        locked.previous_secret_seed, locked.previous_secret_hash = locked.secret_seed, locked.secret_hash
        locked.previous_secret_expires_at = timezone.now() + dt.timedelta(seconds=overlap)
        locked.secret_seed, locked.secret_hash = seed, digest
        locked.save()
        audit_record(action="update", object_type="webhook_endpoint", object_id=locked.pk,
                     changes={"secret": ["rotated", f"previous valid for {overlap} s"]})
    return EndpointWithSecret(locked, secret)


def endpoint_delete(*, endpoint: Endpoint) -> None:
    """Remove the endpoint with its deliveries and their attempts (the events stay)."""
    alias = tenant_write_alias()
    quote = connections[alias].ops.quote_name
    attempt, delivery = quote("webhooks_attempt"), quote(Delivery._meta.db_table)
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        # A run recording attempts of these deliveries finishes first (its
        # update holds their rows); one that starts after finds them gone.
        cursor.execute(f"SELECT id FROM {delivery} WHERE endpoint_id = %s ORDER BY id FOR UPDATE",  # noqa: S608
                       [endpoint.pk])
        cursor.execute(f"DELETE FROM {attempt} WHERE delivery_id IN "  # noqa: S608 (quoted names)
                       f"(SELECT id FROM {delivery} WHERE endpoint_id = %s)", [endpoint.pk])
        cursor.execute(f"DELETE FROM {delivery} WHERE endpoint_id = %s", [endpoint.pk])  # noqa: S608
        Endpoint.objects.filter(pk=endpoint.pk).delete()
        audit_record(action="delete", object_type="webhook_endpoint", object_id=endpoint.pk,
                     changes={"url": [endpoint.url, None]})


# --- repair ---------------------------------------------------------------------------


def _requeue(deliveries) -> int:
    """Send these again from now, with a fresh retry window. (Locked in id
    order first, as every other writer of many deliveries does.)"""
    ids = list(deliveries.select_for_update().order_by("pk").values_list("pk", flat=True))
    return Delivery.objects.filter(pk__in=ids).update(
        state=Delivery.State.PENDING, next_attempt_at=timezone.now(), claimed_until=None, first_attempt_at=None,
        delivered_at=None)


def event_resend(*, event: Event, endpoint: Endpoint | None = None) -> int:
    """Send the event again: to every endpoint it went to, or to ``endpoint``
    (which need not have had it: an endpoint added since may ask for it).
    Its webhook-id is the same, so a receiver that has it can tell."""
    alias = tenant_write_alias()
    with transaction.atomic(using=alias):
        deliveries = Delivery.objects.filter(event=event, state__in=[Delivery.State.DELIVERED,
                                                                      Delivery.State.FAILED])
        if endpoint is not None:
            deliveries = deliveries.filter(endpoint=endpoint)
            Delivery.objects.get_or_create(event=event, endpoint=endpoint, defaults={
                "object_key": f"{event.object_type}:{event.object_id}", "sequence": event.sequence,
                "next_attempt_at": timezone.now()})
        count = _requeue(deliveries) or int(endpoint is not None)
        audit_record(action="update", object_type="webhook_event", object_id=event.public_id,
                     changes={"resent": [None, endpoint.pk if endpoint else "all endpoints"]})
        _wake_after_commit()
    return count


def endpoint_replay(*, endpoint: Endpoint, since: dt.datetime) -> int:
    """Send again every delivery to ``endpoint`` that failed for good since
    ``since`` (an earlier time means all that are kept: 30 days)."""
    with transaction.atomic(using=tenant_write_alias()):
        count = _requeue(Delivery.objects.filter(endpoint=endpoint, state=Delivery.State.FAILED,
                                                 created_at__gte=since))
        audit_record(action="update", object_type="webhook_endpoint", object_id=endpoint.pk,
                     changes={"replayed": [None, count], "since": [None, since.isoformat()]})
        _wake_after_commit()
    return count


def _wake_after_commit() -> None:
    from .wakeups import waker

    tenant = require_active_tenant()
    transaction.on_commit(lambda: waker.submit(tenant.pk, tenant.slug), using=tenant_write_alias(tenant))


# --- the worker's upkeep -------------------------------------------------------------


def wake_if_due() -> int:
    """Queue a run for the active tenant when a delivery is due (the sweep)."""
    from .delivery import due_now, release_orphans
    from .wakeups import wake

    tenant = require_active_tenant()
    alias = tenant_write_alias(tenant)
    release_orphans(alias)
    return int(due_now(alias) and wake(tenant.pk, tenant.slug))


PURGE_BATCH = 5000


def events_purge() -> int:
    """Delete the active tenant's events older than the retention, with their
    deliveries and attempts, PURGE_BATCH events per transaction."""
    alias = tenant_write_alias()
    quote = connections[alias].ops.quote_name
    event, delivery, attempt = quote(Event._meta.db_table), quote(Delivery._meta.db_table), quote("webhooks_attempt")
    cutoff = timezone.now() - dt.timedelta(seconds=settings.WEBHOOKS_EVENT_RETENTION_SECONDS)
    deleted = 0
    while True:
        with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
            cursor.execute(f"SELECT id FROM {event} WHERE created_at < %s ORDER BY created_at LIMIT %s",  # noqa: S608
                           [cutoff, PURGE_BATCH])
            ids = [row[0] for row in cursor.fetchall()]
            if not ids:
                return deleted
            cursor.execute(f"SELECT id FROM {delivery} WHERE event_id = ANY(%s) ORDER BY id FOR UPDATE",  # noqa: S608
                           [ids])
            cursor.execute(f"DELETE FROM {attempt} WHERE delivery_id IN "  # noqa: S608
                           f"(SELECT id FROM {delivery} WHERE event_id = ANY(%s))", [ids])
            cursor.execute(f"DELETE FROM {delivery} WHERE event_id = ANY(%s)", [ids])  # noqa: S608
            cursor.execute(f"DELETE FROM {event} WHERE id = ANY(%s)", [ids])  # noqa: S608
        deleted += len(ids)
