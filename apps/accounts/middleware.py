"""Record every request made under support access in the tenant's audit log."""

from __future__ import annotations

import logging

from apps.observability.context import Actor, actor_var

from .selectors import membership_role
from .support import support_grant_active

logger = logging.getLogger(__name__)


def _session_grant(request):
    """An operator's grant for a session request (the tenant admin). API
    requests are marked by their authentication instead (it runs in the view)."""
    tenant = getattr(request, "tenant", None)
    user = getattr(request, "user", None)
    if tenant is None or tenant.is_public or user is None or not user.is_authenticated or not user.is_superuser:
        return None
    if membership_role(user=user, tenant_id=tenant.pk) is not None:
        return None
    return support_grant_active(user=user, tenant_id=tenant.pk)


class SupportAccessMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        grant = _session_grant(request)
        if grant is not None:
            request.support_grant = grant
            actor_var.set(Actor(type="support", user_id=grant.operator_id))
        response = self.get_response(request)
        grant = getattr(request, "support_grant", None)
        if grant is not None:
            self.record(request, response, grant)
        return response

    @staticmethod
    def record(request, response, grant) -> None:
        from apps.audit.services import audit_record

        try:
            audit_record(
                action="access", object_type="support", object_id=grant.pk,
                changes={"method": request.method, "path": request.path[:500], "status": response.status_code,
                         "operator_id": grant.operator_id, "reason": grant.reason},
            )
        except Exception:  # the request has happened; failing it now would hide that. Loudly logged.
            logger.exception("support access could not be audited", extra={"grant": grant.pk})
