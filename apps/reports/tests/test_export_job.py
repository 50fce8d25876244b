"""The export job: streamed files, progress, signed downloads, the ready email."""

from __future__ import annotations

import csv
import io

import pytest

pytestmark = pytest.mark.django_db


@pytest.fixture
def run_jobs(django_capture_on_commit_callbacks, outbox_inline, tmp_path, settings, smtp_sink):
    settings.MEDIA_ROOT = str(tmp_path)

    def run(action, using="shard_main"):
        with django_capture_on_commit_callbacks(execute=True, using=using):
            return action()

    run.sink = smtp_sink
    return run


def test_csv_export_end_to_end(api, alpha, gamma, run_jobs):
    api(gamma, role="member").post("documents", {"title": "gamma's own"})  # same shard, other schema
    client = api(alpha, role="member")
    client.post("documents/bulk", {"documents": [{"title": f"doc {i}", "tags": ["t"]} for i in range(30)]})
    created = run_jobs(lambda: client.post("exports", {"kind": "documents", "format": "csv"}))
    assert created.status_code == 202
    status = client.get(created["Location"].removeprefix("/api/v1/")).json()
    assert status["status"] == "done" and status["rows_done"] == status["rows_total"] == 30
    download = client.client.get(status["download_url"], HTTP_AUTHORIZATION="")
    assert download.status_code == 200
    rows = list(csv.reader(io.StringIO(b"".join(download.streaming_content).decode())))
    assert rows[0][:2] == ["id", "title"] and len(rows) == 31
    assert {row[1] for row in rows[1:]} == {f"doc {i}" for i in range(30)}
    email = run_jobs.sink.messages[0]
    assert email["to"] == [client.principal.email] and "export is ready" in email["data"]
    assert "text/html" in email["data"] and "/download?token=" in email["data"]


def test_xlsx_export_and_event_filters(api, alpha, run_jobs):
    from django.utils import timezone

    client = api(alpha, role="member")
    now = timezone.now().isoformat()
    client.post("events", {"events": [{"type": "a", "timestamp": now}] * 3 + [{"type": "b", "timestamp": now}]})
    created = run_jobs(lambda: client.post("exports", {"kind": "events", "format": "xlsx", "filters": {"type": "a"}}))
    status = client.get(created["Location"].removeprefix("/api/v1/")).json()
    assert status["status"] == "done" and status["rows_done"] == 3
    content = b"".join(client.client.get(status["download_url"]).streaming_content)
    assert content[:2] == b"PK"  # an xlsx is a zip


def test_an_export_filters_documents_as_the_list_does(api, alpha, run_jobs):
    """A tag filter matches as the document list's does: tags are stored
    lower-cased, so `Finance` and `finance` find the same documents."""
    client = api(alpha, role="member")
    client.post("documents/bulk", {"documents": [{"title": "ledger", "tags": ["Finance"]},
                                                 {"title": "memo", "tags": ["ops"]}]})
    listed = client.get("documents?tag=Finance").json()["results"]
    assert [doc["title"] for doc in listed] == ["ledger"]
    created = run_jobs(lambda: client.post("exports", {"kind": "documents", "format": "csv",
                                                       "filters": {"tag": "Finance"}}))
    status = client.get(created["Location"].removeprefix("/api/v1/")).json()
    assert status["status"] == "done" and status["rows_total"] == 1
    rows = list(csv.reader(io.StringIO(b"".join(client.client.get(status["download_url"]).streaming_content).decode())))
    assert [row[1] for row in rows[1:]] == ["ledger"]


def test_download_links_are_signed_per_tenant_and_expire(api, alpha, gamma, run_jobs, settings):
    from conftest import ApiClient

    client = api(alpha, role="member")
    created = run_jobs(lambda: client.post("exports", {"kind": "documents"}))
    url = client.get(created["Location"].removeprefix("/api/v1/")).json()["download_url"]
    anonymous = ApiClient(alpha, None).client
    assert anonymous.get(url).status_code == 200
    assert anonymous.get(url.replace("token=", "token=x")).status_code == 404
    assert ApiClient(gamma, None).client.get(url).status_code == 404  # another tenant's host
    settings.EXPORT_DOWNLOAD_SECONDS = -1
    assert anonymous.get(url).status_code == 404


def test_a_finished_export_is_not_redone(api, alpha, run_jobs):
    from apps.reports.tasks import run_export
    from apps.tenancy.activation import tenant_activated

    client = api(alpha, role="member")
    export_id = run_jobs(lambda: client.post("exports", {"kind": "documents"})).json()["id"]
    with tenant_activated(alpha):
        assert run_export.apply(args=[export_id], headers={"tenant_id": alpha.pk}).get() == "already done"


def test_an_export_whose_task_gives_up_says_failed(api, alpha, settings, tmp_path):
    """A dead-lettered export shows failed with the error, not running forever."""
    from apps.jobs.models import DeadLetter
    from apps.reports.tasks import run_export

    not_a_directory = tmp_path / "media-is-a-file"
    not_a_directory.write_text("")
    settings.MEDIA_ROOT = str(not_a_directory)  # the file cannot be stored: retrying cannot help
    client = api(alpha, role="member")
    export_id = client.post("exports", {"kind": "documents"}).json()["id"]
    # As a worker runs it (failures handled, not raised).
    run_export.apply(args=[export_id], headers={"tenant_id": alpha.pk, "tenant_slug": alpha.slug})
    status = client.get(f"exports/{export_id}").json()
    assert status["status"] == status["status_label"] == "failed" and status["attempts"] == 1
    assert status["error"].startswith("NotADirectoryError") and status["download_url"] is None
    assert DeadLetter.objects.filter(task_name="reports.run_export", args=[export_id]).exists()
