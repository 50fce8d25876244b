"""Beat's sweep of invalidations that could not reach Redis at the time."""

from __future__ import annotations

import logging

from celery import shared_task
from redis.exceptions import RedisError

from apps.caching.versioned import apply_pending

from .base import PlatformTask

logger = logging.getLogger(__name__)


@shared_task(base=PlatformTask, name="caching.sweep_invalidations")
def sweep_invalidations() -> int:
    """Every few seconds: raise the versions that failed invalidations left
    behind. While Redis is still down the rows stay for the next run (no retry
    or dead letter: the next run is seconds away)."""
    try:
        return apply_pending()
    except RedisError:
        logger.warning("cache invalidation sweep: Redis unavailable, retrying on the next run")
        return 0
