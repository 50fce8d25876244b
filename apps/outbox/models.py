from apps.jobs.models import AbstractOutboxMessage


class TenantOutboxMessage(AbstractOutboxMessage):
    class Meta(AbstractOutboxMessage.Meta):
        db_table = "outbox_message"
