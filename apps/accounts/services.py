"""Writes to users, memberships, invitations and API keys (control plane)."""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import authenticate
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import validate_email
from django.db import connections, router, transaction
from django.utils import timezone

from apps.caching.tenant_cache import invalidate_tenant

from . import tokens
from .models import ApiKey, Invitation, Membership, User
from .support import support_grant_active

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnsuredUser:
    user: User
    created: bool
    password: str | None  # only when this call generated or set it


def normalize_email(email: str) -> str:
    email = (email or "").strip().lower()
    try:
        validate_email(email)
    except ValidationError as exc:
        raise ValidationError({"email": f"'{email}' is not a valid email address."}) from exc
    return email


@transaction.atomic
def user_ensure(*, email: str, password: str | None = None, superuser: bool = False) -> EnsuredUser:
    """Get or create the user with this email.

    A new user gets ``password`` or a generated one, returned once. An existing
    user's password is left alone unless ``password`` is given.
    """
    email = normalize_email(email)
    user = User.objects.filter(email=email).first()
    if user is None:
        password = password or secrets.token_urlsafe(12)
        if superuser:
            user = User.objects.create_superuser(email=email, password=password)
        else:
            user = User.objects.create_user(email=email, password=password)
        return EnsuredUser(user=user, created=True, password=password)
    changed = False
    if password:
        user.set_password(password)
        changed = True
    if superuser and not user.is_superuser:
        user.is_superuser = user.is_staff = True
        changed = True
    if changed:
        user.save()
    return EnsuredUser(user=user, created=False, password=password)


@transaction.atomic
def membership_grant(*, user: User, tenant_id: int, role: str) -> Membership:
    """Make ``user`` a member of the tenant with ``role`` (idempotent)."""
    if role not in Membership.Role.values:
        raise ValidationError({"role": f"Unknown role '{role}'. Choose one of {', '.join(Membership.Role.values)}."})
    membership, _ = Membership.objects.update_or_create(user=user, tenant_id=tenant_id, defaults={"role": role})
    invalidate_tenant(tenant_id, "usage")  # seats; after the control plane commits
    return membership


def _owner_rules(*, membership: Membership, acting_role: str, new_role: str | None) -> None:
    """Only an owner makes, unmakes or removes an owner, and a tenant keeps at
    least one. Checked here, under a lock on the tenant's owner rows, so the
    API, the admins and scripts all meet the same rules (and two admins
    removing the last two owners at once cannot both succeed)."""
    touches_owner = Membership.Role.OWNER in (membership.role, new_role)
    if touches_owner and acting_role != Membership.Role.OWNER:
        raise PermissionDenied("Only an owner can grant, take away or remove the owner role.")
    if membership.role == Membership.Role.OWNER and new_role != Membership.Role.OWNER:
        owners = list(Membership.objects.select_for_update()
                      .filter(tenant_id=membership.tenant_id, role=Membership.Role.OWNER).values_list("pk", flat=True))
        if owners == [membership.pk] or not owners:
            raise ValidationError({"role": "A tenant keeps at least one owner."})


@transaction.atomic
def membership_change_role(*, membership: Membership, role: str, acting_role: str) -> Membership:
    """Change a member's role. ``acting_role`` is the role of whoever asks
    (``Membership.Role.OWNER`` for platform operators and scripts)."""
    if role not in Membership.Role.values:
        raise ValidationError({"role": f"Unknown role '{role}'. Choose one of {', '.join(Membership.Role.values)}."})
    _owner_rules(membership=membership, acting_role=acting_role, new_role=role)
    membership.role = role
    membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership, acting_role: str) -> None:
    """Remove a member; see ``membership_change_role`` for ``acting_role``."""
    _owner_rules(membership=membership, acting_role=acting_role, new_role=None)
    membership.delete()
    invalidate_tenant(membership.tenant_id, "usage")


# --- invitations ------------------------------------------------------------


@dataclass(frozen=True)
class CreatedInvitation:
    invitation: Invitation
    token: str  # shown once (and emailed)


@transaction.atomic
def invitation_create(*, tenant_id: int, email: str, role: str, invited_by: User | None) -> CreatedInvitation:
    """Invite ``email`` to the tenant. Replaces an earlier open invitation."""
    email = normalize_email(email)
    if role not in Membership.Role.values or role == Membership.Role.OWNER:
        raise ValidationError({"role": "Invite as admin, member or viewer."})
    if Membership.objects.filter(tenant_id=tenant_id, user__email=email).exists():
        # The address is valid; the tenant's current members make it a conflict.
        from apps.http.errors import Conflict

        raise Conflict(f"{email} is already a member of this tenant.")
    Invitation.objects.filter(tenant_id=tenant_id, email=email, accepted_at__isnull=True).delete()
    token = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        tenant_id=tenant_id, email=email, role=role, token_hash=tokens.hash_secret(token), invited_by=invited_by,
        expires_at=timezone.now() + dt.timedelta(seconds=settings.INVITATION_SECONDS),
    )
    _invitation_email(invitation, token)
    return CreatedInvitation(invitation=invitation, token=token)


def _invitation_email(invitation: Invitation, token: str) -> None:
    """Queue the invitation email in the control outbox, same transaction."""
    from apps.jobs.services import control_outbox_enqueue
    from apps.notifications.tasks import send_email
    from apps.tenancy.links import tenant_url
    from apps.tenancy.models import Tenant

    tenant = Tenant.objects.get(pk=invitation.tenant_id)
    control_outbox_enqueue(send_email, kwargs={
        "to": [invitation.email], "template": "invitation",
        "context": {"tenant_name": tenant.name, "role": invitation.role, "token": token,
                    "inviter": invitation.invited_by.email if invitation.invited_by else "",
                    "expires_at": invitation.expires_at.strftime("%Y-%m-%d %H:%M UTC"),
                    "url": tenant_url(tenant, "/invitations/accept?" + urlencode({"token": token})),
                    "api_url": tenant_url(tenant, "/api/v1/invitations/accept")},
        "effect_key": f"invitation:{invitation.pk}",
    }, headers={"tenant_id": tenant.pk, "tenant_slug": tenant.slug})


@transaction.atomic
def invitation_accept(*, tenant_id: int, token: str, password: str | None = None) -> Membership:
    """Accept an invitation: the user (made now if new, with ``password``) joins."""
    invitation = (
        Invitation.objects.select_for_update()
        .filter(tenant_id=tenant_id, token_hash=tokens.hash_secret(token or ""))
        .first()
    )
    if invitation is None:
        raise ValidationError({"token": "This invitation token is not valid for this tenant."})
    if invitation.accepted_at is not None:
        raise ValidationError({"token": "This invitation was already accepted."})
    if invitation.expires_at < timezone.now():
        raise ValidationError({"token": "This invitation has expired; ask for a new one."})
    user = User.objects.filter(email=invitation.email).first()
    if user is None:
        if not password or len(password) < 10:
            raise ValidationError({"password": "A new account needs a password of at least 10 characters."})
        user = User.objects.create_user(email=invitation.email, password=password)
    invitation.accepted_at = timezone.now()
    invitation.save(update_fields=["accepted_at"])
    return membership_grant(user=user, tenant_id=tenant_id, role=invitation.role)


@transaction.atomic
def invitation_revoke(*, tenant_id: int, invitation_id: int) -> Invitation:
    """Withdraw an open invitation of the tenant: its token stops working.
    Raises ValidationError when there is no open invitation by that id."""
    invitation = (Invitation.objects.select_for_update()
                  .filter(tenant_id=tenant_id, pk=invitation_id, accepted_at__isnull=True).first())
    if invitation is None:
        raise ValidationError({"invitation": "No open invitation by that id in this tenant."})
    invitation.delete()
    return invitation


# --- API keys and tokens ----------------------------------------------------


@dataclass(frozen=True)
class CreatedApiKey:
    api_key: ApiKey
    key: str  # shown once


@transaction.atomic
def api_key_create(*, tenant_id: int, name: str, scopes: list[str], created_by: User | None) -> CreatedApiKey:
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise ValidationError({"name": "A key needs a name of 1-100 characters."})
    unknown = sorted(set(scopes) - set(ApiKey.Scope.values))
    if not scopes or unknown:
        raise ValidationError({"scopes": f"Choose scopes from {', '.join(ApiKey.Scope.values)}."})
    key, prefix, key_hash = tokens.new_api_key()
    api_key = ApiKey.objects.create(
        tenant_id=tenant_id, name=name, prefix=prefix, key_hash=key_hash, scopes=sorted(set(scopes)),
        created_by=created_by,
    )
    invalidate_tenant(tenant_id, "usage")
    return CreatedApiKey(api_key=api_key, key=key)


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
        invalidate_tenant(api_key.tenant_id, "usage")
    return api_key


API_KEY_USE_RECORD_SECONDS = 60  # a key's use is recorded at most this often per process
API_KEY_USE_FLUSH_SECONDS = 10  # recorded uses are written together this often


class _KeyUses:
    """Uses of API keys gathered in process and written by one thread every
    API_KEY_USE_FLUSH_SECONDS in ONE statement for all keys seen meanwhile.

    An UPDATE per key and minute on the control database was about 33 writes
    a second per 1,000 busy keys and 2 workers, each on a request's path;
    now a request pays a dictionary update under a lock. So "last used" lags
    by up to API_KEY_USE_RECORD_SECONDS + API_KEY_USE_FLUSH_SECONDS, except a
    key's first use, which is written at once (a new key shows as used)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.pending: dict[int, dt.datetime] = {}
        self.thread: threading.Thread | None = None
        self.pid = 0

    def add(self, key_id: int, at: dt.datetime) -> None:
        with self.lock:
            self.pending[key_id] = at
            # One flusher per process; a forked child (gunicorn worker) starts its own.
            if self.thread is None or not self.thread.is_alive() or self.pid != os.getpid():
                self.pid = os.getpid()
                self.thread = threading.Thread(target=self._run, name="api-key-use-flusher", daemon=True)
                self.thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(API_KEY_USE_FLUSH_SECONDS)
            try:
                api_key_uses_flush()
            except Exception:  # a lost batch only makes "last used" older; never kill the flusher
                logger.warning("API key uses not recorded", exc_info=True)
            finally:
                # This thread's own connection: closed, not held between flushes.
                connections.close_all()

    def take(self) -> dict[int, dt.datetime]:
        with self.lock:
            pending, self.pending = self.pending, {}
        return pending


_key_uses = _KeyUses()


def api_key_uses_flush() -> int:
    """Write the uses gathered so far (one UPDATE); returns the keys written.
    A use older than the stored one (another process wrote later) is skipped."""
    pending = _key_uses.take()
    if not pending:
        return 0
    alias = router.db_for_write(ApiKey)
    table = connections[alias].ops.quote_name(ApiKey._meta.db_table)
    rows = ", ".join(["(%s::bigint, %s::timestamptz)"] * len(pending))
    params = [value for item in pending.items() for value in item]
    with connections[alias].cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS k SET last_used_at = v.at FROM (VALUES {rows}) AS v(id, at) "  # noqa: S608 (only placeholders)
            "WHERE k.id = v.id AND (k.last_used_at IS NULL OR k.last_used_at < v.at)", params)
    return len(pending)


def api_key_touch(*, api_key: ApiKey) -> None:
    """Record use, at most once a minute per key and process, batched (see _KeyUses)."""
    now = timezone.now()
    if api_key.last_used_at is None:
        ApiKey.objects.filter(pk=api_key.pk, last_used_at__isnull=True).update(last_used_at=now)
        api_key.last_used_at = now
    elif now - api_key.last_used_at > dt.timedelta(seconds=API_KEY_USE_RECORD_SECONDS):
        api_key.last_used_at = now
        _key_uses.add(api_key.pk, now)


def user_token_issue(*, tenant_id: int, email: str, password: str) -> str:
    """Exchange a member's email and password for a short-lived API token."""
    # One answer for a wrong password and for a right one that opens nothing
    # here: the endpoint must not tell whether an address has an account.
    refused = PermissionDenied("Wrong email or password for this tenant.")
    user = authenticate(username=normalize_email(email), password=password or "")
    if user is None:
        raise refused
    if (not Membership.objects.filter(user=user, tenant_id=tenant_id).exists()
            and support_grant_active(user=user, tenant_id=tenant_id) is None):
        raise refused
    return tokens.issue_user_token(user_id=user.pk, tenant_id=tenant_id)
