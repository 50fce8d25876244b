"""Full-text search over the active tenant's documents."""

from __future__ import annotations

from django.contrib.postgres.search import SearchHeadline, SearchQuery, SearchRank
from django.db.models import F

from apps.content.models import Document

from .services import SEARCH_CONFIG


def document_search(*, query: str, limit: int = 20, status: str | None = None):
    """Documents matching ``query`` (web-search syntax: words, "phrases", -not, or),
    best first, with a highlighted snippet of the body."""
    search_query = SearchQuery(query, search_type="websearch", config=SEARCH_CONFIG)
    documents = (
        Document.objects.filter(search_entry__vector=search_query)
        .annotate(
            rank=SearchRank(F("search_entry__vector"), search_query),
            snippet=SearchHeadline(
                "body", search_query, config=SEARCH_CONFIG, start_sel="<mark>", stop_sel="</mark>",
                max_words=30, min_words=10, max_fragments=2,
            ),
        )
        .order_by("-rank", "-id")
    )
    if status:
        documents = documents.filter(status=status)
    return documents[:limit]
