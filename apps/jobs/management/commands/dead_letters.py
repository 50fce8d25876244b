"""`manage.py dead_letters list|show|replay|purge`."""

import datetime as dt
import json

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from apps.jobs import services
from apps.jobs.models import DeadLetter
from apps.jobs.redaction import redact_text, redacted


class Command(BaseCommand):
    help = "Inspect and handle tasks that failed for good: list, show, replay, purge."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        for name in ("list", "replay", "purge"):
            p = sub.add_parser(name)
            p.add_argument("ids", nargs="*", type=int, help="dead letter ids")
            p.add_argument("--task", help="task name")
            p.add_argument("--tenant", help="tenant slug")
            p.add_argument("--all", action="store_true", help="every matching dead letter")
            if name == "list":
                p.add_argument("--status", choices=DeadLetter.Status.values, default=DeadLetter.Status.DEAD)
            if name == "purge":
                p.add_argument("--older-than-days", type=int, help="only those last failed before this")
        show = sub.add_parser("show")
        show.add_argument("id", type=int)

    def _selection(self, options, *, default_status=DeadLetter.Status.DEAD):
        letters = DeadLetter.objects.all()
        status = options.get("status") or default_status
        if status:
            letters = letters.filter(status=status)
        if options.get("ids"):
            letters = letters.filter(pk__in=options["ids"])
        if options.get("task"):
            letters = letters.filter(task_name=options["task"])
        if options.get("tenant"):
            letters = letters.filter(tenant_slug=options["tenant"])
        if options.get("older_than_days") is not None:
            letters = letters.filter(last_failed_at__lt=timezone.now() - dt.timedelta(days=options["older_than_days"]))
        return letters

    def handle(self, *args, **options):
        getattr(self, f"do_{options['action']}")(options)

    def do_list(self, options):
        letters = self._selection(options, default_status=options["status"])
        for letter in letters[:500]:
            self.stdout.write(f"{letter.pk:>6}  {letter.last_failed_at:%Y-%m-%d %H:%M:%S}  {letter.task_name:<28} "
                              f"{letter.tenant_slug or '-':<16} x{letter.attempts}  {redact_text(letter.exception)[:70]}")
        self.stdout.write(f"{letters.count()} dead letter(s) ({options['status']})")

    def do_show(self, options):
        letter = DeadLetter.objects.filter(pk=options["id"]).first()
        if letter is None:
            raise CommandError(f"No dead letter {options['id']}.")
        for field in ("task_name", "task_id", "queue", "tenant_slug", "tenant_id", "status", "attempts",
                      "first_failed_at", "last_failed_at", "replayed_at", "replay_task_id"):
            self.stdout.write(f"{field:<16} {getattr(letter, field)}")
        # Redacted like the admin's pages: a terminal is read (and pasted) as widely.
        self.stdout.write(f"{'args':<16} {json.dumps(redacted(letter.args))}")
        self.stdout.write(f"{'kwargs':<16} {json.dumps(redacted(letter.kwargs))}")
        self.stdout.write(f"{'headers':<16} {json.dumps(letter.headers)}")
        self.stdout.write(f"{'exception':<16} {redact_text(letter.exception)}")
        self.stdout.write(redact_text(letter.traceback))

    def _require_selection(self, options):
        if not (options["ids"] or options["all"] or options["task"] or options["tenant"]):
            raise CommandError("Name dead letter ids, or --task / --tenant, or --all.")

    def do_replay(self, options):
        self._require_selection(options)
        replayed, failed = 0, 0
        for letter in self._selection(options):
            try:
                task_id = services.dead_letter_replay(dead_letter=letter)
            except Exception as exc:
                failed += 1
                self.stderr.write(f"{letter.pk}: not replayed: {exc}")
                continue
            replayed += 1
            self.stdout.write(f"{letter.pk}: {letter.task_name} sent again as {task_id}")
        if failed:
            raise CommandError(f"{replayed} replayed, {failed} failed")
        self.stdout.write(self.style.SUCCESS(f"{replayed} replayed"))

    def do_purge(self, options):
        self._require_selection(options)
        deleted = services.dead_letters_purge(queryset=self._selection(options, default_status=None))
        self.stdout.write(self.style.SUCCESS(f"{deleted} dead letter(s) purged"))
