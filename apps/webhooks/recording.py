"""Events written in the transaction of the change they announce.

The domain apps announce typed changes through the outbox app's event
functions (``tenant_events_emit`` / ``control_events_emit``); this module is
the recorder this app registers there (apps.py):

* a tenant-plane change (documents, exports, quota warnings) commits on the
  tenant's shard: its events are rows in the tenant's schema, written by the
  same transaction (one statement; none when no endpoint wants the type). A
  rollback leaves nothing; a commit leaves rows that the delivery run, or
  else the sweep, will find; the run makes their deliveries (fan-out).
* a control-plane change (members, the plan) commits on the control
  database, which no shard transaction spans: it writes one control-outbox
  row in its own transaction, and ``webhooks.record`` writes the events into
  the tenant's schema from it, idempotently (the ids derive from the outbox
  row's id, so a redelivered message adds nothing).

Each event carries a ``sequence``: the clock of the database that committed
the change, in microseconds, read inside that transaction after the change's
own row locks, so it grows with every change of one object.
"""

from __future__ import annotations

import json
import uuid

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections, transaction
from django.utils import timezone

from apps.tenancy.context import require_active_tenant
from apps.tenancy.routers import tenant_write_alias

from .catalogue import CATALOGUE, EventType
from .models import Endpoint, Event

CLOCK = "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint"
# One statement, one round trip, whatever the number of events: the events,
# if an enabled endpoint wants the type (a tenant without one records
# nothing). Their deliveries are made by the tenant's run (delivery.fan_out),
# off the write's path.
WRITE_SQL = f"""
INSERT INTO {{event}} (id, type, schema_version, object_type, object_id, sequence, data, created_at, fanned_out)
SELECT item.id, %s, %s, %s, item.object_id, coalesce(%s::bigint, {CLOCK}), item.data, %s, false
FROM (VALUES {{rows}}) AS item(id, object_id, data)
WHERE EXISTS (SELECT 1 FROM {{endpoint}} WHERE enabled AND event_types && ARRAY['*', %s]::varchar[])
ON CONFLICT (id) DO NOTHING
"""
ROW = "(%s::uuid, %s::varchar, %s::jsonb)"


def _spec(event_type: str) -> EventType:
    spec = CATALOGUE.get(event_type)
    if spec is None:
        raise ValueError(f"{event_type!r} is not in the webhook event catalogue")
    return spec


def _items_checked(items: list[dict]) -> list[dict]:
    for item in items:
        if set(item) != {"object_id", "data"}:
            raise ValueError("an event item is {'object_id': ..., 'data': {...}}")
    return items


def write_events(alias: str, spec: EventType, items: list[dict], *, sequence: int | None = None,
                 ids: list[uuid.UUID] | None = None) -> int:
    """Insert the events an enabled endpoint wants (given ``ids``, events
    already there are left as they are); returns how many were written.
    ``sequence`` defaults to this database's clock."""
    quote = connections[alias].ops.quote_name
    rows = [value for n, item in enumerate(_items_checked(items)) for value in (
        ids[n] if ids else uuid.uuid4(), str(item["object_id"]), json.dumps(item["data"], cls=DjangoJSONEncoder))]
    sql = WRITE_SQL.format(endpoint=quote(Endpoint._meta.db_table), event=quote(Event._meta.db_table),
                           rows=", ".join([ROW] * len(items)))
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, [spec.name, spec.version, spec.object_type, sequence, timezone.now(), *rows, spec.name])
        return cursor.rowcount


def record_tenant_events(event_type: str, items: list[dict]) -> None:
    """The tenant-plane recorder: inside the change's transaction on the
    active tenant's shard. The tenant's delivery run is woken after commit."""
    from .wakeups import waker

    spec = _spec(event_type)
    tenant = require_active_tenant()
    alias = tenant_write_alias(tenant)
    if write_events(alias, spec, items):
        transaction.on_commit(lambda: waker.submit(tenant.pk, tenant.slug), using=alias)


def record_control_events(event_type: str, items: list[dict], *, tenant_id: int) -> None:
    """The control-plane recorder: inside the change's transaction on the
    control database, one control-outbox row for ``webhooks.record``."""
    from apps.jobs.services import control_outbox_enqueue
    from apps.tenancy.models import Tenant

    _spec(event_type)
    tenant = Tenant.objects.filter(pk=tenant_id).values("slug", "schema_name").first()
    if tenant is None or tenant["schema_name"] == "public":
        return  # the platform's own tenant has no webhooks
    with connections["default"].cursor() as cursor:
        cursor.execute(f"SELECT {CLOCK}")
        sequence = cursor.fetchone()[0]
    from .tasks import record

    control_outbox_enqueue(record, kwargs={"event_type": event_type, "items": _items_checked(items),
                                           "sequence": sequence},
                           headers={"tenant_id": tenant_id, "tenant_slug": tenant["slug"]})


def record_relayed_events(event_type: str, items: list[dict], sequence: int, *, source: str) -> int:
    """Write control-plane events into the active tenant's schema, once per
    ``source`` (the outbox row's id); returns how many were written."""
    spec = _spec(event_type)
    base = uuid.UUID(source) if _is_uuid(source) else uuid.uuid5(uuid.NAMESPACE_URL, source)
    with transaction.atomic(using=tenant_write_alias()):
        return write_events(tenant_write_alias(), spec, items, sequence=sequence,
                            ids=[uuid.uuid5(base, str(n)) for n in range(len(items))])


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except (ValueError, TypeError):
        return False
    return True
