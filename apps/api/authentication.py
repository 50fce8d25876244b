"""API authentication: API keys and user tokens (Bearer), or the session.

Every credential is checked against the tenant of the host it is used on: a
key or token of tenant A presented on tenant B's host is rejected.
"""

from __future__ import annotations

from dataclasses import dataclass

from rest_framework import authentication, exceptions

from apps.accounts import selectors as account_selectors
from apps.accounts import tokens
from apps.accounts.models import ApiKey, Membership, SupportGrant, User
from apps.accounts.services import api_key_touch
from apps.accounts.support import support_grant_active
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
            api_key = account_selectors.api_key_for(key=credential)
            if api_key is None or api_key.tenant_id != tenant.pk:
                raise exceptions.AuthenticationFailed("This API key is not valid for this tenant.")
            api_key_touch(api_key=api_key)
            top = max(api_key.scopes, key=lambda s: account_selectors.ROLE_RANK[SCOPE_ROLE[s]])
            principal = Principal(kind="api_key", role=SCOPE_ROLE[top], api_key=api_key)
        else:
            claims = tokens.read_user_token(credential)
            if claims is None or claims["t"] != tenant.pk:
                raise exceptions.AuthenticationFailed("This token is not valid for this tenant, or has expired.")
            user = User.objects.filter(pk=claims["u"], is_active=True).first()
            if user is None:
                raise exceptions.AuthenticationFailed("This token's user no longer exists.")
            principal = user_principal(user, tenant)
        _activate(principal, request)
        return principal, credential

    def authenticate_header(self, request):
        return self.keyword


class TenantSessionAuthentication(authentication.SessionAuthentication):
    """The browser session (the docs page), with the member's role attached."""

    def authenticate(self, request):
        result = super().authenticate(request)
        if result is None:
            return None
        principal = user_principal(result[0], _tenant(request))
        _activate(principal, request)
        return principal, None
