"""Pages a person opens from an email on a tenant's host: accept an
invitation, reset a forgotten password. Plain Django forms (CSRF-protected),
calling the same services as the API.

A successful POST redirects (POST-redirect-GET), so reloading the page that
follows sends nothing again; what that page says is kept in the session for
it. A link that no longer works (unknown, used, expired) opens a page that
says so, with no form to fill in.
"""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters

from .models import Membership
from .passwords import MIN_PASSWORD_LENGTH, password_reset_complete, password_reset_open, password_reset_request
from .services import invitation_accept, invitation_by_token, invitation_problem

JOINED_KEY = "accounts:joined"  # session: {"role", "email", "tenant_id"} of the invitation just accepted
RESET_DONE_KEY = "accounts:reset-done"  # session: the tenant id whose reset just completed
RESET_SENT_KEY = "accounts:reset-sent"


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
    reset = forms.CharField(widget=forms.HiddenInput, max_length=20)
    token = forms.CharField(widget=forms.HiddenInput, max_length=200)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["password"].required = True


def with_article(word: str) -> str:
    """"an admin", "a member", "an owner", "a viewer"."""
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


def role_phrase(role: str) -> str:
    return with_article(Membership.Role(role).label.lower()) if role in Membership.Role.values else role


def _service_errors(form, exc: ValidationError) -> None:
    for field, messages in exc.message_dict.items():
        form.add_error(field if field in form.fields and not form.fields[field].widget.is_hidden else None, messages)


def _page(request, template: str, status: int = 200, **context):
    return render(request, f"accounts/{template}", {"tenant": request.tenant, **context}, status=status)


def _invitation_invalid(request, problem: str):
    # 404 for a link that never was; 410 for one that was used or has expired.
    from .services import INVITATION_UNKNOWN

    return _page(request, "invitation_invalid.html", status=404 if problem == INVITATION_UNKNOWN else 410,
                 problem=problem)


@never_cache
@sensitive_post_parameters("password", "password_again", "token")
def invitation_accept_page(request):
    tenant = request.tenant
    if request.method == "GET" and "joined" in request.GET:
        joined = request.session.get(JOINED_KEY)
        if not joined or joined.get("tenant_id") != tenant.pk:
            from .services import INVITATION_UNKNOWN

            return _invitation_invalid(request, INVITATION_UNKNOWN)
        return _page(request, "invitation_accepted.html", role=role_phrase(joined["role"]), email=joined["email"])
    token = (request.POST if request.method == "POST" else request.GET).get("token", "")
    invitation = invitation_by_token(tenant_id=tenant.pk, token=token)
    problem = invitation_problem(invitation)
    if problem:
        return _invitation_invalid(request, problem)
    form = InvitationForm(request.POST if request.method == "POST" else None, initial={"token": token})
    if request.method == "POST" and form.is_valid():
        try:
            membership = invitation_accept(tenant_id=tenant.pk, token=form.cleaned_data["token"],
                                           password=form.cleaned_data["password"] or None)
        except ValidationError as exc:
            if "token" in exc.message_dict:  # used or expired meanwhile
                return _invitation_invalid(request, " ".join(exc.message_dict["token"]))
            _service_errors(form, exc)
        else:
            request.session[JOINED_KEY] = {"role": membership.role, "email": membership.user.email,
                                           "tenant_id": tenant.pk}
            return redirect(request.path + "?joined")
    status = 400 if request.method == "POST" else 200
    return _page(request, "invitation_accept.html", status=status, form=form, role=role_phrase(invitation.role),
                 email=invitation.email, new_account=not _has_account(invitation.email))


def _has_account(email: str) -> bool:
    from .models import User

    return User.objects.filter(email=email).exists()


@never_cache
def password_reset_page(request):
    if request.method == "POST":
        form = EmailForm(request.POST)
        if form.is_valid():
            password_reset_request(tenant=request.tenant, email=form.cleaned_data["email"])
            request.session[RESET_SENT_KEY] = request.tenant.pk
            # Same answer whether or not the address has an account here.
            return redirect(request.path + "?sent")
        return _page(request, "password_reset.html", status=400, form=form)
    if "sent" in request.GET and request.session.get(RESET_SENT_KEY) == request.tenant.pk:
        return _page(request, "password_reset_sent.html")
    return _page(request, "password_reset.html", form=EmailForm())


@never_cache
@sensitive_post_parameters("password", "password_again", "token")
def password_reset_confirm_page(request):
    tenant = request.tenant
    if request.method == "GET" and "done" in request.GET:
        if request.session.get(RESET_DONE_KEY) != tenant.pk:
            return _page(request, "password_reset_invalid.html", status=410)
        return _page(request, "password_reset_done.html")
    source = request.POST if request.method == "POST" else request.GET
    reset_id, token = source.get("reset", ""), source.get("token", "")
    if password_reset_open(tenant_id=tenant.pk, reset_id=reset_id, token=token) is None:
        return _page(request, "password_reset_invalid.html", status=410)
    form = ResetForm(request.POST if request.method == "POST" else None, initial={"reset": reset_id, "token": token})
    if request.method == "POST" and form.is_valid():
        try:
            password_reset_complete(tenant_id=tenant.pk, reset_id=reset_id, token=token,
                                    password=form.cleaned_data["password"])
        except ValidationError as exc:
            if "token" in exc.message_dict:  # used meanwhile (another tab)
                return _page(request, "password_reset_invalid.html", status=410)
            _service_errors(form, exc)
        else:
            request.session[RESET_DONE_KEY] = tenant.pk
            return redirect(request.path + "?done")
    return _page(request, "password_reset_confirm.html", status=400 if request.method == "POST" else 200, form=form)
