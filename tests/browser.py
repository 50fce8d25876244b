"""Browser tests' plumbing: Debian's chromium driven by Playwright, and the
real platform processes (gunicorn, optionally a Celery worker) it talks to.

Its fixtures (``browser``, ``page``, ``live_platform``) are registered once
for the whole run by the root conftest (``pytest_plugins``): a session
fixture imported into two test modules would be two fixtures, and a second
Playwright instance cannot start inside the first one's event loop. Use::

    from tests.browser import login, running_platform

    def test_something(browser, live_platform):
        page = browser.new_page()
        login(page, live_platform.url, "ops@platform.test", "ops-pass")

No browser is ever downloaded: the tests use the distribution's chromium at
CHROMIUM_PATH (default /usr/bin/chromium) and are skipped, with the reason,
when it is missing (a failure under CI: tests/tools.py). ``*.localhost`` host names (the tenants' hosts) are mapped
to 127.0.0.1 inside the browser, so no /etc/hosts entry is needed.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support import ROOT, Gunicorn
from tests.tools import require

CHROMIUM_PATH = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
SCREENSHOT_DIR = ROOT / "docs" / "screenshots"
# A page action (click, fill, wait) that takes longer than this fails the
# test with Playwright's message instead of hanging it.
ACTION_TIMEOUT_MS = 15_000


def saving_screenshots() -> bool:
    """Screenshots for the docs are rewritten only on request (SAVE_SCREENSHOTS=1), never by CI."""
    return os.environ.get("SAVE_SCREENSHOTS", "") == "1"


def screenshot(page, name: str, **kwargs) -> Path | None:
    """Save ``page`` as docs/screenshots/<name>.png when SAVE_SCREENSHOTS=1."""
    if not saving_screenshots():
        return None
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / f"{name}.png"
    page.screenshot(path=str(path), **kwargs)
    return path


@pytest.fixture(scope="session")
def browser():
    """A headless chromium (Playwright sync API) for the whole session."""
    require(Path(CHROMIUM_PATH).exists(), f"no chromium at {CHROMIUM_PATH} (install Debian's `chromium` package; "
            "the tests never download a browser)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - playwright is in the dev requirements
        sync_playwright = None
    require(sync_playwright is not None, "playwright is not installed")
    # Playwright's sync API keeps an asyncio loop running on this thread, which
    # Django takes for an async context and then refuses ORM calls in the
    # tests; nothing here is async, so tell Django so for the session.
    saved = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            yield from _launch(playwright)
    finally:
        if saved is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = saved


def _launch(playwright):
    instance = playwright.chromium.launch(
        executable_path=CHROMIUM_PATH,
        headless=True,
        args=[
            # Tenants are <slug>.localhost: resolve every such name to the
            # loopback address gunicorn listens on (IPv4 only).
            "--host-resolver-rules=MAP localhost 127.0.0.1, MAP *.localhost 127.0.0.1",
            "--no-sandbox",  # containers without user namespaces
            "--disable-dev-shm-usage",
        ],
    )
    try:
        yield instance
    finally:
        # Database connections opened while Playwright's loop runs belong to
        # that loop's context: close them while it still runs, or they
        # outlive the session and the test databases cannot be dropped.
        from django.db import connections

        connections.close_all()
        instance.close()


@pytest.fixture
def page(browser):
    """A fresh browser context (no cookies) and page per test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    new_page = context.new_page()
    try:
        yield new_page
    finally:
        context.close()


def login(page, base_url: str, email: str, password: str) -> None:
    """Log in through an admin site's login form at ``base_url``/admin/login/
    (either the operator admin on ``localhost`` or a tenant admin on
    ``<slug>.localhost``); fails with the page's error message if refused."""
    response = page.goto(base_url.rstrip("/") + "/admin/login/?next=/admin/")
    if response is None or response.status != 200 or not page.locator("input[name=username]").count():
        status = response.status if response is not None else "no response"
        raise AssertionError(f"no login form at {base_url}/admin/login/ ({status}): {page.inner_text('body')[:500]}")
    page.fill("input[name=username]", email)
    page.fill("input[name=password]", password)
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_load_state()
    if "/admin/login/" in page.url:
        errors = page.locator(".errornote, .errorlist").all_inner_texts()
        raise AssertionError(f"login as {email} refused: {' '.join(errors) or page.url}")


@dataclass
class LivePlatform:
    """A running gunicorn (and maybe a Celery worker) on this run's test databases."""

    server: Gunicorn
    worker: object | None = None
    port: int = field(init=False)

    def __post_init__(self):
        self.port = self.server.port

    @property
    def url(self) -> str:
        """The operators' (public) host."""
        return f"http://localhost:{self.port}"

    def tenant_url(self, slug: str) -> str:
        return f"http://{slug}.localhost:{self.port}"

    def logs(self) -> str:
        text = self.server.log_text()[-4000:]
        if self.worker is not None:
            text += "\n--- worker ---\n" + self.worker.log_text()[-4000:]
        return text


@contextmanager
def running_platform(*, celery_queues: str | None = None, workers: int = 1, env: dict[str, str] | None = None):
    """gunicorn serving the test databases, plus a Celery worker consuming
    ``celery_queues`` (comma-separated) on this run's broker when given.

    The processes see only committed rows: make the data they need inside
    ``django_db_blocker.unblock()`` in a test without a ``django_db`` mark,
    and remove it after (``transactional_db`` would flush the session's
    committed tenants at the end of the test).
    """
    from django.conf import settings

    from tests.workers import CeleryWorker

    worker = None
    if celery_queues:
        worker = CeleryWorker(broker_url=settings.CELERY_BROKER_URL, queues=celery_queues, env=env,
                              name="browser", concurrency=1).start()
    try:
        with Gunicorn(workers=workers, env={"GUNICORN_THREADS": "4", **(env or {})}) as server:
            yield LivePlatform(server=server, worker=worker)
    finally:
        if worker is not None:
            worker.stop()


@pytest.fixture(scope="module")
def live_platform(tenants, django_db_blocker):
    """One gunicorn per test module (no worker), after the session's tenants
    (alpha, beta, gamma) and the platform's own host exist; see ``running_platform``."""
    with django_db_blocker.unblock(), running_platform() as platform:
        yield platform
