"""Writes to users and memberships."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction

from .models import Membership, User


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
    return membership
