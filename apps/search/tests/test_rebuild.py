"""Rebuilding the search index: batches, a resumable checkpoint, no downtime."""

from __future__ import annotations

import pytest
from django.core.management.base import CommandError

from apps.content.models import Document
from apps.search import services
from apps.search.models import IndexRebuild, SearchEntry
from apps.search.selectors import document_search
from apps.tenancy.activation import tenant_activated
from tests.support import command_output

pytestmark = pytest.mark.django_db


def make_documents(n: int) -> list[int]:
    return [d.pk for d in Document.objects.bulk_create(Document(title=f"rebuild word{i}") for i in range(n))]


def test_a_crashed_rebuild_resumes_from_its_checkpoint(alpha, monkeypatch):
    with tenant_activated(alpha):
        ids = make_documents(25)
        real = services.search_index_documents
        calls = []

        def crash_on_second_batch(batch):
            calls.append(list(batch))
            if len(calls) == 2:
                raise RuntimeError("worker died")
            return real(batch)

        monkeypatch.setattr(services, "search_index_documents", crash_on_second_batch)
        with pytest.raises(RuntimeError):
            services.search_rebuild(batch_size=10)
        checkpoint = IndexRebuild.objects.get()
        assert checkpoint.last_document_id == ids[9] and checkpoint.done == 10 and checkpoint.finished_at is None
        # Searches work meanwhile, over what is indexed so far.
        assert len(document_search(query="rebuild", limit=100)) == 10
        monkeypatch.setattr(services, "search_index_documents", real)
        rebuild = services.search_rebuild(batch_size=10)
        assert rebuild.pk == checkpoint.pk and rebuild.done == 25 and rebuild.finished_at
        assert SearchEntry.objects.filter(document_id__in=ids).count() == 25


def test_restart_ignores_an_unfinished_checkpoint(alpha):
    with tenant_activated(alpha):
        make_documents(5)
        IndexRebuild.objects.create(last_document_id=10**9, total=5)
        assert services.search_rebuild(restart=True).done == 5
        assert IndexRebuild.objects.filter(abandoned=True).count() == 1


def test_rebuild_command(alpha, beta):
    with tenant_activated(alpha):
        make_documents(3)
    output = command_output("rebuild_search_index", "--tenant", "alpha", "--batch-size", "2")
    assert "alpha: 2/3" in output and "alpha: 3 documents indexed" in output
    assert "beta: 0 documents indexed" in command_output("rebuild_search_index", "--all")
    with pytest.raises(CommandError, match="No tenant with slug 'nope'"):
        command_output("rebuild_search_index", "--tenant", "nope")
    with pytest.raises(CommandError, match="batch-size"):
        command_output("rebuild_search_index", "--all", "--batch-size", "0")


def test_rebuilding_one_tenant_leaves_the_others_alone(alpha, gamma):
    with tenant_activated(gamma):
        make_documents(2)
    with tenant_activated(alpha):
        make_documents(2)
    command_output("rebuild_search_index", "--tenant", "alpha")
    with tenant_activated(alpha):
        assert SearchEntry.objects.count() == 2
    with tenant_activated(gamma):
        assert SearchEntry.objects.count() == 0 and not IndexRebuild.objects.exists()
