"""Document endpoints."""

from __future__ import annotations

import pytest

from apps.billing.models import Plan

pytestmark = pytest.mark.django_db


def create(client, **fields):
    body = {"title": "A document", **fields}
    response = client.post("documents", body)
    assert response.status_code == 201, response.content
    return response


def test_create_then_read_with_etag(api, alpha):
    client = api(alpha, role="member")
    created = create(client, title="Plan", body="text", tags=["Q1", "q1", "ops"], status="published")
    doc = created.json()
    assert created["ETag"] == '"1"' and created["Location"] == f"/api/v1/documents/{doc['id']}"
    assert doc["tags"] == ["ops", "q1"] and doc["author_id"] == client.principal.pk
    fetched = client.get(f"documents/{doc['id']}")
    assert fetched.status_code == 200 and fetched["ETag"] == '"1"'
    assert client.get(f"documents/{doc['id']}", if_none_match='"1"').status_code == 304
    assert client.get(f"documents/{doc['id']}", if_none_match='"0"').status_code == 200


def test_update_needs_if_match_and_rejects_stale_versions(api, alpha):
    client = api(alpha, role="member")
    doc = create(client).json()
    missing = client.patch(f"documents/{doc['id']}", {"title": "New"})
    assert missing.status_code == 428 and missing["Content-Type"] == "application/problem+json"
    updated = client.patch(f"documents/{doc['id']}", {"title": "New"}, if_match='"1"')
    assert updated.status_code == 200 and updated["ETag"] == '"2"' and updated.json()["version"] == 2
    stale = client.patch(f"documents/{doc['id']}", {"title": "Lost update"}, if_match='"1"')
    assert stale.status_code == 412 and stale.json()["current_version"] == 2
    assert client.get(f"documents/{doc['id']}").json()["title"] == "New"
    assert client.patch(f"documents/{doc['id']}", {"title": "x"}, if_match="garbage").status_code == 412


def test_delete_needs_if_match(api, alpha):
    client = api(alpha, role="member")
    doc = create(client).json()
    assert client.delete(f"documents/{doc['id']}").status_code == 428
    assert client.delete(f"documents/{doc['id']}", if_match='"9"').status_code == 412
    assert client.delete(f"documents/{doc['id']}", if_match='"1"').status_code == 204
    assert client.get(f"documents/{doc['id']}").status_code == 404
    assert client.delete(f"documents/{doc['id']}", if_match='"1"').status_code == 404


def test_cursor_pages_filters_and_ordering(api, alpha):
    client = api(alpha, role="member")
    for i in range(7):
        create(client, title=f"doc {i}", status="published" if i % 2 else "draft", tags=["even"] if i % 2 == 0 else [])
    seen, path = [], "documents?page_size=3&ordering=title"
    while path:
        page = client.get(path).json()
        seen += [d["title"] for d in page["results"]]
        path = page["next"].split("/api/v1/")[1] if page["next"] else None
    assert seen == [f"doc {i}" for i in range(7)]
    assert {d["title"] for d in client.get("documents?status=published").json()["results"]} == {"doc 1", "doc 3", "doc 5"}
    assert len(client.get("documents?tag=even").json()["results"]) == 4
    assert [d["title"] for d in client.get("documents?q=doc 6").json()["results"]] == ["doc 6"]


@pytest.mark.parametrize(
    ("query", "field"),
    [("status=bogus", "status"), ("ordering=body", "ordering"), ("page_size=0", "page_size"),
     ("created_after=yesterday", "created_after"), ("colour=red", "colour"), ("author_id=x", "author_id")],
)
def test_bad_query_parameters_are_400_with_field_errors(api, alpha, query, field):
    response = api(alpha).get(f"documents?{query}")
    assert response.status_code == 400
    assert field in response.json()["errors"]


@pytest.mark.parametrize(
    ("body", "field"),
    [({"title": ""}, "title"), ({"title": "x" * 301}, "title"), ({"title": "x", "status": "gone"}, "status"),
     ({"title": "x", "tags": "notalist"}, "tags"), ({"title": "x", "unknown": 1}, "unknown"), ({"body": "no title"}, "title"),
     ({"title": 5}, None), ([1, 2], None), ({"title": "x", "tags": [0]}, "tags"),
     ({"title": "x", "tags": ["ok", True]}, "tags"), ({"title": "x", "tags": [None]}, "tags")],
)
def test_invalid_bodies_are_400(api, alpha, body, field):
    response = api(alpha).post("documents", body)
    assert response.status_code == 400, response.content
    if field:
        assert field in response.json()["errors"]


def test_malformed_json_and_oversized_bodies(api, alpha, settings):
    client = api(alpha)
    assert client.post("documents", '{"title": ').status_code == 400
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = client.post("documents", {"title": "x", "body": "y" * 5000})
    assert response.status_code == 413
    assert response["Content-Type"] == "application/problem+json"


def test_bulk_create_up_to_500(api, alpha):
    client = api(alpha, role="member")
    response = client.post("documents/bulk", {"documents": [{"title": f"bulk {i}"} for i in range(500)]})
    assert response.status_code == 201 and response.json()["created"] == 500
    too_many = client.post("documents/bulk", {"documents": [{"title": "x"}] * 501})
    assert too_many.status_code == 400
    one_bad = client.post("documents/bulk", {"documents": [{"title": "ok"}, {"title": ""}]})
    assert one_bad.status_code == 400 and one_bad.json()["errors"]["documents"]["1"]["title"]
    assert client.get("usage").json()["quotas"]["documents"]["used"] == 500


def test_viewers_read_but_cannot_write(api, alpha):
    viewer = api(alpha, role="viewer")
    assert viewer.get("documents").status_code == 200
    assert viewer.post("documents", {"title": "no"}).status_code == 403
    read_key = api(alpha, via="key", scopes=["read"])
    assert read_key.get("documents").status_code == 200
    assert read_key.post("documents", {"title": "no"}).status_code == 403


def test_unauthenticated_is_401(alpha, tenants):
    from conftest import ApiClient

    response = ApiClient(alpha, None).get("documents")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert ApiClient(alpha, "sk_nonsense").get("documents").status_code == 401
    assert ApiClient(alpha, "ut_forged.token").get("documents").status_code == 401


def test_document_quota_names_the_plan_that_lifts_it(api, alpha):
    Plan.objects.filter(code="free").update(max_documents=2)
    client = api(alpha, role="member")
    create(client)
    create(client)
    response = client.post("documents", {"title": "third"})
    assert response.status_code == 403
    body = response.json()
    assert body["quota"] == "documents" and body["limit"] == 2 and body["upgrade_plan"] == "pro"
    assert "Pro plan allows" in body["detail"]
    assert client.post("documents/bulk", {"documents": [{"title": "a"}]}).status_code == 403


def test_writes_are_audited_with_request_id_and_changes(api, alpha):
    client = api(alpha, role="admin")
    doc = client.post("documents", {"title": "Audited"}, x_request_id="req-audit-1").json()
    client.patch(f"documents/{doc['id']}", {"status": "published"}, if_match='"1"', x_request_id="req-audit-2")
    entries = client.get(f"audit?object_type=document&object_id={doc['id']}").json()["results"]
    assert [(e["action"], e["request_id"]) for e in entries] == [("update", "req-audit-2"), ("create", "req-audit-1")]
    assert entries[0]["changes"] == {"status": ["draft", "published"], "version": [1, 2]}
    assert entries[0]["actor_type"] == "user" and entries[0]["actor_id"] == client.principal.pk


def test_admin_shows_the_quota_on_the_form(alpha):
    from django.test import Client

    Plan.objects.filter(code="free").update(max_documents=0)
    admin = Client(HTTP_HOST="alpha.localhost")
    admin.post("/admin/login/?next=/admin/", {"username": "owner@alpha.test", "password": "alpha-pass"})
    response = admin.post("/admin/content/document/add/", {"title": "Over", "status": "draft"})
    assert response.status_code == 200 and b"Free plan allows 0 documents" in response.content
