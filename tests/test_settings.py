"""Settings from the environment: a bad or missing variable stops the process
with one line that names it, never a traceback or a silent default."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.settings import environment
from tests.support import ROOT, process_env

# Each defaults to something local (a database, Redis, mail catcher, `localhost`
# hosts) or to a development key; production must be told.
REQUIRED_VARIABLES = ["DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS", "PLATFORM_DOMAIN", "DATABASE_URL", "REDIS_URL",
                      "EMAIL_HOST", "EMAIL_PORT"]
PRODUCTION_VALUES = {
    "DJANGO_SECRET_KEY": "a-long-random-production-like-secret-key-for-the-check-only-0123456789",
    "DJANGO_ALLOWED_HOSTS": ".saas.example.com",
    "PLATFORM_DOMAIN": "saas.example.com",
    "EMAIL_HOST": "smtp.example.com",
    "EMAIL_PORT": "587",
}


def check(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), "check", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("SHARD_CONNECT_TIMEOUT", "abc", "a whole number of seconds"),
        ("SHARD_URLS", "main", "name=url pairs separated by commas"),
        ("SHARD_URLS", "main=mysql://db.internal/saas", "scheme postgres/postgresql"),
        ("SHARD_REPLICA_URLS", "nowhere=postgres://replica.internal/saas", "names from SHARD_URLS"),
        ("REPLICA_READS", "maybe", "true or false"),
        ("REDIS_TIMEOUT_SECONDS", "fast", "a number of seconds"),
        ("LOG_FORMAT", "xml", "one of json, console"),
    ],
)
@pytest.mark.live
def test_a_bad_value_stops_manage_py_with_one_line_naming_the_variable_and_its_form(variable, value, expected):
    result = check(process_env(**{variable: value}))

    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0] and expected in lines[0], lines[0]


@pytest.mark.live
def test_a_url_in_a_message_is_never_echoed_it_may_carry_a_password():
    result = check(process_env(SHARD_URLS="main=postgres://app:s3cret-pass@db.internal:notaport/saas"))

    assert result.returncode != 0
    assert "SHARD_URLS" in result.stderr and "does not parse as a URL" in result.stderr
    assert "s3cret-pass" not in result.stderr


def production_env(**values: str) -> dict[str, str]:
    """This machine's environment with none of production's required variables, plus ``values``."""
    env = {name: value for name, value in os.environ.items() if name not in REQUIRED_VARIABLES}
    env.update(DJANGO_SETTINGS_MODULE="config.settings.production", **values)
    return env


@pytest.mark.live
def test_production_refuses_to_start_without_its_variables_and_names_every_one():
    result = check(production_env())

    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    message = result.stderr.strip()
    assert message.endswith("not set: " + ", ".join(REQUIRED_VARIABLES)), message


@pytest.mark.live
def test_production_refuses_a_blank_variable_and_names_only_what_is_missing():
    values = {**PRODUCTION_VALUES, "DATABASE_URL": process_env()["DATABASE_URL"], "REDIS_URL": "   "}

    result = check(production_env(**values))

    assert result.returncode != 0
    assert result.stderr.strip().endswith("not set: REDIS_URL"), result.stderr


@pytest.mark.live
def test_production_starts_with_exactly_its_required_variables():
    """Nothing else is needed: shards default to the control database, the broker to Redis."""
    from django.conf import settings

    values = {**PRODUCTION_VALUES, "DATABASE_URL": process_env()["DATABASE_URL"], "REDIS_URL": settings.REDIS_URL}
    env = {name: value for name, value in production_env(**values).items()
           if name in {*REQUIRED_VARIABLES, "DJANGO_SETTINGS_MODULE", "PATH", "HOME", "LANG"}}

    result = check(env, "--deploy", "--fail-level", "WARNING")

    assert result.returncode == 0, result.stdout + result.stderr


# --- the readers themselves (in this process) --------------------------------


@pytest.mark.parametrize(("word", "expected"), [("true", True), ("YES", True), (" on ", True), ("1", True),
                                                ("false", False), ("No", False), ("off", False), ("0", False)])
def test_booleans_accept_the_usual_words(monkeypatch, word, expected):
    monkeypatch.setenv("SOME_FLAG", word)
    assert environment.env_bool("SOME_FLAG", not expected) is expected


def test_a_blank_value_counts_as_unset(monkeypatch):
    monkeypatch.setenv("SOME_FLAG", "")
    monkeypatch.setenv("SOME_NUMBER", "  ")
    assert environment.env_bool("SOME_FLAG", True) is True
    assert environment.env_int("SOME_NUMBER", 7) == 7
    assert environment.env_named_urls("SOME_NUMBER", schemes=environment.POSTGRES_SCHEMES) == {}


def test_named_urls_keep_their_order_and_refuse_a_name_given_twice(monkeypatch):
    monkeypatch.setenv("SOME_URLS", " main=postgres://a/db , eu-2=postgresql://user:pw@b:6432/db ")
    assert environment.env_named_urls("SOME_URLS", schemes=environment.POSTGRES_SCHEMES) == {
        "main": "postgres://a/db", "eu-2": "postgresql://user:pw@b:6432/db"}
    monkeypatch.setenv("SOME_URLS", "main=postgres://a/db,main=postgres://b/db")
    with pytest.raises(ImproperlyConfigured, match="SOME_URLS: .*'main' appears twice"):
        environment.env_named_urls("SOME_URLS", schemes=environment.POSTGRES_SCHEMES)


def test_numbers_below_their_minimum_are_refused(monkeypatch):
    monkeypatch.setenv("SOME_TIMEOUT", "0")
    with pytest.raises(ImproperlyConfigured, match="SOME_TIMEOUT: expected a whole number of seconds >= 1, got '0'"):
        environment.env_int("SOME_TIMEOUT", 2, minimum=1, unit="seconds")


# --- deployments set what production requires --------------------------------


def test_the_compose_file_sets_every_variable_production_requires():
    import yaml

    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    app_env = compose["x-app"]["environment"]

    assert compose["x-app"]["environment"]["DJANGO_SETTINGS_MODULE"] == "config.settings.production"
    assert [name for name in REQUIRED_VARIABLES if not str(app_env.get(name, "")).strip()] == []


def test_the_kubernetes_config_and_secret_cover_every_variable_production_requires():
    import yaml

    provided: dict[str, set[str]] = {}
    for path in sorted((ROOT / "platform" / "kubernetes").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get("kind") in {"ConfigMap", "Secret"}:
                keys = {*(document.get("data") or {}), *(document.get("stringData") or {})}
                provided.setdefault(document["metadata"]["name"], set()).update(keys)
    every_pod_gets = provided.get("saas-config", set()) | provided.get("saas-secrets", set())

    assert [name for name in REQUIRED_VARIABLES if name not in every_pod_gets] == []
