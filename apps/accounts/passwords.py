"""Forgotten passwords: a reset link by email, valid once and for a short time.

A request writes a PasswordReset row and queues the email with the row's id
only. The worker that sends the email derives the link's token then, with
Django's PasswordResetTokenGenerator (keyed by SECRET_KEY, over the user's
password hash, last login and the reset's own id and state), so the token
is never stored: not in the outbox (rows are kept for days), the broker, a
dead letter, a log line or any page an operator opens. Replaying a dead
letter derives a fresh, equally valid link.

The token stops working when it is used (the row is marked used), when the
password changes by any route, and PASSWORD_RESET_TIMEOUT after the email was
sent. A reset done is recorded in the tenant's audit log, as the user's own
doing; a password an operator sets in the operator admin is recorded in the
log of every tenant the user belongs to.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from apps.audit.services import audit_record
from apps.observability.context import Actor

from .models import Membership, PasswordReset, User
from .services import normalize_email, tenant_audited

MIN_PASSWORD_LENGTH = 10
RESET_EMAIL_INTERVAL_SECONDS = 300


class ResetTokens(PasswordResetTokenGenerator):
    """Django's reset tokens, bound to one PasswordReset: a token of one
    request never opens another, and a used request's token is dead even
    before the password hash changes."""

    key_salt = "apps.accounts.passwords.ResetTokens"

    def __init__(self, reset: PasswordReset):
        super().__init__()
        self.reset = reset

    def _make_hash_value(self, user, timestamp):
        used = "" if self.reset.used_at is None else self.reset.used_at.isoformat()
        return f"{self.reset.pk}:{self.reset.user_id}:{used}:" + super()._make_hash_value(user, timestamp)


@transaction.atomic
def password_reset_request(*, tenant, email: str) -> bool:
    """Email a reset link if ``email`` belongs to a member of ``tenant``.

    The caller answers the same whether or not a link went out, so the page
    cannot be used to find out who has an account here.
    """
    from apps.jobs.services import control_outbox_enqueue
    from apps.notifications.tasks import send_email

    try:
        email = normalize_email(email)
    except ValidationError:
        return False
    user = User.objects.filter(email=email, is_active=True).first()
    if user is None or not Membership.objects.filter(user=user, tenant_id=tenant.pk).exists():
        return False
    # At most one email per account every RESET_EMAIL_INTERVAL: the page
    # answers anyone, and must not become a way to flood a member's inbox.
    if not cache.add(f"accounts:password-reset:{user.pk}", 1, RESET_EMAIL_INTERVAL_SECONDS):
        return False
    reset = PasswordReset.objects.create(user=user, tenant_id=tenant.pk)
    control_outbox_enqueue(send_email, kwargs={
        "to": [user.email], "template": "password_reset", "context": {"tenant_name": tenant.name},
        "refs": {"password_reset_id": reset.pk}, "effect_key": f"password-reset:{reset.pk}",
    }, headers={"tenant_id": tenant.pk, "tenant_slug": tenant.slug})
    return True


def password_reset_email_links(refs: dict, tenant_id: int | None) -> dict:
    """The reset email's link, its token derived now, in the worker
    (registered with the notifications app in AccountsConfig.ready())."""
    from apps.notifications.emails import EmailNotNeeded
    from apps.tenancy.links import tenant_url

    reset = (PasswordReset.objects.select_related("user", "tenant")
             .filter(pk=refs.get("password_reset_id")).first())
    if reset is None:
        raise EmailNotNeeded("the reset request is gone")
    if reset.used_at is not None:
        raise EmailNotNeeded("the reset link was used already")
    if not reset.user.is_active:
        raise EmailNotNeeded("the account is deactivated")
    token = ResetTokens(reset).make_token(reset.user)
    return {"url": tenant_url(reset.tenant, "/password/reset/confirm?" + urlencode({"reset": reset.pk,
                                                                                     "token": token}))}


def password_reset_open(*, tenant_id: int, reset_id: str, token: str) -> PasswordReset | None:
    """The reset a link of this tenant opens, while the link is valid."""
    try:
        reset_pk = int(reset_id or "")
    except ValueError:
        return None
    reset = (PasswordReset.objects.select_related("user")
             .filter(pk=reset_pk, tenant_id=tenant_id, used_at__isnull=True, user__is_active=True).first())
    if reset is None or not ResetTokens(reset).check_token(reset.user, token or ""):
        return None
    return reset


def _check_password(password: str) -> None:
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise ValidationError({"password": f"At least {MIN_PASSWORD_LENGTH} characters."})


def password_reset_complete(*, tenant_id: int, reset_id: str, token: str, password: str) -> User:
    """Set the new password through a valid link, once; the tenant's audit
    log records it as the user's doing. ValidationError when the link no
    longer works or the password is too short."""
    _check_password(password)
    with transaction.atomic(using="default"):
        reset = password_reset_open(tenant_id=tenant_id, reset_id=reset_id, token=token)
        if reset is None or not PasswordReset.objects.select_for_update().filter(
                pk=reset.pk, used_at__isnull=True).exists():
            raise ValidationError({"token": "This link no longer works."})
        user = reset.user
        with tenant_audited(tenant_id, actor=Actor(type="user", user_id=user.pk)):
            now = timezone.now()
            PasswordReset.objects.filter(pk=reset.pk).update(used_at=now)
            user.set_password(password)
            user.save(update_fields=["password"])
            audit_record(action="update", object_type="user", object_id=user.pk,
                         changes={"password": "reset with an emailed link", "password_reset": reset.pk})
    return user


def password_set_by_operator(*, user: User, password: str | None) -> None:
    """An operator sets a user's password in the operator admin (``None``:
    password sign-in disabled). That is acting inside every tenant the user
    belongs to, so it goes into each of their audit logs."""
    with transaction.atomic(using="default"):
        tenant_ids = list(Membership.objects.filter(user=user).values_list("tenant_id", flat=True))
        if password is None:
            user.set_unusable_password()
        else:
            user.set_password(password)
        user.save(update_fields=["password"])
        for tenant_id in tenant_ids:
            with tenant_audited(tenant_id):
                audit_record(action="update", object_type="user", object_id=user.pk,
                             changes={"password": "set by a platform operator" if password is not None
                                      else "sign-in by password disabled by a platform operator"})
