"""Every email the platform sends, end to end, and no secret where operators look.

Real processes: gunicorn serving the test databases, a Celery worker
(emails and exports queues) on a private redis-server whose every command is
recorded (MONITOR), and an SMTP server on loopback. Each email is caused the
way a person causes it (a form, an API call, a job that finishes or fails),
sent by the worker, parsed as it arrived (subject, text and HTML parts), and
its link is followed against gunicorn and does what it says.

Then the secrets those emails carried (invitation and reset tokens, signed
download links) are looked for in everything an operator can read: every
page of the operator admin (each registered model's list and change pages)
and of the console, the outbox and dead-letter tables, the worker's and the
web server's logs, the broker's messages, traces and metrics. None is there.
"""

from __future__ import annotations

import base64
import json
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.mailbox import Mail, on_port, sent
from tests.support import Gunicorn, committed_tenant
from tests.workers import CeleryWorker, RedisBroker, SmtpSink, celery_broker, wait_until

pytestmark = pytest.mark.live

SLUG = "mailbox"
OWNER, OWNER_PASSWORD = f"owner@{SLUG}.test", f"{SLUG}-pass"
ADMIN, ADMIN_PASSWORD = f"admin@{SLUG}.test", "admin-password-1"
STRANDED, STRANDED_PASSWORD = f"stranded@{SLUG}.test", "stranded-password-1"
INVITEE = f"invitee@{SLUG}.test"


class BrokerRecorder:
    """Every command the broker receives (Redis MONITOR), from every process."""

    def __init__(self, url: str):
        import redis

        self.client = redis.Redis.from_url(url)
        self.commands: list[str] = []
        self.ready = threading.Event()

    def start(self) -> BrokerRecorder:
        threading.Thread(target=self._run, name="broker-monitor", daemon=True).start()
        self.ready.wait(10)
        return self

    def _run(self) -> None:
        try:
            with self.client.monitor() as monitor:
                self.ready.set()
                for command in monitor.listen():
                    self.commands.append(command["command"])
        except Exception:  # the server was stopped
            self.ready.set()

    def messages(self) -> list[dict]:
        """Task messages as sent: the envelope's headers and the decoded body."""
        found = []
        for command in self.commands:
            for body in re.findall(r'"body": "([A-Za-z0-9+/=]+)"', command):
                try:
                    decoded = base64.b64decode(body).decode()
                except ValueError:
                    continue
                found.append({"body": decoded,
                              "kwargsrepr": re.findall(r'"kwargsrepr": "([^"]*)"', command),
                              "raw": command})
        return found


class Site:
    """requests against gunicorn on 127.0.0.1 with a tenant's Host header (no resolver needed)."""

    def __init__(self, port: int):
        self.port = port
        self.session = requests.Session()

    def get(self, url: str, **kwargs):
        target, host = on_port(url, self.port)
        return self.session.get(target, headers=host, timeout=20, **kwargs)

    def post(self, url: str, data: dict, **kwargs):
        target, host = on_port(url, self.port)
        return self.session.post(target, headers=host, data=data, timeout=20, **kwargs)

    def form_post(self, url: str, data: dict):
        """GET the page (its CSRF cookie), then POST the form to the same URL."""
        page = self.get(url)
        assert page.status_code == 200, page.text[:500]
        token = self.session.cookies.get("csrftoken")
        return self.post(url, {**data, "csrfmiddlewaretoken": token}, allow_redirects=True)

    def login(self, base: str, email: str, password: str) -> None:
        answer = self.form_post(f"{base}/admin/login/?next=/admin/", {"username": email, "password": password,
                                                                        "next": "/admin/"})
        assert urlsplit(answer.url).path == "/admin/", answer.text[:500]


@dataclass
class Platform:
    tenant: object
    server: Gunicorn
    worker: CeleryWorker
    sink: SmtpSink
    broker: BrokerRecorder
    span_file: str
    secrets: dict[str, str] = field(default_factory=dict)  # what -> a token or a link seen in an email

    @property
    def base(self) -> str:
        return f"http://{SLUG}.localhost:{self.server.port}"

    def site(self) -> Site:
        return Site(self.server.port)

    def api(self, path: str, body=None, *, token: str, method: str = "post"):
        target, host = on_port(f"{self.base}/api/v1/{path}", self.server.port)
        return getattr(requests, method)(target, json=body, timeout=20,
                                         headers={**host, "Authorization": f"Bearer {token}"})

    def wait_for_mail(self, subject: str, to: str, timeout: float = 60) -> Mail:
        def arrived():
            return [m for m in sent(self.sink.messages, subject) if to in m.to]

        found = wait_until(arrived, timeout, interval=0.2, message=f"the email {subject!r} to {to}")
        return found[-1]

    def keep(self, what: str, mail: Mail, url: str) -> None:
        """Remember the link and its token, to look for them later where operators look."""
        self.secrets[f"{what} link"] = url
        token = parse_qs(urlsplit(url).query).get("token")
        if token:
            self.secrets[f"{what} token"] = token[0]


def _auth_token(platform, email: str, password: str) -> int:
    """The status of the API's token exchange for this email and password."""
    target, host = on_port(f"{platform.base}/api/v1/auth/token", platform.server.port)
    return requests.post(target, headers=host, json={"email": email, "password": password}, timeout=20).status_code


def _user_token(tenant, email: str) -> str:
    from apps.accounts.models import User
    from apps.accounts.tokens import issue_user_token

    return issue_user_token(user_id=User.objects.get(email=email).pk, tenant_id=tenant.pk)


@pytest.fixture(scope="module")
def platform(tenants, django_db_blocker):
    from apps.accounts.models import User
    from apps.accounts.services import membership_grant
    from apps.billing.models import Plan
    from apps.tenancy.models import Tenant

    sink = SmtpSink().start()
    broker_server = RedisBroker().start()
    recorder = BrokerRecorder(broker_server.url).start()
    span_file = tempfile.NamedTemporaryFile(prefix="mail-spans-", suffix=".jsonl", delete=False).name
    media = tempfile.mkdtemp(prefix="mail-media-")
    env = {"EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(sink.port), "EMAIL_MAX_RETRIES": "0",
           "BREAKER_NAMESPACE": f"mail-live-{sink.port}", "MEDIA_ROOT": media, "TRACING_SPAN_FILE": span_file,
           "LOG_LEVEL": "INFO"}
    with django_db_blocker.unblock(), committed_tenant(SLUG) as tenant, celery_broker(broker_server.url):
        # A plan of its own: 4 documents of 5 cross the 80% warning.
        free = Plan.objects.get(code="free")
        values = {f.name: getattr(free, f.name) for f in Plan._meta.concrete_fields if f.name not in ("id", "code")}
        top = Plan.objects.order_by("-rank").first().rank
        plan = Plan.objects.create(**{**values, "code": "mail-test", "name": "Mail test", "max_documents": 5,
                                      "rank": top + 100})
        Tenant.objects.filter(pk=tenant.pk).update(plan=plan)
        for email, password in ((ADMIN, ADMIN_PASSWORD), (STRANDED, STRANDED_PASSWORD)):
            membership_grant(user=User.objects.create_user(email=email, password=password), tenant_id=tenant.pk,
                             role="admin")
        server = Gunicorn(workers=1, env=env)
        server.env["TENANT_BASE_URL"] = f"http://{{host}}:{server.port}"  # the links people follow
        worker = CeleryWorker(broker_url=broker_server.url, queues="emails,exports", name="mail",
                              env={**env, "TENANT_BASE_URL": server.env["TENANT_BASE_URL"]}).start()
        try:
            with server:
                yield Platform(tenant=tenant, server=server, worker=worker, sink=sink, broker=recorder,
                               span_file=span_file)
        finally:
            worker.stop()
            sink.stop()
            broker_server.stop()
            User.objects.filter(email__endswith=f"@{SLUG}.test").exclude(email=OWNER).delete()
            Tenant.objects.filter(pk=tenant.pk).update(plan=free)
            plan.delete()


# --- each email, end to end ------------------------------------------------------

COVERED = set()


def covers(template: str):
    COVERED.add(template)
    return template


def test_invitation_email_arrives_and_its_link_makes_the_account(platform):
    covers("invitation")
    made = platform.api("invitations", {"email": INVITEE, "role": "admin"}, token=_user_token(platform.tenant, OWNER))
    assert made.status_code == 201, made.text
    mail = platform.wait_for_mail(f"You are invited to {platform.tenant.name}", INVITEE)
    assert mail.text and mail.html and "as admin" in mail.text
    url = mail.link("/invitations/accept?token=")
    assert url in mail.html_links and made.json()["token"] in url
    platform.keep("invitation", mail, url)

    site = platform.site()
    form = site.get(url)
    assert form.status_code == 200 and "is invited to join" in form.text and "as an admin" in form.text
    done = site.form_post(url, {"token": parse_qs(urlsplit(url).query)["token"][0], "password": "invitee-pass-1",
                                "password_again": "invitee-pass-1"})
    assert done.status_code == 200 and f"You are now an admin of {platform.tenant.name}." in done.text
    assert done.history and done.history[0].status_code == 302  # post/redirect/get
    # The new account works, and the link now says it was used, without a form.
    assert _auth_token(platform, INVITEE, "invitee-pass-1") == 201
    used = site.get(url)
    assert used.status_code == 410 and "already accepted" in used.text and "<form" not in used.text


def test_password_reset_email_arrives_and_its_link_sets_the_password(platform):
    covers("password_reset")
    site = platform.site()
    asked = site.form_post(f"{platform.base}/password/reset", {"email": ADMIN})
    assert asked.status_code == 200 and "Check your email" in asked.text
    mail = platform.wait_for_mail(f"Reset your password at {platform.tenant.name}", ADMIN)
    url = mail.link("/password/reset/confirm?")
    assert url in mail.html_links and mail.text and mail.html
    platform.keep("reset", mail, url)
    done = site.form_post(url, {**{k: v[0] for k, v in parse_qs(urlsplit(url).query).items()},
                                "password": "admin-new-pass-1", "password_again": "admin-new-pass-1"})
    assert done.status_code == 200 and "Password changed" in done.text
    assert _auth_token(platform, ADMIN, "admin-new-pass-1") == 201
    assert _auth_token(platform, ADMIN, ADMIN_PASSWORD) == 403
    again = site.get(url)
    assert again.status_code == 410 and "no longer works" in again.text and "<form" not in again.text


def test_export_ready_email_arrives_and_its_link_downloads_the_file(platform):
    covers("report_ready")
    owner = _user_token(platform.tenant, OWNER)
    assert platform.api("documents", {"title": "exported one"}, token=owner).status_code == 201
    made = platform.api("exports", {"kind": "documents", "format": "csv"}, token=owner)
    assert made.status_code == 202, made.text
    mail = platform.wait_for_mail("Your documents export is ready", OWNER, timeout=90)
    url = mail.link(f"/api/v1/exports/{made.json()['id']}/download?token=")
    assert url in mail.html_links and "(CSV, 1 rows)" in mail.text
    platform.keep("download", mail, url)
    download = platform.site().get(url)
    assert download.status_code == 200 and "exported one" in download.text
    assert download.text.splitlines()[0].startswith("id,title,status")


def test_export_failed_email_arrives_and_its_link_opens_the_exports_page(platform, django_db_blocker):
    covers("export_failed")
    from apps.accounts.models import User
    from apps.reports.services import export_request
    from apps.tenancy.activation import tenant_activated

    with django_db_blocker.unblock(), tenant_activated(platform.tenant):
        # A filter the database refuses: the job fails for good.
        export_request(kind="events", format="csv", filters={"since": "not a time"},
                       requested_by_id=User.objects.get(email=OWNER).pk)
    mail = platform.wait_for_mail("Your events export of", OWNER, timeout=90)
    assert "failed" in mail.subject and mail.text and mail.html
    url = mail.link("/admin/exports/")
    assert url in mail.html_links
    site = platform.site()
    site.login(platform.base, OWNER, OWNER_PASSWORD)
    page = site.get(url)
    assert page.status_code == 200 and "failed" in page.text


def test_quota_warning_email_arrives_and_its_link_opens_the_usage_page(platform, django_db_blocker):
    covers("quota_warning")
    from apps.content.models import Document
    from apps.tenancy.activation import tenant_activated

    with django_db_blocker.unblock(), tenant_activated(platform.tenant):
        count = Document.objects.count()
    assert count < 4
    owner = _user_token(platform.tenant, OWNER)
    answer = platform.api("documents/bulk", {"documents": [{"title": f"q{n}"} for n in range(4 - count)]},
                          token=owner)
    assert answer.status_code in (200, 201), answer.text
    mail = platform.wait_for_mail(f"{platform.tenant.name} has used 80% of its documents quota", OWNER)
    assert "4 of 5 documents" in mail.text and mail.html
    url = mail.link("/admin/usage/")
    site = platform.site()
    site.login(platform.base, OWNER, OWNER_PASSWORD)
    page = site.get(url)
    assert page.status_code == 200 and "Usage" in page.text


def test_webhook_endpoint_disabled_email_arrives_and_its_link_opens_the_webhooks_page(platform, django_db_blocker):
    covers("webhook_endpoint_disabled")
    import datetime as dt

    from django.utils import timezone

    from apps.content.services import document_create
    from apps.tenancy.activation import tenant_activated
    from apps.webhooks import delivery
    from apps.webhooks.models import Endpoint
    from apps.webhooks.services import endpoint_create, endpoint_delete
    from tests.support import free_port

    with django_db_blocker.unblock(), tenant_activated(platform.tenant):
        # Failing for four days (nothing listens on its port), then one more failure.
        endpoint = endpoint_create(url=f"http://127.0.0.1:{free_port()}/gone", event_types=["*"]).endpoint
        Endpoint.objects.filter(pk=endpoint.pk).update(failing_since=timezone.now() - dt.timedelta(days=4))
        document_create(title="Nobody listens")
        delivery.run(budget=5)
    try:
        mail = platform.wait_for_mail(f"{platform.tenant.name}: webhook endpoint {endpoint.pk} was disabled", OWNER)
        assert "4 days" in mail.text and "127.0.0.1" in mail.text and "/gone" not in mail.text and mail.html
        url = mail.link("/admin/webhooks/")
        site = platform.site()
        site.login(platform.base, OWNER, OWNER_PASSWORD)
        page = site.get(url)
        assert page.status_code == 200 and "failing too long" in page.text
    finally:
        with django_db_blocker.unblock(), tenant_activated(platform.tenant):
            endpoint_delete(endpoint=Endpoint.objects.get(pk=endpoint.pk))


def test_every_email_of_the_registry_has_its_end_to_end_test():
    from apps.notifications.emails import EMAILS

    assert COVERED == set(EMAILS), f"emails without an end-to-end test: {sorted(set(EMAILS) - COVERED)}"


# --- a dead letter, an operator, a replay -------------------------------------------


def _operator(django_db_blocker):
    from django.test import Client

    from apps.accounts.models import User

    with django_db_blocker.unblock():
        operator = User.objects.filter(email="ops@mail.test").first() or User.objects.create_superuser(
            email="ops@mail.test", password="ops-pass-123")
    client = Client(HTTP_HOST="localhost")
    client.force_login(operator)
    return client


def test_a_dead_lettered_reset_email_gives_an_operator_nothing_to_use_and_its_replay_works(
        platform, django_db_blocker):
    """The operator-takeover path: with no support grant, an operator reads
    the dead letter and the outbox pages for a member's reset link, and
    tries what is there. Nothing opens; the replayed email's link works."""
    from apps.accounts.models import PasswordReset, User
    from apps.jobs.models import DeadLetter

    platform.sink.stop()  # the provider is down: the reset email fails for good (no retries here)
    site = platform.site()
    assert site.form_post(f"{platform.base}/password/reset", {"email": STRANDED}).status_code == 200
    with django_db_blocker.unblock():
        letter = wait_until(lambda: DeadLetter.objects.filter(task_name="notifications.send_email",
                                                              kwargs__to=[STRANDED]).first(),
                            60, message="the reset email's dead letter")
        reset = PasswordReset.objects.filter(user__email=STRANDED).latest("created_at")
    assert letter.kwargs["refs"] == {"password_reset_id": reset.pk}

    operator = _operator(django_db_blocker)
    with django_db_blocker.unblock():
        pages = "".join(operator.get(path).content.decode() for path in (
            f"/admin/jobs/deadletter/{letter.pk}/change/", "/admin/jobs/deadletter/",
            "/admin/jobs/outboxmessage/", "/admin/console/dead-letters/?status=all"))
    assert "/password/reset/confirm" not in pages and "token=" not in pages
    # What an operator could try: the reset's id with anything from the pages.
    candidates = set(re.findall(r"[A-Za-z0-9]{6,}-[0-9a-f]{20,}", pages)) | {"", "x", letter.task_id}
    for candidate in candidates:
        answer = site.post(f"{platform.base}/password/reset/confirm",
                           {"reset": reset.pk, "token": candidate, "password": "taken-over-1",
                            "password_again": "taken-over-1"})
        assert answer.status_code in (403, 410)
    assert _auth_token(platform, STRANDED, "taken-over-1") == 403

    platform.sink.start()  # fixed; the operator replays it from the console, with a reason
    with django_db_blocker.unblock():
        replayed = operator.post("/admin/console/dead-letters/confirm/", {
            "operation": "replay", "ids": str(letter.pk), "reason": "SMTP was down", "_confirm": "1"})
        assert replayed.status_code == 302
    mail = platform.wait_for_mail(f"Reset your password at {platform.tenant.name}", STRANDED)
    url = mail.link("/password/reset/confirm?")
    platform.keep("replayed reset", mail, url)
    assert parse_qs(urlsplit(url).query)["reset"] == [str(reset.pk)]
    with django_db_blocker.unblock():
        assert User.objects.get(email=STRANDED).check_password(STRANDED_PASSWORD)  # nothing changed it


# --- the same reset in a browser --------------------------------------------------------


def test_a_member_resets_a_forgotten_password_in_a_browser(platform, page):
    """Chromium: ask for the link, open it from the email, set a password,
    sign in to the tenant admin with it; the used link says so."""
    from django.core.cache import cache

    def resets():
        return [m for m in sent(platform.sink.messages, "Reset your password") if ADMIN in m.to]

    cache.delete_pattern("accounts:password-reset:*")  # one email per account every few minutes
    before = len(resets())
    page.goto(f"{platform.base}/password/reset")
    page.fill("input[name=email]", ADMIN)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert "Check your email" in page.inner_text("main")
    assert page.url.endswith("/password/reset?sent")
    mail = wait_until(lambda: resets()[before:], 60, interval=0.2, message="the reset email")[-1]
    url = mail.link("/password/reset/confirm?")
    platform.keep("browser reset", mail, url)
    page.goto(url)
    page.fill("input[name=password]", "from-the-browser-1")
    page.fill("input[name=password_again]", "from-the-browser-1")
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert "Password changed" in page.inner_text("main")
    page.reload()  # post/redirect/get: a reload sends nothing again
    assert "Password changed" in page.inner_text("main")
    page.goto(url)
    assert "This link no longer works" in page.inner_text("main") and page.locator("form").count() == 0

    from tests.browser import login

    login(page, platform.base, ADMIN, "from-the-browser-1")
    assert f"{platform.tenant.name} administration" in page.inner_text("#header")
    page.goto(f"{platform.base}/admin/audit-log/?object_type=user")
    assert "reset with an emailed link" in page.inner_text("#audit-entries")


# --- nothing secret where operators look ---------------------------------------------


def _operator_pages(client) -> dict[str, str]:
    """Every page of the operator admin (each registered model's list and
    change pages, newest 100 objects) and of the console."""
    from functools import partial

    from django.conf import settings
    from django.contrib import admin
    from django.urls import reverse

    from apps.backoffice.models import OperatorAction
    from apps.jobs.models import DeadLetter
    from apps.tenancy.models import Move, Shard

    reverse = partial(reverse, urlconf=settings.PUBLIC_SCHEMA_URLCONF)  # the operators' host
    paths = ["/admin/"]
    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        paths.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
        for pk in model_admin.get_queryset(_Request()).order_by("-pk").values_list("pk", flat=True)[:100]:
            paths.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[pk]))
    paths += [reverse("console:overview"), reverse("console:tenants"), reverse("console:tenant", args=[SLUG]),
              reverse("console:dead_letters") + "?status=all", reverse("console:actions")]
    dead = ",".join(str(pk) for pk in DeadLetter.objects.filter(status="dead").values_list("pk", flat=True))
    if dead:
        paths.append(reverse("console:dead_letter_confirm") + f"?operation=replay&ids={dead}")
    paths += [reverse("console:action", args=[pk]) for pk in OperatorAction.objects.values_list("pk", flat=True)[:100]]
    paths += [reverse("console:shard", args=[name]) for name in Shard.objects.values_list("name", flat=True)]
    paths += [reverse("console:move", args=[pk]) for pk in Move.objects.values_list("pk", flat=True)[:20]]
    pages = {}
    for path in paths:
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code)
        pages[path] = response.content.decode(errors="replace")
    return pages


class _Request:
    """Enough of a request for ModelAdmin.get_queryset."""

    class user:  # noqa: N801
        is_superuser = is_staff = is_active = is_authenticated = True


def test_no_token_or_link_is_anywhere_operators_look(platform, django_db_blocker):
    import html

    from apps.accounts.models import Invitation, PasswordReset
    from apps.jobs.models import DeadLetter, Effect, OutboxMessage
    from apps.outbox.models import TenantOutboxMessage
    from apps.tenancy.activation import tenant_activated
    from tests.span_file import read_spans

    secrets = {what: value for what, value in platform.secrets.items() if len(value) >= 16}
    assert {"invitation token", "reset token", "download token"} <= set(secrets), sorted(secrets)
    time.sleep(1)  # the last task's log lines and spans

    places: dict[str, str] = {}
    with django_db_blocker.unblock():
        for path, content in _operator_pages(_operator(django_db_blocker)).items():
            places[f"operator page {path}"] = html.unescape(content)
        rows = [*OutboxMessage.objects.values(), *DeadLetter.objects.values(), *Effect.objects.values(),
                *Invitation.objects.values(), *PasswordReset.objects.values()]
        with tenant_activated(platform.tenant):
            rows += list(TenantOutboxMessage.objects.values())
        places["outbox, dead letter, effect, invitation and reset rows"] = json.dumps(rows, default=str)
    places["worker log"] = platform.worker.log_text()
    places["web server log"] = platform.server.log_text()
    messages = platform.broker.messages()
    places["broker commands"] = "\n".join(platform.broker.commands)
    places["broker message bodies"] = "\n".join(m["body"] for m in messages)
    places["traces"] = json.dumps(read_spans(platform.span_file))
    places["metrics"] = requests.get(platform.server.ops_url + "/metrics", timeout=20).text

    # The places hold what they should (a scan of empty text proves nothing).
    assert any('"invitation_id"' in m["body"] for m in messages)
    assert any('"password_reset_id"' in m["body"] for m in messages)
    assert "notifications.send_email" in places["worker log"] and "succeeded" in places["worker log"]
    assert any("/admin/jobs/deadletter/" in path for path in places)
    # What worker logs, events, `celery inspect` and Flower show: names only.
    for message in messages:
        for shown in message["kwargsrepr"]:
            assert re.fullmatch(r"\{('\w+': \.\.\.(, )?)*\}", shown), shown

    found = [(what, where, text[max(0, text.index(value) - 300):text.index(value) + 100])
             for what, value in secrets.items() for where, text in places.items() if value in text]
    assert found == [], "\n\n".join(f"{what} in {where}: ...{context}..." for what, where, context in found)


