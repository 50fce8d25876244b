import json
from urllib.parse import urlencode

from django.contrib import admin
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html

from .models import DeadLetter, OutboxMessage
from .redaction import redact_text, redacted

# The stored arguments, exception and traceback are shown redacted, never as
# the raw fields (apps/jobs/redaction.py): operators read these pages.
RAW_FIELDS = {"args", "kwargs", "exception", "traceback", "last_error"}


def _json(value) -> str:
    return format_html("<pre>{}</pre>", json.dumps(redacted(value), indent=2, sort_keys=True, default=str))


def _text(value: str) -> str:
    return format_html("<pre>{}</pre>", redact_text(value or ""))


class RedactedArgumentsAdmin(admin.ModelAdmin):
    @admin.display(description="args")
    def shown_args(self, obj) -> str:
        return _json(obj.args)

    @admin.display(description="kwargs")
    def shown_kwargs(self, obj) -> str:
        return _json(obj.kwargs)

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(DeadLetter)
class DeadLetterAdmin(RedactedArgumentsAdmin):
    list_display = ["id", "task_name", "tenant_slug", "attempts", "status", "last_failed_at", "short_exception",
                    "replay_button"]
    list_filter = ["status", "task_name", "queue"]
    search_fields = ["task_name", "tenant_slug", "exception", "task_id"]
    fields = readonly_fields = [*(f.name for f in DeadLetter._meta.fields if f.name not in RAW_FIELDS),
                                "shown_args", "shown_kwargs", "shown_exception", "shown_traceback"]
    actions = ["replay", "discard"]

    @admin.display(description="exception")
    def short_exception(self, obj) -> str:
        return redact_text(obj.exception[:80])

    @admin.display(description="exception")
    def shown_exception(self, obj) -> str:
        return _text(obj.exception)

    @admin.display(description="traceback")
    def shown_traceback(self, obj) -> str:
        return _text(obj.traceback)

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
class OutboxMessageAdmin(RedactedArgumentsAdmin):
    list_display = ["id", "task_name", "created_at", "sent_at", "attempts", "short_error"]
    list_filter = ["task_name"]
    fields = readonly_fields = [*(f.name for f in OutboxMessage._meta.fields if f.name not in RAW_FIELDS),
                                "shown_args", "shown_kwargs", "shown_error"]

    @admin.display(description="last error")
    def short_error(self, obj) -> str:
        return redact_text(obj.last_error[:120])

    @admin.display(description="last error")
    def shown_error(self, obj) -> str:
        return _text(obj.last_error)
