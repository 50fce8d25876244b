from rest_framework.pagination import CursorPagination


class TenantCursorPagination(CursorPagination):
    """Stable pages over changing data: an opaque cursor, not an offset."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    ordering = "-created_at"


def paginated(serializer_class, name: str):
    """The documented shape of a cursor page of ``serializer_class`` items."""
    from rest_framework import serializers

    return type(name, (serializers.Serializer,), {
        "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True),
        "results": serializer_class(many=True),
        "__module__": serializer_class.__module__,
    })
