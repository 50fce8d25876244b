"""What some tests need from the machine: a tool (HAProxy, PgBouncer,
promtool, chromium), a service (RabbitMQ) or a topology (a second shard).

On a developer's machine a missing one skips the test with the reason. Under
CI (``CI=true``, exported by .ci/run) it fails the test with the same reason:
CI installs and starts all of them, so a missing one is a broken set-up, and
a run that skipped those tests would pass without having tested them.

Use ``require(condition, reason)`` (or ``require_tool``) inside a test or a
fixture, and ``pytest.mark.requires(condition, reason=...)`` where a whole
module or test would otherwise use ``skipif`` (the root conftest applies it).
"""

from __future__ import annotations

import os
import shutil

import pytest

TRUTHY = {"1", "true", "yes", "on"}


def under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in TRUTHY


def require(condition: object, reason: str) -> None:
    """Go on when ``condition`` holds; else skip (locally) or fail (under CI)."""
    if condition:
        return
    if under_ci():
        pytest.fail(f"{reason} [required under CI=true: .ci/run provides it]", pytrace=False)
    pytest.skip(reason)


def require_tool(name: str, reason: str | None = None) -> str:
    """The path of executable ``name`` on PATH (see ``require``)."""
    path = shutil.which(name)
    require(path is not None, reason or f"{name} is not installed")
    return path


def second_shard_configured() -> bool:
    """Shard b on a server of its own (bin/dev starts one), as configured in settings."""
    from django.conf import settings

    return settings.SHARD_ALIAS_PREFIX + "b" in settings.DATABASES


def second_shard_with_replica() -> bool:
    from apps.tenancy import planes

    return "shard_b" in planes.shard_aliases() and planes.replica_alias("shard_b") is not None
