"""Full-text search over the active tenant's documents."""

from __future__ import annotations

from django.contrib.postgres.search import SearchHeadline, SearchQuery, SearchRank
from django.db.models import F, Value

from apps.content.models import Document
from apps.flags.selectors import flag_enabled
from apps.tenancy.context import require_active_tenant

from .services import SEARCH_CONFIG

RANKING_V2 = "search-ranking-v2"


def document_search(*, query: str, limit: int = 20, status: str | None = None):
    """Documents matching ``query`` (web-search syntax: words, "phrases", -not, or),
    best first, with a highlighted snippet of the body."""
    search_query = SearchQuery(query, search_type="websearch", config=SEARCH_CONFIG)
    if flag_enabled(RANKING_V2, tenant=require_active_tenant()):
        # Cover density (how close the terms are), normalised by length:
        # short, focused documents beat long ones that mention the words once.
        rank = SearchRank(F("search_entry__vector"), search_query, cover_density=True, normalization=Value(1 | 32))
    else:
        rank = SearchRank(F("search_entry__vector"), search_query)
    documents = (
        Document.objects.filter(search_entry__vector=search_query)
        .annotate(
            rank=rank,
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
