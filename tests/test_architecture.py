"""Rules about the repository's shape that keep imports sane."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SKIP = {".venv", ".local", ".git", "var", "node_modules"}


def top_level_importable_names() -> set[str]:
    names = set()
    for entry in ROOT.iterdir():
        if entry.name in SKIP or entry.name.startswith("."):
            continue
        if entry.is_dir() and (entry / "__init__.py").exists():
            names.add(entry.name)
        elif entry.is_file() and entry.suffix == ".py":
            names.add(entry.stem)
    return names


def test_no_top_level_package_shadows_the_standard_library():
    shadowing = top_level_importable_names() & set(sys.stdlib_module_names)
    assert not shadowing, f"these top-level names shadow standard-library modules: {sorted(shadowing)}"


def test_platform_directory_holds_no_python():
    platform_dir = ROOT / "platform"
    assert platform_dir.is_dir()
    python_files = [p for p in platform_dir.rglob("*.py")]
    assert not python_files, f"platform/ must never become a package: {python_files}"


def test_the_standard_library_platform_module_is_the_real_one():
    import platform

    assert hasattr(platform, "python_version"), platform.__file__


def test_every_model_declares_its_plane_through_the_app_lists():
    """A model's app is in SHARED_APPS (control plane) or TENANT_APPS, never both."""
    from django.apps import apps
    from django.conf import settings

    shared, tenant = set(settings.SHARED_APPS), set(settings.TENANT_APPS)
    assert not (shared & tenant)
    for model in apps.get_models():
        config = apps.get_app_config(model._meta.app_label)
        assert config.name in shared | tenant, f"{model.__name__} belongs to neither plane"


def test_no_foreign_key_crosses_the_planes():
    """Control-plane tables live in `default`, tenant tables on shards: a
    foreign key between them would span two databases."""
    from django.apps import apps

    from apps.tenancy.planes import plane_of

    crossing = [
        f"{model.__name__}.{field.name} -> {field.related_model.__name__}"
        for model in apps.get_models()
        for field in model._meta.get_fields()
        if field.is_relation and field.related_model is not None and field.concrete
        and plane_of(model) != plane_of(field.related_model)
    ]
    assert not crossing, crossing


@pytest.mark.live
def test_the_production_settings_pass_the_deployment_checks():
    import os
    import subprocess
    import sys

    env = dict(os.environ, DJANGO_SETTINGS_MODULE="config.settings.production",
               DJANGO_SECRET_KEY="a-long-random-production-like-secret-key-for-the-check-only-0123456789",
               DJANGO_ALLOWED_HOSTS=".saas.example.com", PLATFORM_DOMAIN="saas.example.com",
               EMAIL_HOST="smtp.example.com", EMAIL_PORT="587")
    result = subprocess.run([sys.executable, str(ROOT / "manage.py"), "check", "--deploy", "--fail-level", "WARNING"],
                            capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
