"""Full-text search."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.fixture
def indexed(django_capture_on_commit_callbacks, outbox_inline):
    """Run the after-commit indexing that the test transaction would hold back."""

    def run(action):
        with django_capture_on_commit_callbacks(execute=True, using="shard_main"):
            return action()

    return run


def test_search_ranks_title_matches_first_and_highlights(api, alpha, indexed):
    client = api(alpha, role="member")
    indexed(lambda: client.post("documents", {"title": "Quarterly planning", "body": "Budget review for the team."}))
    indexed(lambda: client.post("documents", {"title": "Team lunch", "body": "We discussed planning the offsite."}))
    indexed(lambda: client.post("documents", {"title": "Unrelated", "body": "Nothing to see."}))
    results = client.get("search?q=planning").json()["results"]
    assert [r["title"] for r in results] == ["Quarterly planning", "Team lunch"]
    assert results[0]["rank"] > results[1]["rank"]
    assert "<mark>planning</mark>" in results[1]["snippet"]


def test_index_follows_updates_and_deletes(api, alpha, indexed):
    client = api(alpha, role="member")
    doc = indexed(lambda: client.post("documents", {"title": "Old words"})).json()
    assert client.get("search?q=old").json()["results"]
    indexed(lambda: client.patch(f"documents/{doc['id']}", {"title": "Fresh words"}, if_match='"1"'))
    assert not client.get("search?q=old").json()["results"]
    assert client.get("search?q=fresh").json()["results"][0]["id"] == doc["id"]
    indexed(lambda: client.delete(f"documents/{doc['id']}", if_match='"2"'))
    assert not client.get("search?q=fresh").json()["results"]


def test_a_rolled_back_write_is_never_indexed(api, alpha, django_capture_on_commit_callbacks):
    from django.db import transaction

    from apps.content.services import document_create
    from apps.search.models import SearchEntry
    from apps.tenancy.activation import tenant_activated

    with tenant_activated(alpha), django_capture_on_commit_callbacks(using="shard_main") as callbacks:
        try:
            with transaction.atomic(using="shard_main"):
                document_create(title="never")
                raise RuntimeError("abort")
        except RuntimeError:
            pass
        assert callbacks == []
        assert not SearchEntry.objects.exists()


@pytest.mark.parametrize("query", ["", "q=", "q=" + "x" * 201, "q=a&limit=0", "q=a&limit=abc", "q=a&extra=1"])
def test_bad_search_parameters_are_400(api, alpha, query):
    assert api(alpha).get(f"search?{query}").status_code == 400


def test_search_syntax_never_errors(api, alpha):
    client = api(alpha)
    from urllib.parse import quote

    for q in ['"unclosed', "a & | !", "-", "or or", "))((", "'; drop table x", "<b>"]:
        assert client.get(f"search?q={quote(q)}").status_code == 200
