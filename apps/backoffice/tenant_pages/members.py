"""Members and invitations: list, change a role, remove, invite, revoke.

The accounts services write the tenant's audit rows themselves, in their
transaction, so these pages, the API and the operator admin record the same.
"""

from __future__ import annotations

from django.contrib import messages
from django.views.decorators.http import require_POST

from apps.accounts import selectors, services
from apps.accounts.pages import with_article

from .common import REFUSALS, acting_role, back_to, form_error_text, perform, refusal_text, render_page
from .forms import InviteForm, RoleForm


def members_page(request, *, site, invite_form=None, status=200):
    tenant_id = request.tenant.pk
    return render_page(request, site, "members.html", {
        "memberships": selectors.memberships_of_tenant(tenant_id=tenant_id),
        "invitations": selectors.invitations_of_tenant(tenant_id=tenant_id).select_related("invited_by"),
        "invite_form": invite_form or InviteForm(),
        "role_choices": RoleForm.base_fields["role"].choices,
        "my_role": acting_role(request),
    }, title="Members and invitations", status=status)


def _membership(request, membership_id: int):
    return selectors.memberships_of_tenant(tenant_id=request.tenant.pk).filter(pk=membership_id).first()


def _removal(membership, acting: str | None):
    services.membership_remove(membership=membership, acting_role=acting)
    return membership


NOT_A_MEMBER = "That member is not in this organisation."


@require_POST
def member_role(request, membership_id: int, *, site):
    membership = _membership(request, membership_id)
    form = RoleForm(request.POST)
    if membership is None or not form.is_valid():
        error = NOT_A_MEMBER if membership is None else form_error_text(form)
        return back_to(site, "tenant-members", request=request, error=error)
    return perform(request, site, "tenant-members",
                   lambda: services.membership_change_role(membership=membership, role=form.cleaned_data["role"],
                                                           acting_role=acting_role(request)),
                   lambda m: f"{m.user.email} is now {with_article(m.get_role_display().lower())}.")


@require_POST
def member_remove(request, membership_id: int, *, site):
    membership = _membership(request, membership_id)
    if membership is None:
        return back_to(site, "tenant-members", request=request, error=NOT_A_MEMBER)
    return perform(request, site, "tenant-members", lambda: _removal(membership, acting_role(request)),
                   lambda m: f"{m.user.email} was removed from this organisation.")


@require_POST
def invite(request, *, site):
    form = InviteForm(request.POST)
    if not form.is_valid():
        messages.error(request, form_error_text(form))
        return members_page(request, site=site, invite_form=form, status=400)
    try:
        created = services.invitation_create(tenant_id=request.tenant.pk, email=form.cleaned_data["email"],
                                             role=form.cleaned_data["role"], invited_by=request.user)
        invitation = created.invitation
    except REFUSALS as exc:
        # Rendered, not redirected: the form keeps what was typed.
        messages.error(request, refusal_text(exc))
        return members_page(request, site=site, invite_form=form, status=400)
    messages.success(request, f"Invitation sent to {invitation.email} as {invitation.get_role_display().lower()}.")
    return back_to(site, "tenant-members")


@require_POST
def invitation_revoke(request, invitation_id: int, *, site):
    return perform(request, site, "tenant-members",
                   lambda: services.invitation_revoke(tenant_id=request.tenant.pk, invitation_id=invitation_id),
                   lambda i: f"The invitation to {i.email} was withdrawn.")
