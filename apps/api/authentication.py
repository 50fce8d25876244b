"""API authentication: API keys and user tokens (Bearer), or the session.

Every credential is checked against the tenant of the host it is used on: a
key or token of tenant A presented on tenant B's host is rejected.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from rest_framework import authentication, exceptions

from apps.accounts import selectors as account_selectors
from apps.accounts import tokens
from apps.accounts.models import ApiKey, Membership, SupportGrant, User
from apps.accounts.services import api_key_touch
from apps.accounts.support import support_grant_active
from apps.caching import local
from apps.observability.context import Actor, actor_var, user_var

SCOPE_ROLE = {ApiKey.Scope.READ: Membership.Role.VIEWER, ApiKey.Scope.WRITE: Membership.Role.MEMBER,
              ApiKey.Scope.ADMIN: Membership.Role.ADMIN}


@dataclass
class Principal:
    """Who is calling, and with which role in the host's tenant."""

    kind: str  # "user" | "api_key"
    role: str | None
    user: User | None = None
    api_key: ApiKey | None = None
    is_authenticated: bool = True
    support_grant: SupportGrant | None = None  # an operator acting under support access

    @property
    def pk(self):
        return self.actor.user_id

    @property
    def actor(self) -> Actor:
        if self.kind == "api_key":
            return Actor(type="api_key", user_id=self.api_key.created_by_id, api_key_id=self.api_key.pk)
        return Actor(type="support" if self.support_grant else "user", user_id=self.user.pk)


def _tenant(request):
    tenant = getattr(request, "tenant", None)
    if tenant is None or tenant.is_public:
        raise exceptions.NotFound("The API is served on tenant hosts only.")
    return tenant


def user_principal(user: User, tenant) -> Principal:
    role = account_selectors.membership_role(user=user, tenant_id=tenant.pk)
    grant = None
    if role is None:
        # A platform operator is a stranger here unless the tenant is under
        # an active support grant for them (time-boxed, audited).
        grant = support_grant_active(user=user, tenant_id=tenant.pk)
        if grant is not None:
            role = Membership.Role.ADMIN
    return Principal(kind="user", role=role, user=user, support_grant=grant)


def _activate(principal: Principal, request) -> None:
    actor_var.set(principal.actor)
    if principal.user is not None:
        user_var.set(str(principal.user.pk))
    if principal.support_grant is not None:
        # Seen by SupportAccessMiddleware, which records the request.
        request._request.support_grant = principal.support_grant


class BearerAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode(errors="replace")
        if not header:
            return None
        scheme, _, credential = header.partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise exceptions.AuthenticationFailed("Use 'Authorization: Bearer <API key or token>'.")
        credential = credential.strip()
        tenant = _tenant(request)
        if credential.startswith(tokens.API_KEY_MARK):
            api_key = _api_key(credential, tenant)
            if api_key is None:
                raise exceptions.AuthenticationFailed("This API key is not valid for this tenant.")
            api_key_touch(api_key=api_key)
            top = max(api_key.scopes, key=lambda s: account_selectors.ROLE_RANK[SCOPE_ROLE[s]])
            principal = Principal(kind="api_key", role=SCOPE_ROLE[top], api_key=api_key)
        else:
            claims = tokens.read_user_token(credential)
            if claims is None or claims["t"] != tenant.pk:
                raise exceptions.AuthenticationFailed("This token is not valid for this tenant, or has expired.")
            principal = _token_principal(claims["u"], tenant)
            if principal is None:
                raise exceptions.AuthenticationFailed("This token's user no longer exists.")
        _activate(principal, request)
        return principal, credential

    def authenticate_header(self, request):
        return self.keyword


# --- principals held in process ----------------------------------------------
#
# The API key or member behind a credential is read from the control plane
# once per process and tenant access version (apps.caching.local), not once
# per request. Any change to keys, memberships or users raises the access
# version of the tenants concerned (receivers below, after the control plane
# commits), and the version is read in the request's first Redis round trip,
# so a revoked key or a removed member fails on the very next request in
# every worker. Support-access principals are never held: a grant can end by
# expiry or by a bulk update, neither of which sends a signal.


def _credential_id(credential: str) -> str:
    return hashlib.sha256(credential.encode()).hexdigest()


def _api_key(credential: str, tenant) -> ApiKey | None:
    def load():
        api_key = account_selectors.api_key_for(key=credential)
        return api_key if api_key is not None and api_key.tenant_id == tenant.pk else None

    return local.access.get_or_load(local.access_version_key(tenant.pk), ("key", _credential_id(credential)), load,
                                    cacheable=lambda api_key: api_key is not None)


def _token_principal(user_id: int, tenant) -> Principal | None:
    def load():
        user = User.objects.filter(pk=user_id, is_active=True).first()
        return None if user is None else user_principal(user, tenant)

    def member(principal):
        return principal is not None and principal.support_grant is None and principal.role is not None

    return local.access.get_or_load(local.access_version_key(tenant.pk), ("user", user_id), load, cacheable=member)


@receiver(post_save, sender=ApiKey)
@receiver(post_delete, sender=ApiKey)
@receiver(post_save, sender=Membership)
@receiver(post_delete, sender=Membership)
def _access_changed(sender, instance, using: str, **kwargs) -> None:
    if sender is ApiKey and kwargs.get("update_fields") == frozenset({"last_used_at"}):
        return  # recording use changes nobody's access
    local.access_changed([instance.tenant_id], using=using)


@receiver(post_save, sender=User)
@receiver(post_delete, sender=User)
def _user_changed(sender, instance: User, using: str, **kwargs) -> None:
    if kwargs.get("update_fields") == frozenset({"last_login"}):
        return  # signing in changes nobody's access
    tenant_ids = Membership.objects.using(using).filter(user_id=instance.pk).values_list("tenant_id", flat=True)
    local.access_changed(list(tenant_ids), using=using)


class TenantSessionAuthentication(authentication.SessionAuthentication):
    """The browser session (the docs page), with the member's role attached."""

    def authenticate(self, request):
        result = super().authenticate(request)
        if result is None:
            return None
        principal = user_principal(result[0], _tenant(request))
        _activate(principal, request)
        return principal, None
