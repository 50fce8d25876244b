"""Tenant data written the way clients write it, with a marker in every place a tenant can write."""

from __future__ import annotations

from django.utils import timezone


def plant(client, marker: str) -> dict:
    """Through the API of ``client``'s tenant: documents (title, body, tags),
    an update and a delete (audit entries), events, an invitation, an API
    key, a finished export with its file, a cached read. Needs outbox tasks
    to run inline (``outbox_inline``) for search entries and the export."""
    created = client.post("documents", {"title": f"{marker} title", "body": f"body {marker}", "tags": [marker.lower()]})
    assert created.status_code == 201, created.content
    doc = created.json()
    client.patch(f"documents/{doc['id']}", {"body": f"changed {marker}"}, **{"If-Match": f'"{doc["version"]}"'})
    gone = client.post("documents", {"title": f"{marker} to delete"}).json()
    client.delete(f"documents/{gone['id']}", **{"If-Match": f'"{gone["version"]}"'})
    client.post("documents/bulk", {"documents": [{"title": f"bulk {i}", "tags": ["bulk"]} for i in range(5)]})
    now = timezone.now().isoformat()
    accepted = client.post("events", {"events": [{"type": "signup", "timestamp": now, "properties": {"m": marker}},
                                                 {"type": "click", "timestamp": now}]})
    assert accepted.status_code in (200, 201, 202), accepted.content
    invited = client.post("invitations", {"email": f"{marker.lower()}@invitee.example", "role": "member"})
    assert invited.status_code == 201, invited.content
    key = client.post("api-keys", {"name": f"key {marker}", "scopes": ["read"]})
    assert key.status_code == 201, key.content
    export = client.post("exports", {"kind": "documents", "format": "csv"})
    assert export.status_code == 202, export.content
    assert client.get("documents").status_code == 200  # a cached list, when the tenant cache holds one
    assert client.get("usage").status_code == 200
    return {"document": doc}
