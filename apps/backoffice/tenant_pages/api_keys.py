"""API keys: list, create (the key is shown on the answer to the POST that
made it, and nowhere else: only its hash is stored), revoke."""

from __future__ import annotations

from django.contrib import messages
from django.views.decorators.http import require_POST

from apps.accounts import api_keys, selectors

from .common import REFUSALS, back_to, form_error_text, perform, refusal_text, render_page
from .forms import ApiKeyForm


def api_keys_page(request, *, site, form=None, created=None, status=200):
    keys = selectors.api_keys_of_tenant(tenant_id=request.tenant.pk).select_related("created_by")
    return render_page(request, site, "api_keys.html", {
        "api_keys": keys, "form": form or ApiKeyForm(), "created": created,
    }, title="API keys", status=status)


@require_POST
def api_key_create(request, *, site):
    form = ApiKeyForm(request.POST)
    if not form.is_valid():
        messages.error(request, form_error_text(form))
        return api_keys_page(request, site=site, form=form, status=400)
    tenant = request.tenant
    try:
        created = api_keys.api_key_issue(tenant=tenant, name=form.cleaned_data["name"],
                                         scopes=form.cleaned_data["scopes"], created_by=request.user)
    except REFUSALS as exc:
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
