from django.contrib import admin, messages

from . import services
from .models import DeadLetter, OutboxMessage


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    list_display = ["id", "task_name", "tenant_slug", "attempts", "status", "last_failed_at", "short_exception"]
    list_filter = ["status", "task_name", "queue"]
    search_fields = ["task_name", "tenant_slug", "exception", "task_id"]
    readonly_fields = [f.name for f in DeadLetter._meta.fields]
    actions = ["replay", "discard"]

    @admin.display(description="exception")
    def short_exception(self, obj) -> str:
        return obj.exception[:80]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Replay: send again with the original tenant and arguments")
    def replay(self, request, queryset):
        replayed = 0
        for dead_letter in queryset.filter(status=DeadLetter.Status.DEAD):
            try:
                services.dead_letter_replay(dead_letter=dead_letter)
                replayed += 1
            except Exception as exc:  # broker down: say so, keep the row
                self.message_user(request, f"{dead_letter.pk}: not replayed: {exc}", messages.ERROR)
        self.message_user(request, f"{replayed} task(s) sent again.")

    @admin.action(description="Discard")
    def discard(self, request, queryset):
        count = queryset.filter(status=DeadLetter.Status.DEAD).update(status=DeadLetter.Status.DISCARDED)
        self.message_user(request, f"{count} dead letter(s) discarded.")


@admin.register(OutboxMessage)
class OutboxMessageAdmin(admin.ModelAdmin):
    list_display = ["id", "task_name", "created_at", "sent_at", "attempts", "last_error"]
    list_filter = ["task_name"]
    readonly_fields = [f.name for f in OutboxMessage._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False
