"""Writes to users, memberships, invitations and API keys (control plane)."""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import authenticate
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import validate_email
from django.db import connections, router, transaction
from django.utils import timezone

from apps.audit.services import audit_record
from apps.caching.flushers import Flusher
from apps.observability.context import Actor, actor_var
from apps.tenancy.tenant_cache import invalidate_tenant

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


# --- the tenant's audit log --------------------------------------------------


@contextmanager
def tenant_audited(tenant_id: int, *, actor: Actor | None = None) -> Iterator[None]:
    """A control-plane transaction with the tenant's audit log in it.

    Members, invitations and resets live in the control plane, the audit log
    in the tenant's schema on its shard: two databases. The block runs in a
    transaction on each, the shard's inside the control plane's, so an error
    anywhere rolls back both, and the audit row commits just before the
    change (a failure between the two commits leaves an audit row too many,
    never a change without one). Callers write their rows with
    ``audit_record`` inside the block.

    The tenant is activated for the block when it is not the active one: a
    signed-in user acting on the tenant from outside it is an operator in the
    operator admin (the platform's host), recorded as ``operator`` in the
    tenant's log. ``actor`` names who acts when the request does not (a
    person accepting an invitation or resetting a password is anonymous).
    """
    from apps.tenancy.activation import tenant_activated
    from apps.tenancy.context import active_tenant
    from apps.tenancy.models import Tenant
    from apps.tenancy.routers import tenant_write_alias

    current = active_tenant()
    outside = current is None or current.pk != tenant_id
    who = actor or actor_var.get()
    if actor is None and outside and who.type == "user":
        who = Actor(type="operator", user_id=who.user_id)
    token = actor_var.set(who)
    try:
        with transaction.atomic(using="default"):
            if outside:
                tenant = Tenant.objects.select_related("shard").get(pk=tenant_id)
                with tenant_activated(tenant), transaction.atomic(using=tenant_write_alias(tenant)):
                    yield
            else:
                with transaction.atomic(using=tenant_write_alias(current)):
                    yield
    finally:
        actor_var.reset(token)


def membership_add(*, user: User, tenant_id: int, role: str) -> Membership:
    """Add a member (the operator admin's way): ``membership_grant`` plus the
    tenant's audit row. Granting itself stays unaudited for provisioning,
    which grants the owner before the tenant's schema exists."""
    with tenant_audited(tenant_id):
        existing = Membership.objects.filter(user=user, tenant_id=tenant_id).values_list("role", flat=True).first()
        membership = membership_grant(user=user, tenant_id=tenant_id, role=role)
        audit_record(action="update" if existing else "create", object_type="membership", object_id=membership.pk,
                     changes={"user_id": [None, user.pk], "role": [existing, role]} if not existing
                     else {"role": [existing, role]})
    return membership


@transaction.atomic
def membership_grant(*, user: User, tenant_id: int, role: str) -> Membership:
    """Make ``user`` a member of the tenant with ``role`` (idempotent). Not
    audited: see ``membership_add`` and ``invitation_accept``."""
    if role not in Membership.Role.values:
        raise ValidationError({"role": f"Unknown role '{role}'. Choose one of {', '.join(Membership.Role.values)}."})
    membership, created = Membership.objects.update_or_create(user=user, tenant_id=tenant_id, defaults={"role": role})
    if created:
        _member_event("member.added", membership_id=membership.pk, user=user, tenant_id=tenant_id, role=role)
    invalidate_tenant(tenant_id, "usage")  # seats; after the control plane commits
    return membership


def _member_event(event_type: str, *, membership_id: int, user: User, tenant_id: int, role: str) -> None:
    """member.added / member.removed, recorded in this control-plane transaction (for webhooks)."""
    from apps.outbox.services import control_events_emit

    control_events_emit(event_type, [{"object_id": membership_id, "data": {
        "membership_id": membership_id, "user_id": user.pk, "email": user.email, "role": role}}], tenant_id=tenant_id)


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


def membership_change_role(*, membership: Membership, role: str, acting_role: str) -> Membership:
    """Change a member's role, recorded in the tenant's audit log.
    ``acting_role`` is the role of whoever asks (``Membership.Role.OWNER``
    for platform operators and scripts)."""
    if role not in Membership.Role.values:
        raise ValidationError({"role": f"Unknown role '{role}'. Choose one of {', '.join(Membership.Role.values)}."})
    with tenant_audited(membership.tenant_id):
        _owner_rules(membership=membership, acting_role=acting_role, new_role=role)
        before = membership.role
        membership.role = role
        membership.save(update_fields=["role"])
        audit_record(action="update", object_type="membership", object_id=membership.pk,
                     changes={"role": [before, role]})
    return membership


def membership_remove(*, membership: Membership, acting_role: str) -> None:
    """Remove a member, recorded in the tenant's audit log; see
    ``membership_change_role`` for ``acting_role``."""
    with tenant_audited(membership.tenant_id):
        _owner_rules(membership=membership, acting_role=acting_role, new_role=None)
        membership_id = membership.pk  # gone from the instance once deleted
        membership.delete()
        audit_record(action="delete", object_type="membership", object_id=membership_id,
                     changes={"user_id": [membership.user_id, None], "role": [membership.role, None]})
        _member_event("member.removed", membership_id=membership_id, user=membership.user,
                      tenant_id=membership.tenant_id, role=membership.role)
    invalidate_tenant(membership.tenant_id, "usage")


# --- invitations ------------------------------------------------------------


@dataclass(frozen=True)
class CreatedInvitation:
    invitation: Invitation
    token: str  # shown once (and emailed)


def invitation_create(*, tenant_id: int, email: str, role: str, invited_by: User | None) -> CreatedInvitation:
    """Invite ``email`` to the tenant, recorded in its audit log. Replaces an
    earlier open invitation."""
    email = normalize_email(email)
    if role not in Membership.Role.values or role == Membership.Role.OWNER:
        raise ValidationError({"role": "Invite as admin, member or viewer."})
    with tenant_audited(tenant_id):
        if Membership.objects.filter(tenant_id=tenant_id, user__email=email).exists():
            # The address is valid; the tenant's current members make it a conflict.
            from apps.http.errors import Conflict

            raise Conflict(f"{email} is already a member of this tenant.")
        Invitation.objects.filter(tenant_id=tenant_id, email=email, accepted_at__isnull=True).delete()
        seed = tokens.new_invitation_seed()
        token = tokens.invitation_token(seed)
        invitation = Invitation.objects.create(
            tenant_id=tenant_id, email=email, role=role, token_hash=tokens.hash_secret(token), token_seed=seed,
            invited_by=invited_by, expires_at=timezone.now() + dt.timedelta(seconds=settings.INVITATION_SECONDS),
        )
        audit_record(action="create", object_type="invitation", object_id=invitation.pk,
                     changes={"email": [None, invitation.email], "role": [None, invitation.role]})
        _invitation_email(invitation)
    return CreatedInvitation(invitation=invitation, token=token)


def _invitation_email(invitation: Invitation) -> None:
    """Queue the invitation email in the control outbox, same transaction.
    The message names the invitation; the worker derives its link
    (``invitation_email_links``), so no token is in the outbox."""
    from apps.jobs.services import control_outbox_enqueue
    from apps.notifications.tasks import send_email
    from apps.tenancy.models import Tenant

    tenant = Tenant.objects.get(pk=invitation.tenant_id)
    control_outbox_enqueue(send_email, kwargs={
        "to": [invitation.email], "template": "invitation",
        "context": {"tenant_name": tenant.name, "role": invitation.role,
                    "inviter": invitation.invited_by.email if invitation.invited_by else "",
                    "expires_at": invitation.expires_at.strftime("%Y-%m-%d %H:%M UTC")},
        "refs": {"invitation_id": invitation.pk},
        "effect_key": f"invitation:{invitation.pk}",
    }, headers={"tenant_id": tenant.pk, "tenant_slug": tenant.slug})


def invitation_email_links(refs: dict, tenant_id: int | None) -> dict:
    """The invitation email's token and links, derived in the worker when it
    sends (registered with the notifications app in AccountsConfig.ready())."""
    from apps.jobs.errors import PermanentError
    from apps.notifications.emails import EmailNotNeeded
    from apps.tenancy.links import tenant_url

    invitation = Invitation.objects.select_related("tenant").filter(pk=refs.get("invitation_id")).first()
    if invitation is None:
        raise EmailNotNeeded("the invitation was withdrawn or replaced")
    if invitation.accepted_at is not None:
        raise EmailNotNeeded("the invitation was accepted already")
    if invitation.expires_at < timezone.now():
        raise EmailNotNeeded("the invitation has expired")
    token = tokens.invitation_token_for(seed=invitation.token_seed, token_hash=invitation.token_hash)
    if token is None:
        raise PermanentError(f"invitation {invitation.pk}: its token cannot be derived with the current keys; "
                             "invite the person again")
    tenant = invitation.tenant
    return {"token": token, "url": tenant_url(tenant, "/invitations/accept?" + urlencode({"token": token})),
            "api_url": tenant_url(tenant, "/api/v1/invitations/accept")}


INVITATION_UNKNOWN = "This invitation link is not valid for this organisation."
INVITATION_USED = "This invitation was already accepted."
INVITATION_EXPIRED = "This invitation has expired; ask for a new one."


def invitation_problem(invitation: Invitation | None) -> str | None:
    """Why this invitation cannot be accepted, or None when it can."""
    if invitation is None:
        return INVITATION_UNKNOWN
    if invitation.accepted_at is not None:
        return INVITATION_USED
    if invitation.expires_at < timezone.now():
        return INVITATION_EXPIRED
    return None


def invitation_by_token(*, tenant_id: int, token: str) -> Invitation | None:
    return Invitation.objects.filter(tenant_id=tenant_id, token_hash=tokens.hash_secret(token or "")).first()


def invitation_accept(*, tenant_id: int, token: str, password: str | None = None) -> Membership:
    """Accept an invitation: the user (made now if new, with ``password``)
    joins, recorded in the tenant's audit log as the user's doing."""
    with transaction.atomic(using="default"):
        invitation = (
            Invitation.objects.select_for_update()
            .filter(tenant_id=tenant_id, token_hash=tokens.hash_secret(token or ""))
            .first()
        )
        problem = invitation_problem(invitation)
        if problem:
            raise ValidationError({"token": problem})
        user = User.objects.filter(email=invitation.email).first()
        if user is None:
            if not password or len(password) < 10:
                raise ValidationError({"password": "A new account needs a password of at least 10 characters."})
            user = User.objects.create_user(email=invitation.email, password=password)
        with tenant_audited(tenant_id, actor=Actor(type="user", user_id=user.pk)):
            before = Membership.objects.filter(user=user, tenant_id=tenant_id).values_list("role", flat=True).first()
            invitation.accepted_at = timezone.now()
            invitation.save(update_fields=["accepted_at"])
            membership = membership_grant(user=user, tenant_id=tenant_id, role=invitation.role)
            audit_record(action="update", object_type="invitation", object_id=invitation.pk,
                         changes={"accepted_at": [None, invitation.accepted_at.isoformat()]})
            audit_record(action="create" if before is None else "update", object_type="membership",
                         object_id=membership.pk,
                         changes={"user_id": [None, user.pk], "role": [None, membership.role]} if before is None
                         else {"role": [before, membership.role]})
    return membership


def invitation_revoke(*, tenant_id: int, invitation_id: int) -> Invitation:
    """Withdraw an open invitation of the tenant, recorded in its audit log:
    its token stops working. Raises ValidationError when there is no open
    invitation by that id."""
    with tenant_audited(tenant_id):
        invitation = (Invitation.objects.select_for_update()
                      .filter(tenant_id=tenant_id, pk=invitation_id, accepted_at__isnull=True).first())
        if invitation is None:
            raise ValidationError({"invitation": "No open invitation by that id in this tenant."})
        invitation.delete()
        audit_record(action="delete", object_type="invitation", object_id=invitation_id,
                     changes={"email": [invitation.email, None], "role": [invitation.role, None]})
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
        # One flusher thread per process; a forked child (gunicorn worker) starts its own.
        self.flusher = Flusher("api-key-use-flusher", _flush_key_uses, lambda: API_KEY_USE_FLUSH_SECONDS)

    def add(self, key_id: int, at: dt.datetime) -> None:
        with self.lock:
            self.pending[key_id] = at
        self.flusher.ensure_started()

    def take(self) -> dict[int, dt.datetime]:
        with self.lock:
            pending, self.pending = self.pending, {}
        return pending


def _flush_key_uses() -> None:
    try:
        api_key_uses_flush()
    except Exception:  # a lost batch only makes "last used" older; never kill the flusher
        logger.warning("API key uses not recorded", exc_info=True)
    finally:
        # The flusher thread's own connection: closed, not held between flushes.
        connections.close_all()


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
