from rest_framework.pagination import CursorPagination


class TenantCursorPagination(CursorPagination):
    """Stable pages over changing data: an opaque cursor, not an offset."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    ordering = "-created_at"
