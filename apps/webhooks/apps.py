from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    """Tenant webhooks: the event catalogue, endpoints, signed deliveries
    with retries, and their history. Tenant plane."""

    name = "apps.webhooks"
    label = "webhooks"
    verbose_name = "Webhooks"

    def ready(self) -> None:
        # This app sits above the outbox, notifications and ops and registers
        # with them; they never import it (docs/architecture.md#tiers).
        from apps.notifications.emails import register_resolver
        from apps.ops.collectors import collector_register
        from apps.outbox.services import event_recorder_register

        from . import health, metrics, recording, tasks  # noqa: F401 (tasks and metrics register themselves)

        event_recorder_register("tenant", recording.record_tenant_events)
        event_recorder_register("control", recording.record_control_events)
        collector_register("webhooks", metrics.read_backlog)
        register_resolver(health.EMAIL, health.admin_link)
