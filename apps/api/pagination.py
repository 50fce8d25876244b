from django.core.validators import RegexValidator
from rest_framework import serializers
from rest_framework.pagination import CursorPagination

from .serializers import StrictSerializer


class TenantCursorPagination(CursorPagination):
    """Stable pages over changing data: an opaque cursor, not an offset."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    ordering = "-created_at"


class PageQuery(StrictSerializer):
    """The query parameters of a cursor page (TenantCursorPagination reads
    them); a list's own filters extend it."""

    # DRF's cursors are base64 text: anything else is refused as a parameter
    # (400), not looked up (404), and a cursor costs at most 3 bytes a
    # character in the URL.
    cursor = serializers.CharField(required=False, max_length=500, validators=[
        RegexValidator(r"^[A-Za-z0-9+/]+={0,2}$", "A cursor from a page's next or previous link.")],
        help_text="From a page's next or previous link.")
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=TenantCursorPagination.max_page_size)


def paginated(serializer_class, name: str):
    """The documented shape of a cursor page of ``serializer_class`` items."""
    return type(name, (serializers.Serializer,), {
        "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True),
        "results": serializer_class(many=True),
        "__module__": serializer_class.__module__,
    })
