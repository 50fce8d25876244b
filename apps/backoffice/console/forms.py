"""Console forms: every action form asks why."""

from __future__ import annotations

from django import forms

from apps.accounts.models import User
from apps.reports.models import ExportRequest

REASON_HELP = "Kept with the action in the operator log, with your name and the time."


class ReasonForm(forms.Form):
    reason = forms.CharField(min_length=3, max_length=2000, widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
                             help_text=REASON_HELP,
                             error_messages={"required": "Say why: a reason is required for every action.",
                                             "min_length": "Say why in a few words (3 characters at least)."})


class MoveForm(ReasonForm):
    target = forms.ChoiceField(label="Target shard")

    def __init__(self, *args, shards=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["target"].choices = [(s.name, f"{s.name} ({s.tenant_count} tenants)") for s in shards]


class ExportForm(ReasonForm):
    kind = forms.ChoiceField(choices=ExportRequest.Kind.choices, initial=ExportRequest.Kind.DOCUMENTS)
    format = forms.ChoiceField(choices=ExportRequest.Format.choices, initial=ExportRequest.Format.CSV)


class SupportForm(ReasonForm):
    operator = forms.ModelChoiceField(queryset=User.objects.filter(is_superuser=True, is_active=True).order_by("email"),
                                      to_field_name="email", label="Operator")
    hours = forms.FloatField(min_value=0.1, max_value=72, initial=4, label="Hours")


class DeadLetterActionForm(ReasonForm):
    operation = forms.ChoiceField(choices=[("replay", "Replay"), ("discard", "Discard")])
    ids = forms.CharField(widget=forms.HiddenInput)

    def clean_ids(self) -> list[int]:
        raw = self.cleaned_data["ids"]
        try:
            ids = sorted({int(part) for part in raw.split(",") if part.strip()})
        except ValueError:
            raise forms.ValidationError("Dead letter ids are numbers.") from None
        if not ids:
            raise forms.ValidationError("Choose at least one dead letter.")
        return ids


class OffboardForm(ReasonForm):
    now = forms.BooleanField(required=False, label="Erase at the next erasure run, without the grace period")
