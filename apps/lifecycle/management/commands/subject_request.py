"""manage.py subject_request EMAIL (--export PATH | --erase --reason ...)"""

from __future__ import annotations

import getpass
import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand

from apps.lifecycle.subjects import subject_erase, subject_export
from apps.tenancy.cli import validation_error_to_command_error


class Command(BaseCommand):
    help = ("A person's request about their data across every tenant: --export writes all of it as JSON; "
            "--erase deletes their account, memberships and invitations and leaves a pseudonym in audit logs.")

    def add_arguments(self, parser):
        parser.add_argument("email")
        action = parser.add_mutually_exclusive_group(required=True)
        action.add_argument("--export", metavar="PATH", help="write the person's data to this JSON file")
        action.add_argument("--erase", action="store_true", help="erase the person across every tenant")
        parser.add_argument("--reason", default="", help="the request's reference (kept in the record)")

    def handle(self, *args, **options):
        who = f"command by {getpass.getuser()}"
        try:
            if options["export"]:
                data = subject_export(email=options["email"], requested_by=who, reason=options["reason"])
                with open(options["export"], "w") as out:
                    json.dump(data, out, indent=1, sort_keys=True)
                self.stdout.write(self.style.SUCCESS(
                    f"written to {options['export']}: {len(data['memberships'])} memberships, "
                    f"data in {len(data['tenants'])} tenants"))
                return
            record = subject_erase(email=options["email"], requested_by=who, reason=options["reason"])
        except ValidationError as exc:
            raise validation_error_to_command_error(exc) from exc
        self.stdout.write(self.style.SUCCESS(f"erased; now {record.subject} (record {record.pk}): {record.summary}"))
