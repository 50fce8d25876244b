"""Operations that span apps: the demo data set."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from apps.accounts.services import user_ensure
from apps.content.models import Document
from apps.content.services import document_create
from apps.tenancy.activation import tenant_activated
from apps.tenancy.routers import tenant_write_alias
from apps.tenancy.services import (
    ProvisionedTenant,
    public_tenant_ensure,
    shard_register_configured,
    tenant_create,
)

DEMO_SLUG = "demo"
DEMO_NAME = "Demo Company"
DEMO_OWNER_EMAIL = "owner@demo.example.com"
DEMO_OWNER_PASSWORD = "demo-owner-password"
OPERATOR_EMAIL = "operator@example.com"
OPERATOR_PASSWORD = "operator-password"

DEMO_DOCUMENTS = [
    ("Welcome to the platform", "This tenant was seeded with sample data."),
    ("Quarterly plan", "Goals, owners and dates for the quarter."),
    ("Onboarding checklist", "Accounts, keys, first documents."),
    ("Incident review template", "What happened, impact, timeline, follow-ups."),
    ("Release notes", "What changed in this release."),
]


@dataclass(frozen=True)
class DemoSeed:
    provisioned: ProvisionedTenant
    documents_created: int


def demo_seed() -> DemoSeed:
    """Create the operator account and the demo tenant with sample documents.

    Idempotent: re-running resets the demo passwords and adds only missing
    documents.
    """
    public_tenant_ensure()
    shard_register_configured()
    user_ensure(email=OPERATOR_EMAIL, password=OPERATOR_PASSWORD, superuser=True)
    provisioned = tenant_create(
        slug=DEMO_SLUG, name=DEMO_NAME, admin_email=DEMO_OWNER_EMAIL, admin_password=DEMO_OWNER_PASSWORD
    )
    owner = user_ensure(email=DEMO_OWNER_EMAIL, password=DEMO_OWNER_PASSWORD)
    created = 0
    with tenant_activated(provisioned.tenant), transaction.atomic(using=tenant_write_alias()):
        existing = set(Document.objects.values_list("title", flat=True))
        for title, body in DEMO_DOCUMENTS:
            if title not in existing:
                document_create(title=title, body=body, author_id=owner.user.pk)
                created += 1
    return DemoSeed(provisioned=provisioned, documents_created=created)
