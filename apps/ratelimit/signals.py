"""A plan edit (operator admin, shell) refreshes the limits every process
holds for plans (apps.ratelimit.selectors).

Cache bookkeeping, not business logic: model signals are the one place every
path that edits a plan passes. A tenant's change of plan needs nothing here:
it saves the tenant row, which the host lookup sees at once.
"""

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from apps.billing.models import Plan
from apps.caching import local

from .selectors import PLANS_SCOPE


@receiver(post_save, sender=Plan)
@receiver(post_delete, sender=Plan)
def _plan_changed(sender, instance: Plan, using: str, **kwargs) -> None:
    local.shared_changed(PLANS_SCOPE, using=using)
