from urllib.parse import urlencode

from django.contrib import admin
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html

from .models import DeadLetter, OutboxMessage


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    list_display = ["id", "task_name", "tenant_slug", "attempts", "status", "last_failed_at", "short_exception",
                    "replay_button"]
    list_filter = ["status", "task_name", "queue"]
    search_fields = ["task_name", "tenant_slug", "exception", "task_id"]
    readonly_fields = [f.name for f in DeadLetter._meta.fields]
    actions = ["replay", "discard"]

    @admin.display(description="exception")
    def short_exception(self, obj) -> str:
        return obj.exception[:80]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="")
    def replay_button(self, obj) -> str:
        if obj.status != DeadLetter.Status.DEAD:
            return ""
        url = reverse("console:dead_letter_confirm") + "?" + urlencode({"operation": "replay", "ids": obj.pk})
        return format_html('<a class="button" href="{}">Replay</a>', url)

    # Replay and discard are operator actions with a reason, recorded: both
    # go to the console's confirmation page, which runs the jobs services.
    def _confirm(self, queryset, operation: str):
        ids = ",".join(str(pk) for pk in queryset.filter(status=DeadLetter.Status.DEAD).values_list("pk", flat=True))
        return HttpResponseRedirect(reverse("console:dead_letter_confirm") + "?" +
                                    urlencode({"operation": operation, "ids": ids}))

    @admin.action(description="Replay: send again with the original tenant and arguments")
    def replay(self, request, queryset):
        return self._confirm(queryset, "replay")

    @admin.action(description="Discard")
    def discard(self, request, queryset):
        return self._confirm(queryset, "discard")


@admin.register(OutboxMessage)
class OutboxMessageAdmin(admin.ModelAdmin):
    list_display = ["id", "task_name", "created_at", "sent_at", "attempts", "last_error"]
    list_filter = ["task_name"]
    readonly_fields = [f.name for f in OutboxMessage._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False
