"""Every Redis key of a tenant, found by how each app builds its keys.

One SCAN over the deployment's key space (the cache's KEY_PREFIX and the
rate limiter's prefix) classifies each key by patterns made from the
tenant's id, hostnames and API key ids, and the erased users' ids and
emails; matching keys are deleted, and the tenant's members of shared sets
(the console's per-minute tops, the fairness registry and re-publish set)
are removed from them. The patterns follow the key builders:

- the tenant cache ``<kp>:tc:t<id>:...`` (apps/tenancy/tenant_cache.py);
- the host front cache ``<kp>:tc:host:<host>...`` and the pushed versions
  ``<kp>:pv:host:<host>``, ``<kp>:pv:access:t<id>``, ``<kp>:pv:ryw:<id>:...``
  (apps/tenancy/selectors.py, apps/caching/local.py, apps/tenancy/middleware.py);
- fairness ``<kp>:fair:<queue>:<id>:slots|parked``, ``<kp>:fair:limit:<id>``
  (apps/jobs/fairness.py);
- the console's traffic ``<kp>:<v>:traffic:<id>:<minute>``,
  ``...:traffic:errors:<id>`` (apps/backoffice/console/traffic.py);
- webhook wake-up flags ``<kp>:webhooks:queued:<id>`` (apps/webhooks/wakeups.py);
- rate limits ``<rl>:t:<id>...``, ``<rl>:anon:t:<id>:...``, ``<rl>:pw:t:<id>:...``,
  ``<rl>:k:<api key id>...`` and, for erased users, ``<rl>:pw:acct:<hash>``
  (apps/ratelimit) and ``<kp>:<v>:accounts:password-reset:<user id>``.

tests/test_lifecycle_erasure.py plants a marker through each of these and
checks that no key or value of the whole Redis database holds it afterwards.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field

from django.conf import settings
from django.core.cache import cache

from apps.caching.connections import redis_client


@dataclass
class Identity:
    tenant_id: int | None  # None: people only (a data-subject request)
    hostnames: list[str] = field(default_factory=list)
    api_key_ids: list[int] = field(default_factory=list)
    user_ids: list[int] = field(default_factory=list)
    user_emails: list[str] = field(default_factory=list)


def _alternatives(values) -> str:
    return "|".join(re.escape(str(v)) for v in values) or "(?!)"


def key_patterns(who: Identity) -> re.Pattern:
    kp = re.escape(settings.CACHES["default"].get("KEY_PREFIX", ""))
    rl = re.escape(settings.RATE_LIMIT_PREFIX)
    traffic = re.escape(cache.make_key("traffic"))
    n = who.tenant_id
    hosts = _alternatives(h.lower() for h in who.hostnames)
    accounts = _alternatives(hashlib.sha256(e.strip().lower().encode()).hexdigest()[:32] for e in who.user_emails)
    versioned_cache = re.escape(cache.make_key("accounts:password-reset:"))
    people = [rf"{rl}:pw:acct:(?:{accounts})$", rf"{versioned_cache}(?:{_alternatives(who.user_ids)})$"]
    if n is None:
        return re.compile("^(?:" + "|".join(f"(?:{p})" for p in people) + ")")
    patterns = [
        rf"{kp}:tc:t{n}:", rf"{kp}:tc:host:(?:{hosts})(?::|$)",
        rf"{kp}:pv:host:(?:{hosts})$", rf"{kp}:pv:access:t{n}$", rf"{kp}:pv:ryw:{n}:",
        rf"{kp}:fair:[^:]+:{n}:(?:slots|parked)$", rf"{kp}:fair:limit:{n}$",
        rf"{traffic}:{n}:\d+$", rf"{traffic}:errors:{n}$",
        rf"{kp}:webhooks:queued:{n}$",
        rf"{rl}:(?:anon:)?t:{n}(?::|$)", rf"{rl}:pw:t:{n}:", rf"{rl}:k:(?:{_alternatives(who.api_key_ids)})(?::|$)",
        *people,
    ]
    return re.compile("^(?:" + "|".join(f"(?:{p})" for p in patterns) + ")")


def _scan_prefixes() -> list[str]:
    return [f"{settings.CACHES['default'].get('KEY_PREFIX', '')}:*", f"{settings.RATE_LIMIT_PREFIX}:*"]


def _text(raw) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)


def _shared_members(client, who: Identity) -> int:
    """The tenant's members of shared sets: console tops, fairness registries."""
    kp = settings.CACHES["default"].get("KEY_PREFIX", "")
    removed = 0
    for key in client.scan_iter(match=f"{cache.make_key('traffic')}:top:*", count=1000):
        removed += client.zrem(key, str(who.tenant_id))
    parked = re.compile(rf"^{re.escape(kp)}:fair:[^:]+:{who.tenant_id}:parked$")
    registry = f"{kp}:fair:parked-lists"
    for member in client.smembers(registry):
        if parked.match(_text(member)):
            removed += client.srem(registry, member)
    republishing = f"{kp}:fair:republishing"
    for raw in client.zrange(republishing, 0, -1):
        try:
            headers = json.loads(raw).get("headers") or {}
        except (ValueError, AttributeError):
            continue
        if str(headers.get("tenant_id")) == str(who.tenant_id):
            removed += client.zrem(republishing, raw)
    return removed


def erase_keys(who: Identity) -> dict:
    """Delete every key of ``who``; returns counts for the erasure record."""
    client = redis_client()
    members = _shared_members(client, who) if who.tenant_id is not None else 0
    pattern = key_patterns(who)
    deleted = 0
    for prefix in _scan_prefixes():
        batch = []
        for key in client.scan_iter(match=prefix, count=1000):
            if pattern.match(_text(key)):
                batch.append(key)
            if len(batch) >= 500:
                deleted += client.delete(*batch)
                batch = []
        if batch:
            deleted += client.delete(*batch)
    return {"keys": deleted, "members": members}
