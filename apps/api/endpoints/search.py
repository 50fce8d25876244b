from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from apps.api.serializers import StrictSerializer
from apps.api.views import TenantAPIView, query_parameters
from apps.content.models import Document
from apps.search.selectors import document_search


class SearchResult(serializers.Serializer):
    id = serializers.IntegerField()
    title = serializers.CharField()
    status = serializers.CharField()
    rank = serializers.FloatField()
    snippet = serializers.CharField()


class SearchApi(TenantAPIView):
    rate_scope = "search"
    class SearchFilter(StrictSerializer):
        q = serializers.CharField(min_length=1, max_length=200, help_text="words, \"phrases\", -excluded, or")
        limit = serializers.IntegerField(min_value=1, max_value=100, default=20)
        status = serializers.ChoiceField(choices=Document.Status.choices, required=False)

    class SearchOutput(serializers.Serializer):
        query = serializers.CharField()
        results = SearchResult(many=True)

    @query_parameters(SearchFilter)
    @extend_schema(responses=SearchOutput, operation_id="search")
    def get(self, request):
        filters = self.query
        results = document_search(query=filters["q"], limit=filters["limit"], status=filters.get("status"))
        return Response({"query": filters["q"], "results": SearchResult(results, many=True).data})
