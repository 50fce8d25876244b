"""Pages a person opens from an email on a tenant's host: accept an
invitation, reset a forgotten password. Plain Django forms (CSRF-protected),
calling the same services as the API."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters

from .passwords import MIN_PASSWORD_LENGTH, password_reset_request, password_reset_user, password_set
from .services import invitation_accept


class NewPasswordForm(forms.Form):
    password = forms.CharField(widget=forms.PasswordInput, min_length=MIN_PASSWORD_LENGTH, max_length=200,
                               required=False)
    password_again = forms.CharField(widget=forms.PasswordInput, max_length=200, required=False)

    def clean(self):
        data = super().clean()
        if data.get("password") != data.get("password_again"):
            self.add_error("password_again", "The two passwords differ.")
        return data


class InvitationForm(NewPasswordForm):
    token = forms.CharField(widget=forms.HiddenInput, max_length=200)


class EmailForm(forms.Form):
    email = forms.EmailField(max_length=254)


class ResetForm(NewPasswordForm):
    uid = forms.CharField(widget=forms.HiddenInput, max_length=100)
    token = forms.CharField(widget=forms.HiddenInput, max_length=200)


def _service_errors(form, exc: ValidationError) -> None:
    for field, messages in exc.message_dict.items():
        form.add_error(field if field in form.fields else None, messages)


def _page(request, template: str, status: int = 200, **context):
    return render(request, f"accounts/{template}", {"tenant": request.tenant, **context}, status=status)


@never_cache
@sensitive_post_parameters("password", "password_again", "token")
def invitation_accept_page(request):
    if request.method == "POST":
        form = InvitationForm(request.POST)
        if form.is_valid():
            try:
                membership = invitation_accept(tenant_id=request.tenant.pk, token=form.cleaned_data["token"],
                                               password=form.cleaned_data["password"] or None)
            except ValidationError as exc:
                _service_errors(form, exc)
            else:
                return _page(request, "invitation_accepted.html", membership=membership)
        return _page(request, "invitation_accept.html", status=400, form=form)
    form = InvitationForm(initial={"token": request.GET.get("token", "")})
    return _page(request, "invitation_accept.html", form=form)


@never_cache
def password_reset_page(request):
    if request.method == "POST":
        form = EmailForm(request.POST)
        if form.is_valid():
            password_reset_request(tenant=request.tenant, email=form.cleaned_data["email"])
            # Same answer whether or not the address has an account here.
            return _page(request, "password_reset_sent.html")
        return _page(request, "password_reset.html", status=400, form=form)
    return _page(request, "password_reset.html", form=EmailForm())


@never_cache
@sensitive_post_parameters("password", "password_again", "token")
def password_reset_confirm_page(request):
    data = request.POST if request.method == "POST" else None
    form = ResetForm(data, initial={"uid": request.GET.get("uid", ""), "token": request.GET.get("token", "")})
    source = data if data is not None else form.initial
    user = password_reset_user(uid=source.get("uid", ""), token=source.get("token", ""))
    if user is None:
        return _page(request, "password_reset_invalid.html", status=400)
    if data is not None and form.is_valid():
        try:
            password_set(user=user, password=form.cleaned_data["password"])
        except ValidationError as exc:
            _service_errors(form, exc)
        else:
            return _page(request, "password_reset_done.html")
    return _page(request, "password_reset_confirm.html", status=400 if data is not None else 200, form=form)
