"""Global users and their memberships in tenants (control plane)."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.db import models


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra):
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra):
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra):
        extra.update(is_staff=True, is_superuser=True)
        return self._create_user(email, password, **extra)


class User(AbstractUser):
    """A person who can sign in; the same account may belong to many tenants."""

    username = None
    email = models.EmailField(unique=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    objects = UserManager()

    class Meta:
        ordering = ["email"]

    def __str__(self) -> str:
        return self.email


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        ADMIN = "admin", "Admin"
        MEMBER = "member", "Member"
        VIEWER = "viewer", "Viewer"

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "tenant"], name="membership_unique_user_tenant")]
        ordering = ["tenant_id", "user_id"]

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant_id} as {self.role}"


ADMIN_ROLES = frozenset({Membership.Role.OWNER, Membership.Role.ADMIN})


class Invitation(models.Model):
    """An email invitation to join a tenant with a role; accepted by token."""

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=20, choices=Membership.Role.choices, default=Membership.Role.MEMBER)
    # sha256 of the token, to find the invitation a presented token opens.
    token_hash = models.CharField(max_length=64, unique=True)
    # The token is not stored: it is an HMAC of this seed under SECRET_KEY
    # (tokens.invitation_token), so the worker that emails it derives it
    # from the invitation's id alone, and the seed, readable by whoever reads
    # the table, opens nothing without the key. Empty on invitations made
    # before that, whose token cannot be derived (they are re-sent by inviting again).
    token_seed = models.CharField(max_length=64, blank=True, default="")
    invited_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "email"], condition=models.Q(accepted_at__isnull=True), name="invitation_one_open_per_email"
            )
        ]

    def __str__(self) -> str:
        return f"{self.email} -> {self.tenant_id} as {self.role}"


class PasswordReset(models.Model):
    """A request for a password reset link, made on a tenant's host.

    The link's token is not stored anywhere: the worker that sends the email
    derives it (apps/accounts/passwords.py) from this row, the user's
    current password hash and SECRET_KEY, so the outbox row, the broker
    message and a dead letter carry only this row's id. Using the link marks
    the row used, which (like a password change) ends the token.
    """

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"password reset {self.pk} of user {self.user_id} at tenant {self.tenant_id}"


class ApiKey(models.Model):
    """A tenant's API key. Stored as a hash; the key is shown once."""

    class Scope(models.TextChoices):
        READ = "read", "Read"  # GET endpoints
        WRITE = "write", "Write"  # + creating and changing tenant data
        ADMIN = "admin", "Admin"  # + members, invitations, keys, audit

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)  # public, identifies the key in lists and logs
    key_hash = models.CharField(max_length=64)
    scopes = models.JSONField(default=list)
    created_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class SupportGrant(models.Model):
    """An operator's time-boxed access to one tenant, for support.

    Platform operators are strangers on a tenant's host unless a grant is
    active: it names the operator, the reason and an expiry, is shown to the
    tenant's owners, and every request made under it is recorded in the
    tenant's own audit log as support access.
    """

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="support_grants")
    operator = models.ForeignKey(User, on_delete=models.CASCADE, related_name="support_grants")
    reason = models.TextField()
    granted_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["tenant", "operator", "expires_at"], name="support_grant_lookup")]

    def __str__(self) -> str:
        return f"{self.operator} -> tenant {self.tenant_id} until {self.expires_at:%Y-%m-%d %H:%M}"

    @property
    def is_active(self) -> bool:
        from django.utils import timezone

        return self.revoked_at is None and self.expires_at > timezone.now()
