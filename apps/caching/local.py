"""In-process caches that are checked against a version in Redis on every use.

Why: the request path reads the same few control-plane rows over and over
(the tenant of a host, the API key or member behind a credential, the plan).
Keeping them in the worker's memory saves a round trip each, but a revoked key
or a suspended tenant must still fail on the very next request, in every
worker. So each entry remembers the version of its scope (a hostname, a
tenant's *access* scope) and the cache generation it was read under, and is
used only while both are current. The versions are held in process under
Redis' pushes (``apps.caching.pushed``) or, when not held, read in the
request's first Redis round trip (``versioned.read_front``), so the check
itself costs no round trip of its own.

Redis down or suspect (``health.generation()`` is None): nothing here is
used, callers read the database, exactly as the Redis-held entries behave
(``apps.caching.health``).

A tenant's *access* version is raised (``access_changed``) whenever who may
call on its host, or how much, changes: API keys, memberships, users, plans.
Its key is created with the clock in milliseconds when missing, so a version
lost to eviction comes back as a value no entry was stored under.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from . import health, pushed, versioned

MAX_SCOPES = 20_000  # entries per process before the oldest half is dropped
MAX_ENTRIES_PER_SCOPE = 512

# Versions read in this request's first round trip: version key -> value.
request_versions: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "request_versions", default=None)


def access_version_key(tenant_id: int) -> str:
    return f"{pushed.watched_prefix()}access:t{tenant_id}"


def access_changed(tenant_ids, *, using: str = "default") -> None:
    """Drop every process's cached principals and plan of these tenants,
    after the transaction on ``using`` commits (and once now)."""
    versioned.invalidate([access_version_key(t) for t in tenant_ids if t], using=using)


# Shared scopes: rows many tenants use (plans), held once per process under
# one version each, read in the same first round trip as the access version.
_shared_scopes: list[str] = []


def register_shared_scope(name: str) -> None:
    """Declare a shared scope (at app start), so every request reads its version."""
    if name not in _shared_scopes:
        _shared_scopes.append(name)


def shared_version_key(name: str) -> str:
    return f"{pushed.watched_prefix()}shared:{name}"


def shared_version_keys() -> list[str]:
    return [shared_version_key(name) for name in _shared_scopes]


def shared_changed(name: str, *, using: str = "default") -> None:
    """Drop every process's entries of the shared scope ``name``, after the
    transaction on ``using`` commits (and once now)."""
    versioned.invalidate([shared_version_key(name)], using=using)


def current_version(version_key: str, generation: int) -> str | None:
    """The version of a scope: from this request's first round trip when it
    was read there, else one round trip now. None: Redis is not to be used."""
    known = (request_versions.get() or {}).get(version_key)
    if known is not None:
        return known
    watching = pushed.start_read()
    if watching is not None:
        held = watching[0].get([version_key])
        if held is not None and held[0] is not None:
            return held[0]
    try:
        value = versioned.read_versions([version_key])[0]
    except RedisError:
        health.report_failure()
        return None
    if health.generation() != generation:
        return None
    if watching is not None:
        watching[0].remember(watching[1], [version_key], [value])
    return value


class VersionedLocal:
    """scope -> (generation, version, {key: value}), in this process."""

    def __init__(self):
        self._lock = threading.Lock()
        self._scopes: dict[str, tuple[int, str, dict]] = {}

    def get_or_load(self, version_key: str, key: Any, load: Callable[[], Any], *,
                    cacheable: Callable[[Any], bool] = lambda value: True, max_age: float | None = None) -> Any:
        """The value of ``key`` in the scope of ``version_key``, loaded (from
        the database) when absent or out of date; ``cacheable(value)`` False
        keeps a value out of the cache (answered, not remembered); ``max_age``
        bounds how long a value is held whatever the version says (for rows
        that may change without a signal)."""
        generation = health.generation()
        if generation is None:
            return load()
        version = current_version(version_key, generation)
        if version is None:
            return load()
        with self._lock:
            scope = self._scopes.get(version_key)
            if scope is not None and scope[0] == generation and scope[1] == version and key in scope[2]:
                value, expires = scope[2][key]
                if expires is None or time.monotonic() < expires:
                    return value
        value = load()
        if cacheable(value):
            expires = None if max_age is None else time.monotonic() + max_age
            self._remember(version_key, generation, version, key, (value, expires))
        return value

    def _remember(self, version_key: str, generation: int, version: str, key: Any, value: Any) -> None:
        with self._lock:
            scope = self._scopes.get(version_key)
            if scope is None or scope[0] != generation or scope[1] != version:
                if len(self._scopes) >= MAX_SCOPES:
                    for old in list(self._scopes)[: MAX_SCOPES // 2]:
                        del self._scopes[old]
                scope = (generation, version, {})
                self._scopes[version_key] = scope
            if len(scope[2]) >= MAX_ENTRIES_PER_SCOPE:
                scope[2].clear()
            scope[2][key] = value

    def clear(self) -> None:
        with self._lock:
            self._scopes.clear()


# One of each per process: principals by tenant access scope; shared rows.
access = VersionedLocal()
shared = VersionedLocal()
