"""Forms of the tenant admin pages: they check the shape of an input; the
services check the rules."""

from __future__ import annotations

import datetime as dt
import secrets

from django import forms

from apps.accounts.models import ApiKey, Membership
from apps.audit.models import AuditEntry
from apps.reports.models import ExportRequest

FIRST_DAY, LAST_DAY = dt.date(1970, 1, 1), dt.date(9998, 12, 31)
INVITABLE_ROLES = [(r.value, r.label) for r in Membership.Role if r != Membership.Role.OWNER]


class InviteForm(forms.Form):
    email = forms.EmailField(max_length=254, label="Email")
    role = forms.ChoiceField(choices=INVITABLE_ROLES, initial=Membership.Role.MEMBER, label="Role")


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Membership.Role.choices, label="Role")


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=100, label="Name")
    scopes = forms.MultipleChoiceField(choices=ApiKey.Scope.choices, widget=forms.CheckboxSelectMultiple,
                                       label="Scopes", initial=[ApiKey.Scope.READ])
    # One-off per rendered form: sending it again (a reload of the page that
    # showed the new key) creates nothing (see api_keys.api_key_create).
    submission = forms.CharField(widget=forms.HiddenInput, max_length=64, label="Form")

    @classmethod
    def fresh(cls) -> ApiKeyForm:
        return cls(initial={"submission": secrets.token_urlsafe(18)})


class AuditFilterForm(forms.Form):
    actor = forms.EmailField(required=False, max_length=254, label="Actor (email)")
    action = forms.ChoiceField(choices=[("", "any")] + AuditEntry.Action.choices, required=False, label="Action")
    object_type = forms.CharField(required=False, max_length=100, label="Object type")
    since = forms.DateField(required=False, label="From (day)", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="To (day, inclusive)",
                            widget=forms.DateInput(attrs={"type": "date"}))
    before = forms.CharField(required=False, max_length=100, widget=forms.HiddenInput)

    def clean(self):
        data = super().clean()
        for name in ("since", "until"):
            # The last day's end is the next midnight: 9999-12-31 has none.
            if data.get(name) and not FIRST_DAY <= data[name] <= LAST_DAY:
                self.add_error(name, f"Choose a day from {FIRST_DAY:%Y-%m-%d} to {LAST_DAY:%Y-%m-%d}.")
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            self.add_error("until", "The last day must not be before the first day.")
        return data


class ExportForm(forms.Form):
    kind = forms.ChoiceField(choices=ExportRequest.Kind.choices, label="What")
    format = forms.ChoiceField(choices=[(f, f.upper()) for f in ExportRequest.Format.values],
                               initial=ExportRequest.Format.CSV, label="Format")
