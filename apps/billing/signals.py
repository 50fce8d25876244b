"""Drop a plan's cached copy whenever it changes (operator admin, shell, ...).

Cache bookkeeping, not business logic: model signals are the one place every
path that edits a plan passes. Dropped now and again after the control plane
commits, so a concurrent read cannot cache the old limits between the two.
"""

from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .models import Plan
from .selectors import plan_cache_key


@receiver(post_save, sender=Plan)
@receiver(post_delete, sender=Plan)
def _plan_changed(sender, instance: Plan, using: str, **kwargs) -> None:
    key = plan_cache_key(instance.pk)
    cache.delete(key)
    transaction.on_commit(lambda: cache.delete(key), using=using)
