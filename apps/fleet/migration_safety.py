"""Flag migrations that would hold long locks on large tables.

    python -m apps.fleet.migration_safety              (run by `bin/dev lint`)

A tenant migration runs on every tenant schema while the platform serves
traffic. An operation that rewrites or scans a big table under an ACCESS
EXCLUSIVE (or SHARE) lock blocks that tenant's requests for as long as it
takes; the per-schema lock_timeout only bounds the wait *for* the lock, not
the time it is held. These are the operations the check refuses on a table
that existed before the migration (tables created in the same migration are
empty, so anything goes):

- adding a column with a volatile default (rewrites every row);
- an index built without CONCURRENTLY (blocks writes while it builds), which
  includes unique constraints, `db_index`/`unique` fields and foreign keys;
- a CHECK or FOREIGN KEY constraint validated in the same step as it is
  added (scans the table under lock): add it NOT VALID, then VALIDATE;
- a column type change (rewrites the table, except widening a varchar);
- SET NOT NULL on an existing column (scans the table under lock).

The expand-and-contract way to do each is in
platform/runbooks/schema-changes.md. A reviewed exception is allowed with a
reason, either in ALLOWED below or as ``lock_review = "why"`` on the
Migration class.

Written here rather than taken from django-migration-linter: that tool judges
backward compatibility (it refuses column drops and renames, which expand and
contract needs) and knows neither ``db_default`` expressions nor which tables
a migration itself created; these five rules are the whole need.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

from django.db import models
from django.db.migrations import operations as ops
from django.db.models.expressions import Func

# Reviewed exceptions: "app_label.migration_name" -> why it is safe.
ALLOWED: dict[str, str] = {
    "tenancy.0002_plan_from_billing": "control-plane tenant registry: one row per tenant, validated in milliseconds",
    "tenancy.0003_remove_plan_code": "control-plane tenant registry: one row per tenant, validated in milliseconds",
}

VOLATILE_FUNCTIONS = ("random", "gen_random_uuid", "uuid_generate_v1", "uuid_generate_v4", "clock_timestamp",
                      "timeofday", "nextval", "txid_current")
VOLATILE = re.compile(r"\b(" + "|".join(VOLATILE_FUNCTIONS) + r")\s*\(", re.IGNORECASE)

RULES = {
    "volatile-default": "adding a column with a volatile default rewrites the whole table under an ACCESS EXCLUSIVE "
                        "lock: add it nullable, backfill in batches, then set the default",
    "index": "an index built without CONCURRENTLY blocks writes for the whole build: use AddIndexConcurrently "
             "(or CREATE INDEX CONCURRENTLY) in a migration with atomic = False",
    "validated-constraint": "a constraint validated as it is added scans the table under lock: add it NOT VALID "
                            "(AddConstraintNotValid), then ValidateConstraint in a later migration",
    "foreign-key": "a foreign key added in one step validates every row under lock (and indexes it): add the "
                   "column without db_constraint, then the constraint NOT VALID, then VALIDATE",
    "unique-constraint": "a unique constraint builds its index under lock: CREATE UNIQUE INDEX CONCURRENTLY, "
                         "then ADD CONSTRAINT ... UNIQUE USING INDEX",
    "type-change": "changing a column's type rewrites the table under an ACCESS EXCLUSIVE lock: add a new column, "
                   "backfill, switch reads, drop the old one",
    "not-null": "SET NOT NULL scans the table under an ACCESS EXCLUSIVE lock: add CHECK (col IS NOT NULL) NOT VALID, "
                "VALIDATE it, then SET NOT NULL (PostgreSQL uses the validated check and skips the scan)",
}


@dataclass(frozen=True)
class Finding:
    migration: str
    operation: str
    rule: str

    def __str__(self) -> str:
        return f"{self.migration}: {self.operation}: {RULES[self.rule]}"


def _flatten(operations) -> list:
    flat = []
    for operation in operations:
        if isinstance(operation, ops.SeparateDatabaseAndState):
            flat.extend(_flatten(operation.database_operations))
        else:
            flat.append(operation)
    return flat


def _sql_statements(operation: ops.RunSQL) -> list[str]:
    sql = operation.sql if isinstance(operation.sql, (list, tuple)) else [operation.sql]
    statements = []
    for item in sql:
        text = item[0] if isinstance(item, (list, tuple)) else item
        statements.extend(s.strip() for s in re.sub(r"--[^\n]*", "", str(text)).split(";") if s.strip())
    return statements


CREATED_TABLE = re.compile(r"\bCREATE\s+(?:UNLOGGED\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?([\w.\"]+)", re.I)
ALTERED_TABLE = re.compile(r"\bALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?([\w.\"]+)", re.I)
INDEXED_TABLE = re.compile(r"\bCREATE\s+(?:UNIQUE\s+)?INDEX\s+(?!CONCURRENTLY)(?:.*?)\bON\s+(?:ONLY\s+)?([\w.\"]+)",
                           re.I | re.S)
SQL_RULES = [
    ("volatile-default", re.compile(r"\bADD\s+COLUMN\b[^,]*\bDEFAULT\b[^,]*?\b(?:" + "|".join(VOLATILE_FUNCTIONS)
                                    + r")\s*\(", re.I | re.S)),
    ("validated-constraint", re.compile(r"\bADD\s+(?:CONSTRAINT\s+\S+\s+)?CHECK\b(?!.*\bNOT\s+VALID\b)", re.I | re.S)),
    ("foreign-key", re.compile(r"\bADD\s+(?:CONSTRAINT\s+\S+\s+)?FOREIGN\s+KEY\b(?!.*\bNOT\s+VALID\b)", re.I | re.S)),
    ("unique-constraint", re.compile(r"\bADD\s+(?:CONSTRAINT\s+\S+\s+)?(?:UNIQUE|PRIMARY\s+KEY)\b(?!.*\bUSING\s+INDEX\b)",
                                     re.I | re.S)),
    ("type-change", re.compile(r"\bALTER\s+(?:COLUMN\s+)?\S+\s+(?:SET\s+DATA\s+)?TYPE\b", re.I)),
    ("not-null", re.compile(r"\bALTER\s+(?:COLUMN\s+)?\S+\s+SET\s+NOT\s+NULL\b", re.I)),
]


def _table_name(raw: str) -> str:
    return raw.replace('"', "").split(".")[-1].lower()


def _check_sql(label: str, statement: str, new_tables: set[str]) -> list[Finding]:
    short = " ".join(statement.split())[:90]
    index = INDEXED_TABLE.search(statement)
    if index:
        return [] if _table_name(index.group(1)) in new_tables else [Finding(label, f"RunSQL {short!r}", "index")]
    altered = ALTERED_TABLE.search(statement)
    if not altered or _table_name(altered.group(1)) in new_tables:
        return []
    return [Finding(label, f"RunSQL {short!r}", rule) for rule, pattern in SQL_RULES if pattern.search(statement)]


def _is_volatile(expression) -> bool:
    if expression is models.NOT_PROVIDED or expression is None:
        return False
    if isinstance(expression, Func) and (getattr(expression, "function", "") or "").lower() in VOLATILE_FUNCTIONS:
        return True
    if type(expression).__name__ in ("RandomUUID", "Random"):
        return True
    return any(_is_volatile(source) for source in getattr(expression, "get_source_expressions", lambda: [])())


def _field_findings(label: str, where: str, field, *, old=None, connection=None) -> list[Finding]:
    rules = []
    if old is None and _is_volatile(getattr(field, "db_default", models.NOT_PROVIDED)):
        rules.append("volatile-default")
    if not field.primary_key:
        rules += _index_rules(field, old)
        if old is not None and connection is not None:
            rules += _alteration_rules(field, old, connection)
    return [Finding(label, where, rule) for rule in rules]


def _index_rules(field, old) -> list[str]:
    """Rules a field breaks by the index or foreign key it adds (``old``: what it was, if altered)."""
    rules = []
    is_fk = field.remote_field is not None and getattr(field, "db_constraint", False) and not field.many_to_many
    if is_fk and (old is None or not (old.remote_field is not None and getattr(old, "db_constraint", False))):
        rules.append("foreign-key")
    indexed = bool(field.unique or field.db_index) and not field.many_to_many
    was_indexed = old is not None and bool(old.unique or old.db_index)
    if indexed and not was_indexed and not is_fk:
        rules.append("index")
    return rules


def _alteration_rules(field, old, connection) -> list[str]:
    """Rules an altered field breaks by rewriting or scanning its table."""
    rules = []
    before, after = old.db_type(connection), field.db_type(connection)
    if before != after and not _safe_widening(before, after):
        rules.append("type-change")
    if old.null and not field.null:
        rules.append("not-null")
    return rules


def _safe_widening(before: str | None, after: str | None) -> bool:
    """varchar(n) -> varchar(m >= n) or -> text changes only the catalog."""
    match_before = re.fullmatch(r"varchar\((\d+)\)", before or "")
    if not match_before:
        return False
    if after == "text":
        return True
    match_after = re.fullmatch(r"varchar\((\d+)\)", after or "")
    return bool(match_after) and int(match_after.group(1)) >= int(match_before.group(1))


def check_migration(migration, state_before=None, connection=None) -> list[Finding]:
    """Findings for one Migration instance. ``state_before`` (a ProjectState, or a
    callable returning one) is needed only to judge AlterField."""
    label = f"{migration.app_label}.{migration.name}"
    if label in ALLOWED or getattr(migration, "lock_review", ""):
        return []
    operations = _flatten(migration.operations)
    new_models = {op.name_lower for op in operations if isinstance(op, ops.CreateModel)}
    new_tables = {_table_name(m.group(1)) for op in operations if isinstance(op, ops.RunSQL)
                  for statement in _sql_statements(op) for m in CREATED_TABLE.finditer(statement)}
    findings: list[Finding] = []
    for op in operations:
        if isinstance(op, ops.RunSQL):
            for statement in _sql_statements(op):
                findings += _check_sql(label, statement, new_tables)
            continue
        model = getattr(op, "model_name_lower", None) or getattr(op, "name_lower", None)
        if model in new_models:
            continue
        findings += _operation_findings(label, migration, op, state_before, connection)
    return findings


def _operation_findings(label: str, migration, op, state_before, connection) -> list[Finding]:
    """Findings for one operation (not RunSQL) on a table that existed before ``migration``."""
    where = f"{type(op).__name__} {op.describe()}"
    if isinstance(op, ops.AddField):
        return _field_findings(label, where, op.field)
    if isinstance(op, ops.AlterField):
        state = state_before() if callable(state_before) else state_before
        old = state.models[migration.app_label, op.model_name_lower].fields.get(op.name) if state else None
        return [] if old is None else _field_findings(label, where, op.field, old=old, connection=connection)
    rule = _operation_rule(op)
    return [Finding(label, where, rule)] if rule else []


def _operation_rule(op) -> str | None:
    """The rule an index or constraint operation breaks, if any."""
    if isinstance(op, ops.AddIndex) and type(op).__name__ != "AddIndexConcurrently":
        return "index"
    if isinstance(op, ops.AddConstraint) and type(op).__name__ != "AddConstraintNotValid":
        return "unique-constraint" if isinstance(op.constraint, models.UniqueConstraint) else "validated-constraint"
    if isinstance(op, (ops.AlterUniqueTogether, ops.AlterIndexTogether)) and op.option_value:
        return "index"
    return None


def check_project() -> list[Finding]:
    """Every migration of the project's own apps (apps.*), from disk."""
    from django.db import connections
    from django.db.migrations.loader import MigrationLoader

    loader = MigrationLoader(None, ignore_no_migrations=True)
    connection = connections["default"]  # for column types only; never connects
    findings = []
    for key, migration in sorted(loader.disk_migrations.items()):
        if not type(migration).__module__.startswith("apps."):
            continue
        findings += check_migration(migration, lambda key=key: loader.project_state(key, at_end=False), connection)
    return findings


def main() -> int:
    import os

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    django.setup()
    findings = check_project()
    for finding in findings:
        print(finding)
    if findings:
        print(f"{len(findings)} migration operation(s) would hold long locks on existing tables; see "
              "platform/runbooks/schema-changes.md, or allow a reviewed one in apps/fleet/migration_safety.py "
              "(ALLOWED) or with `lock_review = \"why\"` on the Migration.")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
