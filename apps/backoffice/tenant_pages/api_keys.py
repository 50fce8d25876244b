"""API keys: list, create (the key is shown on the answer to the POST that
made it, and nowhere else: only its hash is stored), revoke.

That answer cannot redirect (the key would have to wait in a session or a
URL), so the form carries a one-off submission key instead, claimed like
the API's Idempotency-Key: reloading the page that showed the key sends the
form again, creates nothing, and is redirected to the list."""

from __future__ import annotations

from django.contrib import messages
from django.views.decorators.http import require_POST

from apps.accounts import api_keys, selectors
from apps.idempotency.services import form_submission_claim, form_submission_release
from apps.tenancy.routers import tenant_write_alias

from .common import REFUSALS, back_to, form_error_text, perform, refusal_text, render_page
from .forms import ApiKeyForm


def api_keys_page(request, *, site, form=None, created=None, status=200):
    keys = selectors.api_keys_of_tenant(tenant_id=request.tenant.pk).select_related("created_by")
    return render_page(request, site, "api_keys.html", {
        "api_keys": keys, "form": form or ApiKeyForm.fresh(), "created": created,
    }, title="API keys", status=status)


@require_POST
def api_key_create(request, *, site):
    form = ApiKeyForm(request.POST)
    if not form.is_valid():
        messages.error(request, form_error_text(form))
        return api_keys_page(request, site=site, form=form, status=400)
    tenant = request.tenant
    once = {"alias": tenant_write_alias(tenant), "client": f"tenant-admin:{request.user.pk}",
            "key": form.cleaned_data["submission"]}
    if not form_submission_claim(**once):
        messages.warning(request, "That form was sent already: its key was shown once, then. "
                                  "If it was not copied, revoke it and create another.")
        return back_to(site, "tenant-api-keys")
    try:
        created = api_keys.api_key_issue(tenant=tenant, name=form.cleaned_data["name"],
                                         scopes=form.cleaned_data["scopes"], created_by=request.user)
    except REFUSALS as exc:
        form_submission_release(**once)  # the corrected form may be sent
        messages.error(request, refusal_text(exc))
        return api_keys_page(request, site=site, form=form, status=400)
    # Rendered, not redirected: the key must not wait in a session or a URL
    # for the next page. The admin's never_cache keeps browsers from storing it.
    messages.success(request, f"API key '{created.api_key.name}' created.")
    return api_keys_page(request, site=site, created=created)


@require_POST
def api_key_revoke(request, api_key_id: int, *, site):
    api_key = selectors.api_keys_of_tenant(tenant_id=request.tenant.pk).filter(pk=api_key_id).first()
    if api_key is None or api_key.revoked_at is not None:
        error = "That API key is not in this organisation." if api_key is None else f"'{api_key.name}' was already revoked."
        return back_to(site, "tenant-api-keys", request=request, error=error)
    return perform(request, site, "tenant-api-keys", lambda: api_keys.api_key_withdraw(api_key=api_key),
                   lambda k: f"API key '{k.name}' ({k.prefix}…) was revoked; it no longer works.")
