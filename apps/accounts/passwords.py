"""Forgotten passwords: a reset link by email, valid once and for a short time.

Django's token generator signs the user's password hash and last login into
the token, so a link stops working as soon as it was used (or the password
changed otherwise) and after PASSWORD_RESET_TIMEOUT.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib.auth.tokens import default_token_generator
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.encoding import force_bytes, force_str
from django.utils.http import urlsafe_base64_decode, urlsafe_base64_encode

from .models import Membership, User
from .services import normalize_email

MIN_PASSWORD_LENGTH = 10
RESET_EMAIL_INTERVAL_SECONDS = 300


@transaction.atomic
def password_reset_request(*, tenant, email: str) -> bool:
    """Email a reset link if ``email`` belongs to a member of ``tenant``.

    The caller answers the same whether or not a link went out, so the page
    cannot be used to find out who has an account here.
    """
    from apps.jobs.services import control_outbox_enqueue
    from apps.notifications.tasks import send_email
    from apps.tenancy.links import tenant_url

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
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    control_outbox_enqueue(send_email, kwargs={
        "to": [user.email], "template": "password_reset",
        "context": {"tenant_name": tenant.name,
                    "url": tenant_url(tenant, "/password/reset/confirm?" + urlencode({"uid": uid, "token": token}))},
        "effect_key": f"password-reset:{user.pk}:{token}",
    }, headers={"tenant_id": tenant.pk, "tenant_slug": tenant.slug})
    return True


def password_reset_user(*, uid: str, token: str) -> User | None:
    """The user a reset link is for, while the link is valid."""
    try:
        user = User.objects.filter(pk=int(force_str(urlsafe_base64_decode(uid or ""))), is_active=True).first()
    except (ValueError, TypeError, OverflowError):
        return None
    if user is None or not default_token_generator.check_token(user, token or ""):
        return None
    return user


def password_set(*, user: User, password: str) -> None:
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise ValidationError({"password": f"At least {MIN_PASSWORD_LENGTH} characters."})
    user.set_password(password)
    user.save(update_fields=["password"])
