"""docker/compose.yaml, checked offline: every service healthy-checked,
started in order, restarted on failure, pinned, nothing installed at start,
every queue consumed, every mounted file present."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.support import ROOT
from tests.test_deployment_files import production_required_variables

COMPOSE = ROOT / "docker" / "compose.yaml"
SPEC = yaml.safe_load(COMPOSE.read_text())
SERVICES = SPEC["services"]
ONE_SHOT = {name for name, s in SERVICES.items() if s.get("restart") == "no"}


def is_app(service: dict) -> bool:
    return isinstance(service.get("build"), dict) and service["build"].get("dockerfile") == "docker/Dockerfile"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_is_checked_restarted_and_pinned(name):
    service = SERVICES[name]
    if name in ONE_SHOT:
        assert name == "migrate"
    else:
        assert service.get("restart") in {"unless-stopped", "always", "on-failure"}, name
    if is_app(service):
        # The image's HEALTHCHECK (config/healthcheck.py) fits the process type given here.
        assert "HEALTHCHECK" in (ROOT / "docker" / "Dockerfile").read_text()
        assert service["environment"].get("PROCESS_TYPE") in {"web", "worker", "beat", "migrate"}, name
    elif name not in ONE_SHOT:
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
    image = service.get("image", "")
    assert image and ":" in image and not image.endswith(":latest"), f"{name}: pin the image ({image!r})"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_start_order_waits_for_health_not_just_start(name):
    depends = SERVICES[name].get("depends_on", {})
    assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
    for other, rule in depends.items():
        assert other in SERVICES, f"{name} depends on unknown {other}"
        condition = rule["condition"]
        if other in ONE_SHOT:
            assert condition == "service_completed_successfully"
        else:
            assert condition == "service_healthy", f"{name} -> {other}: {condition}"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_nothing_is_installed_when_a_container_starts(name):
    service = SERVICES[name]
    started = " ".join(str(part) for key in ("command", "entrypoint") for part in _as_list(service.get(key)))
    assert not re.search(r"\b(pip|apt-get|apt|npm|apk)\b.*\binstall\b", started), f"{name}: {started}"


def _as_list(value):
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def test_app_services_have_what_production_requires():
    required = set(production_required_variables())
    apps = {name: service for name, service in SERVICES.items() if is_app(service)}
    assert apps, "no service builds the platform's image"
    for name, service in apps.items():
        missing = required - set(service["environment"])
        assert not missing, f"{name} lacks {missing}"


def test_every_queue_has_one_worker_group_and_there_is_one_beat():
    from django.conf import settings

    consumed = []
    for service in SERVICES.values():
        command = service.get("command") or []
        if "worker" in command and "--queues" in command:
            consumed += command[command.index("--queues") + 1].split(",")
    assert sorted(consumed) == sorted(settings.TASK_QUEUES)
    assert sum("beat" in (s.get("command") or []) for s in SERVICES.values()) == 1


def test_mounted_files_exist():
    mounts = [(name, str(volume).split(":", 1)[0]) for name, service in SERVICES.items()
              for volume in service.get("volumes", [])]
    files = [(name, source) for name, source in mounts if source.startswith((".", "/"))]
    assert files, "no file of the repository is mounted: the volumes are not being read"
    for name, source in files:
        assert (COMPOSE.parent / source).resolve().exists(), f"{name}: {source} is missing"


def test_haproxy_gets_every_variable_its_configuration_reads():
    config = (ROOT / "platform" / "haproxy" / "haproxy.cfg").read_text()
    needed = set(re.findall(r'"\$\{([A-Z0-9_]+)\}"', config))
    assert needed <= set(SERVICES["haproxy"]["environment"]), needed - set(SERVICES["haproxy"]["environment"])
