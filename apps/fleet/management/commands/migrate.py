"""`manage.py migrate`: the control plane, then every tenant schema on every shard.

Safe under live traffic: each tenant schema migrates in one transaction whose
DDL waits at most --lock-timeout for its locks, retried with backoff
(apps/fleet/migrations_runner.py); progress is printed per schema and
recorded on a MigrationRun row; a killed run is resumed by running it again.
"""

import os

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.core.management.commands.migrate import Command as DjangoMigrate

from apps.fleet.migrations_runner import LockPolicy, migrate_tenant_schemas
from apps.tenancy import planes
from apps.tenancy.services import shard_register_configured


class Command(BaseCommand):
    help = (
        "Migrate the control plane (public schema of `default`) and every tenant schema on every "
        "shard, shards in parallel. Re-running resumes with the schemas still behind."
    )

    # Django's system check compares this with makemigrations' autodetector.
    autodetector = DjangoMigrate.autodetector

    def add_arguments(self, parser):
        parser.add_argument("--database", default="default", help="`default` (everything) or one shard alias")
        parser.add_argument("--shard", help="only this shard's tenant schemas (a shard name)")
        parser.add_argument("--schema", help="only this tenant schema")
        parser.add_argument("--control-only", action="store_true", help="only the control plane")
        parser.add_argument("--tenants-only", action="store_true", help="only tenant schemas")
        parser.add_argument(
            "--lock-timeout", default=os.environ.get("MIGRATE_LOCK_TIMEOUT", "2"),
            help="seconds a tenant schema's DDL may wait for a lock before its transaction rolls back and is "
                 "retried (default 2, or MIGRATE_LOCK_TIMEOUT; 0 waits without bound)",
        )
        parser.add_argument(
            "--lock-retries", default=os.environ.get("MIGRATE_LOCK_RETRIES", "8"),
            help="retries per schema after a lock timeout or deadlock, with exponential backoff (default 8)",
        )
        parser.add_argument("--noinput", "--no-input", action="store_false", dest="interactive")
        parser.add_argument("--run-syncdb", action="store_true", help="accepted for Django's test runner")

    @staticmethod
    def lock_policy(timeout: str, retries: str) -> LockPolicy:
        try:
            policy = LockPolicy(lock_timeout=float(timeout), retries=int(retries))
        except (TypeError, ValueError):
            policy = None
        if policy is None or policy.lock_timeout < 0 or policy.retries < 0:
            raise CommandError(
                f"--lock-timeout (seconds) and --lock-retries (a count) must be numbers, 0 or more; "
                f"got {timeout!r} and {retries!r} (also read from MIGRATE_LOCK_TIMEOUT / MIGRATE_LOCK_RETRIES)."
            )
        return policy

    def handle(self, *args, **options):
        database, verbosity = options["database"], options["verbosity"]
        policy = self.lock_policy(options["lock_timeout"], options["lock_retries"])
        if database != "default" and not planes.is_shard_alias(database):
            raise CommandError(f"Unknown database '{database}': use 'default' or one of {planes.shard_aliases()}.")
        if database == "default" and not options["tenants_only"]:
            if verbosity:
                self.stdout.write("Control plane:")
            call_command(
                DjangoMigrate(), database="default", interactive=False, verbosity=verbosity,
                run_syncdb=options["run_syncdb"], skip_checks=True, stdout=self.stdout, stderr=self.stderr,
            )
            shard_register_configured()
        if options["control_only"]:
            return
        aliases = planes.shard_aliases() if database == "default" else [database]
        if options["shard"]:
            alias = planes.shard_alias_for_name(options["shard"])
            if alias not in aliases:
                raise CommandError(f"Unknown shard '{options['shard']}'.")
            aliases = [alias]
        report = self.stdout.write if verbosity else (lambda line: None)
        result = migrate_tenant_schemas(aliases, only_schema=options["schema"], report=report, policy=policy)
        up_to_date, migrated, failed = result.totals()
        summary = (
            f"Tenant schemas: {up_to_date} up to date, {migrated} migrated, {failed} failed "
            f"on {len(aliases)} shard(s) in {result.seconds:.2f}s, "
            f"{sum(r.retries for r in result.shards)} lock retries"
            + (f" (run {result.run_id})" if result.run_id else "")
        )
        if failed:
            for name, error in result.failed.items():
                self.stderr.write(f"  {name}: {error}")
            raise CommandError(summary + ". Re-run to resume with the failed schemas.")
        if verbosity:
            self.stdout.write(self.style.SUCCESS(summary))
