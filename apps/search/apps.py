from django.apps import AppConfig


class SearchConfig(AppConfig):
    name = "apps.search"
    label = "search"
    verbose_name = "Search"

    def ready(self) -> None:
        from apps.outbox.services import tenant_event_subscribe

        from .tasks import index_documents

        # Content announces its changes; the index follows (content does not import search).
        tenant_event_subscribe("documents.changed", index_documents)
