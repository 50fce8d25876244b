"""The CI check that refuses migrations which would hold long locks on big tables."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connections
from django.db.migrations.loader import MigrationLoader

from apps.fleet.migration_safety import check_migration
from tests.support import ROOT

FIXTURES = Path(__file__).parent / "migration_fixtures"


def fixture_findings(name: str) -> list:
    spec = importlib.util.spec_from_file_location(f"migration_fixture_{name}", FIXTURES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    migration = module.Migration(name, "content")
    loader = MigrationLoader(None, ignore_no_migrations=True)
    state = loader.project_state(tuple(migration.dependencies), at_end=True)
    return check_migration(migration, state, connections["default"])


def test_each_long_lock_on_an_existing_table_is_flagged():
    findings = fixture_findings("unsafe_on_existing_tables")
    by_operation = {(f.operation.split(" ")[0], f.rule) for f in findings}
    assert by_operation >= {
        ("AddField", "volatile-default"),
        ("AddIndex", "index"),
        ("AddConstraint", "validated-constraint"),
        ("AddField", "foreign-key"),
        ("AlterField", "type-change"),
        ("AlterField", "not-null"),
    }
    sql_rules = sorted(f.rule for f in findings if f.operation.startswith("RunSQL"))
    assert sql_rules == ["foreign-key", "index", "not-null", "type-change", "volatile-default"]
    assert all("content.unsafe_on_existing_tables" in str(f) for f in findings)


def test_the_expand_and_contract_forms_pass():
    assert fixture_findings("safe_expand_steps") == []


@pytest.mark.live
def test_the_projects_migrations_pass_and_the_command_says_why_when_not():
    result = subprocess.run([sys.executable, "-m", "apps.fleet.migration_safety"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
