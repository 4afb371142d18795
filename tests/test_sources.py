"""Sources end to end over WSGI: upload real files of every format, a real worker
runtime processes them, search finds them, duplicates and re-runs add nothing."""
import datetime
import io
import os
import uuid

import pytest

from botlite.knowledge import index
from botlite.models import Chunk, Source
from conftest import wait_for

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "knowledge")


def multipart(filename, content, field="file"):
    boundary = "botlite-" + uuid.uuid4().hex
    body = (("--%s\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\n"
             "Content-Type: application/octet-stream\r\n\r\n") % (boundary, field, filename)
            ).encode() + content + ("\r\n--%s--\r\n" % boundary).encode()
    return body, {"Content-Type": "multipart/form-data; boundary=%s" % boundary}


def upload(client, filename, content, bot="default"):
    body, headers = multipart(filename, content)
    return client.request("POST", "/api/chatbots/%s/sources" % bot, body=body, headers=headers)


def wait_done(client, source_id, timeout=60):
    return wait_for(lambda: (lambda s: s if s["status"] in ("ready", "failed") else None)(
        client.get("/api/sources/" + source_id).json), timeout=timeout,
        message="source %s to finish" % source_id)


def search(app, bot, query):
    with app.database.connection_context():
        return index.search(bot, query, 5)


# --- real files -------------------------------------------------------------------

def _docx():
    import docx
    document = docx.Document()
    document.core_properties.title = "Widget Manual"
    document.add_heading("Installing the widget", level=1)
    document.add_paragraph("Unscrew the zebrafish bracket before mounting the widget.")
    table = document.add_table(rows=2, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "Part", "Torque"
    table.rows[1].cells[0].text, table.rows[1].cells[1].text = "Bracket", "12 Nm"
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def _xlsx():
    import openpyxl
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Prices"
    sheet.append(["Product", "Price"])
    sheet.append(["Quokka lamp", "49 EUR"])
    second = book.create_sheet("Stock")
    second.append(["Product", "Warehouse"])
    second.append(["Quokka lamp", "Rotterdam"])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


FILES = {
    "manual.docx": (_docx, "zebrafish bracket"),
    "prices.xlsx": (_xlsx, "quokka lamp Rotterdam"),
    "hours.csv": (lambda: b"day;opens;closes\nMonday;09:00;17:00\nSaturday;10:00;14:00\n",
                  "Saturday opens"),
    "notes.md": (lambda: b"# Returns policy\n\nItems may be returned within 30 days with the "
                 b"original receipt from the axolotl store.\n", "axolotl returns"),
    "readme.txt": (lambda: "Caf\u00e9 wifi password is printed on the narwhal poster."
                   .encode("cp1252"), "narwhal poster"),
    "page.html": (lambda: b"<html><head><title>Shipping</title></head><body><nav>Menu</nav>"
                  b"<main><h1>Shipping</h1><p>Parcels to Iceland take the pelican route and "
                  b"arrive in five days.</p></main><script>var x=1;</script></body></html>",
                  "pelican route Iceland"),
    "report.pdf": (lambda: open(os.path.join(FIXTURES, "report.pdf"), "rb").read(), None),
}


@pytest.mark.parametrize("filename", sorted(FILES))
def test_every_format_becomes_searchable_with_a_citation(client, app, worker, filename):
    make, phrase = FILES[filename]
    response = upload(client, filename, make())
    assert response.status == 202, response.body
    body = response.json
    assert body["status"] == "processing" and body["task_id"] and body["duplicate"] is False
    source = wait_done(client, body["source_id"])
    assert source["status"] == "ready", source["error"]
    assert source["chunk_count"] >= 1 and source["kind"] == "file"
    assert source["progress"] == {"done": 3, "total": 3}
    task = wait_for(lambda: (lambda t: t if t["status"] == "SUCCESS" else None)(
        client.get("/api/tasks/" + body["task_id"]).json), message="the task's SUCCESS")
    assert task["queue"] == "documents" and task["result"]["chunks"] == source["chunk_count"]
    if phrase is None:  # the PDF: search for words of its first page
        with app.database.connection_context():
            phrase = " ".join(Chunk.select().where(Chunk.source == source["id"])
                              .first().text.split()[3:8])
    hits = search(app, "default", phrase)
    assert hits and hits[0].source_id == source["id"]
    assert hits[0].title and 0 < hits[0].score <= 1


def test_ready_and_failed_sources_send_a_notification(client, app, worker):
    ok = upload(client, "notes.md", b"# Tea\n\nGreen tea steeps for two minutes.\n").json
    bad = upload(client, "locked.pdf", open(os.path.join(FIXTURES, "encrypted.pdf"), "rb").read()).json
    assert wait_done(client, ok["source_id"])["status"] == "ready"
    failed = wait_done(client, bad["source_id"])
    assert failed["status"] == "failed" and "password" in failed["error"].lower()
    task = wait_for(lambda: (lambda t: t if t["status"] == "FAILURE" else None)(
        client.get("/api/tasks/" + bad["task_id"]).json), message="the task's FAILURE")
    assert task["attempts"] == 1  # no pointless retries
    notes = wait_for(lambda: (lambda n: n if len(n) >= 2 else None)(
        client.get("/api/notifications?user_id=admin").json["notifications"]),
        message="two notifications")
    titles = sorted(n["title"] for n in notes)
    assert titles == ["Document failed", "Document ready"]
    assert any("password" in n["message"].lower() for n in notes)


def test_identical_content_is_a_duplicate_and_adds_no_chunks(client, app, worker):
    content = b"# FAQ\n\nThe capybara cafe opens at dawn.\n"
    first = upload(client, "faq.md", content).json
    done = wait_done(client, first["source_id"])
    again = upload(client, "renamed.md", content)
    assert again.status == 200
    assert again.json["duplicate"] is True and again.json["source_id"] == first["source_id"]
    with app.database.connection_context():
        assert Source.select().count() == 1
        assert Chunk.select().count() == done["chunk_count"]


def test_a_forced_rerun_leaves_the_chunk_count_unchanged(client, app, worker):
    text = ("Paragraph about the manatee garden. " * 40 + "\n\n") * 10
    first = upload(client, "long.txt", text.encode()).json
    done = wait_done(client, first["source_id"])
    assert done["chunk_count"] > 1
    for _ in range(2):
        rerun = client.post("/api/sources/%s/reprocess" % first["source_id"])
        assert rerun.status == 202
        again = wait_done(client, first["source_id"])
        assert again["chunk_count"] == done["chunk_count"]
    with app.database.connection_context():
        assert Chunk.select().where(Chunk.source == first["source_id"]).count() == \
            done["chunk_count"]
        # the index holds each chunk once, too
        fts = app.database.execute_sql(
            "select count(*) from chunk_index where chunk_index match ?",
            ('"manatee"',)).fetchone()[0]
        assert fts == done["chunk_count"]


def test_delete_removes_chunks_index_entries_and_file(client, app, worker):
    body = upload(client, "gone.md", b"# Gone\n\nThe okapi exhibit closes soon.\n").json
    wait_done(client, body["source_id"])
    with app.database.connection_context():
        stored = Source.get_by_id(body["source_id"]).stored_path
    path = os.path.join(app.settings.data_dir, stored)
    assert os.path.exists(path) and search(app, "default", "okapi exhibit")
    assert client.delete("/api/sources/" + body["source_id"]).status == 200
    assert not os.path.exists(path)
    assert search(app, "default", "okapi exhibit") == []
    with app.database.connection_context():  # the FTS index itself, not through the join
        assert app.database.execute_sql("select count(*) from chunk_index where chunk_index "
                                        "match 'okapi'").fetchone()[0] == 0
    assert client.get("/api/sources/" + body["source_id"]).status == 404


def test_deleting_a_source_or_its_bot_revokes_its_waiting_run(client, app):
    # No worker: the runs wait in the queue, as behind a busy worker or for a retry.
    client.post("/api/chatbots", {"name": "Temp", "id": "temp"})
    mine = upload(client, "w.md", b"# W\n\nThe wombat burrow.\n").json
    theirs = upload(client, "b.md", b"# B\n\nThe bilby den.\n", bot="temp").json
    kept = upload(client, "k.md", b"# K\n\nThe kiwi nest.\n").json
    assert client.delete("/api/sources/" + mine["source_id"]).status == 200
    assert client.delete("/api/chatbots/temp").status == 200
    status = {name: client.get("/api/tasks/" + body["task_id"]).json["status"]
              for name, body in (("mine", mine), ("theirs", theirs), ("kept", kept))}
    assert status == {"mine": "REVOKED", "theirs": "REVOKED", "kept": "PENDING"}
    assert client.get("/api/queues").json["queues"]["documents"]["pending"] == 1


def test_a_run_that_finds_its_source_deleted_ends_without_a_dead_letter(client, app, worker):
    # Deleted while it ran (or while the delete's revoke raced its claim).
    task_id = app.runner.enqueue("process_document", ["no-such-source"])
    state = wait_for(lambda: (lambda t: t if t["status"] in ("SUCCESS", "FAILURE") else None)(
        client.get("/api/tasks/" + task_id).json), message="the run to end")
    assert state["status"] == "SUCCESS" and state["result"] == {"source_deleted": True}
    assert client.get("/api/queues").json["dead"] == 0


# --- bad uploads -------------------------------------------------------------------

def test_unsupported_content_is_a_415_listing_the_supported_types(client, app):
    response = upload(client, "tool.exe", b"MZ\x90\x00\x03\x00\x00\x00" + b"\x00" * 200)
    assert response.status == 415
    assert "pdf" in response.json["error"]["message"] and "docx" in response.json["error"]["message"]
    with app.database.connection_context():
        assert Source.select().count() == 0
    assert os.listdir(os.path.join(app.settings.data_dir, "uploads")) == []


def test_a_pdf_name_on_a_zip_is_refused(client):
    response = upload(client, "report.pdf", _docx())
    assert response.status == 415


def test_an_oversized_upload_is_a_413(client, app):
    app.settings.max_upload_mb = 1
    response = upload(client, "big.txt", b"x " * (1024 * 1024))
    assert response.status == 413 and response.json["error"]["code"] == "payload_too_large"


def test_a_multipart_body_without_file_is_a_400(client):
    body, headers = multipart("x.txt", b"hello", field="document")
    response = client.request("POST", "/api/chatbots/default/sources", body=body, headers=headers)
    assert response.status == 400 and "'file'" in response.json["error"]["message"]


def test_filenames_are_sanitised(client, app):
    response = upload(client, "../../etc/pass wd?.txt", b"plain text about emus")
    assert response.status == 202
    with app.database.connection_context():
        source = Source.get_by_id(response.json["source_id"])
    assert source.filename == "pass wd_.txt"
    real = os.path.realpath(os.path.join(app.settings.data_dir, source.stored_path))
    assert real.startswith(os.path.realpath(os.path.join(app.settings.data_dir, "uploads")) + os.sep)


def test_unknown_bot_is_404(client):
    assert upload(client, "a.txt", b"text", bot="ghost").status == 404
    assert client.get("/api/chatbots/ghost/sources").status == 404


# --- search safety ------------------------------------------------------------------

@pytest.mark.parametrize("query", [
    '"unbalanced', "a AND OR NEAR(b", "*", "col:umn", "((((", "NOT", '" OR "', "", "   ",
    "ünïcödé ärger", "'; drop table chunk; --",
])
def test_fts_syntax_in_questions_never_raises(app, query):
    assert isinstance(search(app, "default", query), list)


def test_ingestion_and_search_on_postgresql(tmp_path, postgres_url):
    from botlite.app import Botlite
    from botlite.settings import load_settings
    from botlite.web.app import create_app
    from conftest import WsgiClient
    pg_app = Botlite.open(load_settings({"data_dir": str(tmp_path),
                                         "database_url": postgres_url}, environ={}))
    runtime = pg_app.runtime(1, schedule=False)
    runtime.start()
    try:
        client = WsgiClient(create_app(pg_app), token=pg_app.token)
        body = upload(client, "pg.md", b"# Ferries\n\nThe walrus ferry leaves at noon. "
                      b"Installing the ferry app takes a minute.\n").json
        assert wait_done(client, body["source_id"])["status"] == "ready"
        hits = search(pg_app, "default", "when does the walrus ferry leave?")
        assert hits and hits[0].source_id == body["source_id"] and hits[0].score > 0.5
        assert search(pg_app, "default", 'install "ferry AND (') != []  # stemming, no errors
        assert search(pg_app, "default", "zeppelin") == []
    finally:
        runtime.stop()
        pg_app.close()


# --- websites -----------------------------------------------------------------------

class Site:
    """A small website on 127.0.0.1 whose pages a test can change."""

    def __init__(self):
        import http.server
        import threading
        pages = self.pages = {}
        self.requests = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(handler):
                self.requests.append(handler.path)
                body = pages.get(handler.path)
                if body is None:
                    handler.send_response(404)
                    handler.end_headers()
                    return
                handler.send_response(200)
                handler.send_header("Content-Type", "text/html; charset=utf-8")
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.write(body)

            def log_message(handler, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = "http://127.0.0.1:%d" % self.server.server_address[1]

    def page(self, path, title, text, links=()):
        anchors = "".join('<a href="%s">%s</a>' % (link, link) for link in links)
        self.pages[path] = ("<html><head><title>%s</title></head><body><main><h1>%s</h1>"
                            "<p>%s</p>%s</main></body></html>" % (title, title, text, anchors)
                            ).encode()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site():
    site = Site()
    site.page("/docs/", "Docs home", "Welcome to the lemur documentation.",
              ["/docs/install.html", "/docs/billing.html"])
    site.page("/docs/install.html", "Installing", "Install the lemur agent with the "
              "installer, then restart the marmoset service.")
    site.page("/docs/billing.html", "Billing", "Invoices for the lemur plan are sent "
              "on the first working day of each month.")
    yield site
    site.close()


@pytest.fixture
def private_ok():
    """Marks a test whose app runs with BOTLITE_ALLOW_PRIVATE_URLS=1 (see settings)."""


@pytest.fixture
def settings(data_dir, request):
    from botlite.settings import load_settings
    allow = "1" if "private_ok" in request.fixturenames else "0"
    return load_settings({"data_dir": data_dir},
                         environ={"BOTLITE_ALLOW_PRIVATE_URLS": allow})


def test_a_website_becomes_pages_with_their_own_citations(client, app, worker, site,
                                                          private_ok):
    response = client.post("/api/chatbots/default/sources",
                           {"url": site.base + "/docs/", "max_pages": 10, "max_depth": 2})
    assert response.status == 202, response.body
    source = wait_done(client, response.json["source_id"])
    assert source["status"] == "ready", source["error"]
    assert source["kind"] == "website" and source["page_count"] == 3
    assert source["progress"]["done"] == 3
    hits = search(app, "default", "when are invoices sent?")
    assert hits[0].url == site.base + "/docs/billing.html" and hits[0].title == "Billing"
    hits = search(app, "default", "restart the marmoset service")
    assert hits[0].url == site.base + "/docs/install.html"
    again = client.post("/api/chatbots/default/sources", {"url": site.base + "/docs/"})
    assert again.status == 200 and again.json["duplicate"] is True


def test_a_resync_rechunks_only_changed_pages(client, app, worker, site, private_ok):
    source_id = client.post("/api/chatbots/default/sources",
                            {"url": site.base + "/docs/"}).json["source_id"]
    first = wait_done(client, source_id)

    from botlite.models import Page

    def page_state():
        with app.database.connection_context():
            return {p.url: (p.fetched_at, p.content_hash) for p in
                    Page.select().where(Page.source == source_id)}
    install, billing = site.base + "/docs/install.html", site.base + "/docs/billing.html"
    before = page_state()
    site.page("/docs/billing.html", "Billing", "Invoices for the lemur plan are now sent "
              "on the fifteenth of each month.")
    assert client.post("/api/sources/%s/reprocess" % source_id).status == 202
    done = wait_done(client, source_id)
    task = wait_for(lambda: (lambda t: t if t["status"] == "SUCCESS" else None)(
        client.get("/api/tasks/" + done["task_id"]).json), message="the re-sync task")
    assert task["result"]["changed_pages"] == 1
    after = page_state()
    assert after[install] == before[install]  # untouched
    assert after[billing][1] != before[billing][1] and after[billing][0] > before[billing][0]
    assert done["chunk_count"] == first["chunk_count"]
    assert search(app, "default", "fifteenth")[0].url == billing


def test_private_addresses_are_refused_by_default(client, site):
    response = client.post("/api/chatbots/default/sources", {"url": site.base + "/docs/"})
    assert response.status == 400 and response.json["error"]["code"] == "unsafe_url"
    assert "BOTLITE_ALLOW_PRIVATE_URLS=1" in response.json["error"]["message"]
    assert site.requests == []


@pytest.mark.parametrize("allowed", [False, True])
def test_a_url_with_a_user_name_and_password_is_refused(client, app, site, allowed,
                                                       monkeypatch):
    monkeypatch.setattr(app.settings, "allow_private_urls", allowed)
    url = site.base.replace("http://", "http://user:secret@") + "/docs/"
    response = client.post("/api/chatbots/default/sources", {"url": url})
    assert response.status == 400 and response.json["error"]["code"] == "unsafe_url"
    assert "user name or password" in response.json["error"]["message"]
    assert "ALLOW_PRIVATE" not in response.json["error"]["message"]
    assert client.get("/api/chatbots/default/sources").json["sources"] == []
    assert site.requests == []


@pytest.mark.parametrize("errno_name, status", [("EAI_NONAME", 400), ("EAI_AGAIN", 202)])
def test_a_host_that_does_not_exist_is_refused_even_when_private_is_allowed(
        client, monkeypatch, private_ok, errno_name, status):
    import socket

    def resolve(*args, **kwargs):
        raise socket.gaierror(getattr(socket, errno_name), "lookup failed")

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    response = client.post("/api/chatbots/default/sources",
                           {"url": "http://docs.no-such-host.example/"})
    assert response.status == status, response.body
    if status == 400:  # no such host: refused at once, nothing stored
        assert response.json["error"]["code"] == "invalid_url"
        assert "could not be found" in response.json["error"]["message"]
        assert client.get("/api/chatbots/default/sources").json["sources"] == []
    else:  # DNS that does not answer for now: queued; the crawl retries
        assert response.json["source"]["url"] == "http://docs.no-such-host.example/"


@pytest.mark.parametrize("body, fragment", [
    ({"url": "ftp://example.com/"}, "http"), ({"url": "not a url"}, "http"),
    ({"url": "https://example.com/", "max_pages": 0}, "max_pages"),
    ({"url": "https://example.com/", "max_depth": 11}, "max_depth"),
    ({"url": "https://example.com/", "depth": 1}, "unknown field"),
])
def test_bad_website_requests_are_400(client, body, fragment):
    response = client.post("/api/chatbots/default/sources", body)
    assert response.status == 400 and fragment in response.json["error"]["message"]


def test_a_site_that_is_down_fails_with_a_reason(client, app, worker, private_ok):
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    source_id = client.post("/api/chatbots/default/sources",
                            {"url": "http://127.0.0.1:%d/" % port}).json["source_id"]
    with app.database.connection_context():
        task_id = Source.get_by_id(source_id).task_id
    # transient: it is retried (with backoff), not failed at once
    state = wait_for(lambda: (lambda t: t if t["status"] == "RETRY" else None)(
        client.get("/api/tasks/" + task_id).json), message="a retry")
    assert "could not" in state["error"].lower() or "connect" in state["error"].lower()
    # ...and the source says why it is not ready yet, instead of a bare "processing"
    source = wait_for(lambda: (lambda s: s if s["error"] else None)(
        client.get("/api/sources/" + source_id).json), message="the reason on the source")
    assert source["status"] == "processing"
    assert source["error"].startswith("can't crawl http://127.0.0.1:%d/" % port)
    assert source["error"].endswith("(will try again)")


def test_a_run_failing_for_now_writes_only_on_its_own_source(client, app):
    from botlite.knowledge.sources import failed_for_now
    body = upload(client, "r.md", b"# R\n\nThe rhea run.\n").json  # no worker: it waits
    source_id, task_id = body["source_id"], body["task_id"]

    def state():
        with app.database.connection_context():
            found = Source.get_by_id(source_id)
            return found.status, found.error

    with app.database.connection_context():
        Source.update(status="processing").where(Source.id == source_id).execute()
        failed_for_now(source_id, "an-older-run", "Disk busy", retrying=True)
        failed_for_now(source_id, "an-older-run", "Disk busy", retrying=False)
    assert state() == ("processing", None)  # superseded runs write nothing
    with app.database.connection_context():
        failed_for_now(source_id, task_id, "Disk busy", retrying=True)
    assert state() == ("processing", "Disk busy (will try again)")
    with app.database.connection_context():
        failed_for_now(source_id, task_id, "Disk busy", retrying=False)  # its last attempt
    assert state() == ("failed", "Disk busy")


def test_stale_websites_are_resynced_by_the_periodic_job(client, app, site, private_ok):
    import datetime
    from botlite.tasks.ingest import resync_websites
    source_id = client.post("/api/chatbots/default/sources",
                            {"url": site.base + "/docs/", "refresh_hours": 1}).json["source_id"]
    fresh = client.post("/api/chatbots/default/sources",
                        {"url": site.base + "/docs/install.html"}).json["source_id"]
    with app.database.connection_context():
        Source.update(status="ready", last_synced_at=datetime.datetime.utcnow() -
                      datetime.timedelta(hours=2)).where(Source.id.in_([source_id, fresh])).execute()
    from botlite import schedule
    job = schedule.get_job(app.runner, "resync_websites")
    assert (job["task"], job["crontab"], job["enabled"]) == (resync_websites.__name__,
                                                            "*/15 * * * *", True)
    # Run queued work step by step: the two initial crawls are dropped first.
    app.runner.purge("websites")
    task_id = app.runner.enqueue("resync_websites")
    app.runner.huey.execute(app.runner.huey.dequeue(lanes=["low_priority"]))
    assert app.runner.state(task_id)["result"] == {"queued": [source_id]}
    assert app.runner.queues()["queues"]["websites"]["pending"] == 1


# --- review findings ------------------------------------------------------------------

def test_identical_uploads_at_the_same_time_make_one_source(client, app):
    import threading
    content = b"# Same\n\nThe ibis sanctuary opens in spring.\n" * 200
    statuses, barrier = [], threading.Barrier(4)

    def send():
        barrier.wait(5)
        statuses.append(upload(client, "same.md", content).status)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 200, 200, 202]
    with app.database.connection_context():
        assert Source.select().count() == 1


def test_a_source_whose_task_was_revoked_can_be_processed_again(client, app):
    body = upload(client, "stuck.md", b"# Stuck\n\nThe gecko room.\n").json
    client.post("/api/tasks/%s/revoke" % body["task_id"])
    assert client.get("/api/sources/" + body["source_id"]).json["status"] == "pending"
    again = client.post("/api/sources/%s/reprocess" % body["source_id"])
    assert again.status == 202 and again.json["task_id"] != body["task_id"]
    assert client.post("/api/sources/%s/reprocess" % body["source_id"]).status == 409


def test_deleting_a_bot_removes_its_files_chunks_and_index_entries(client, app, worker):
    client.post("/api/chatbots", {"name": "Temp", "id": "temp"})
    body = upload(client, "t.md", b"# T\n\nThe tapir enclosure.\n", bot="temp").json
    wait_done(client, body["source_id"])
    folder = os.path.join(app.settings.data_dir, "uploads", body["source_id"])
    assert os.path.isdir(folder)
    assert client.delete("/api/chatbots/temp").status == 200
    assert not os.path.exists(folder)
    with app.database.connection_context():
        assert Chunk.select().count() == 0
        assert app.database.execute_sql("select count(*) from chunk_index where chunk_index "
                                        "match 'tapir'").fetchone()[0] == 0


@pytest.mark.parametrize("url", ["http://x:99999/", "http://x:abc/", "http://[::1/"])
def test_malformed_website_urls_are_400(client, url):
    response = client.post("/api/chatbots/default/sources", {"url": url})
    assert response.status == 400 and response.json["error"]["code"] == "invalid_field"


def test_a_superseded_run_sends_no_ready_notification(client, app):
    from botlite.models import Notification
    from botlite.tasks.notify import notify_source_failed, notify_source_ready
    body = upload(client, "n.md", b"# N\n\nThe newt pond.\n").json
    with app.database.connection_context():
        Source.update(status="ready").where(Source.id == body["source_id"]).execute()
        assert notify_source_ready(body["source_id"], "an-older-run") is None
        assert notify_source_failed(body["source_id"], "an-older-run", "boom") is None
        assert Source.get_by_id(body["source_id"]).status == "ready"
        assert Notification.select().count() == 0
        notify_source_ready(body["source_id"], body["task_id"], chunks=1)
        notify_source_ready(body["source_id"], body["task_id"], chunks=1)  # a retry
        assert [n.title for n in Notification.select()] == ["Document ready"]


# --- a crash between storing a source and queueing its run ------------------------

def _stored_but_never_queued(app, content, task_id=None, age_s=0):
    """What a crash after `Source.create` (or after naming the run, before the
    queue got it) leaves: a pending source that no run will ever process."""
    from botlite.chatbots import get_bot
    from botlite.knowledge import sources as sources_mod
    import datetime
    with app.database.connection_context():
        added = sources_mod.add_file(app.settings.data_dir, get_bot("default"), "lost.md",
                                     io.BytesIO(content), 10 * 1024 * 1024)
        when = Source.get_by_id(added.source.id).updated_at - datetime.timedelta(seconds=age_s)
        Source.update(task_id=task_id, updated_at=when).where(
            Source.id == added.source.id).execute()
        return added.source.id


def test_reuploading_a_source_whose_run_was_never_queued_queues_it(app, client, worker):
    content = b"# Lost\n\nThe quartz lantern needs a crash-safe upload.\n"
    source_id = _stored_but_never_queued(app, content)
    # Moments after it was stored, another upload may be queueing it: a duplicate.
    assert upload(client, "lost.md", content).json["duplicate"] is True
    with app.database.connection_context():  # a crash and a restart later
        stored = Source.get_by_id(source_id).updated_at
        Source.update(updated_at=stored - datetime.timedelta(seconds=10)).where(
            Source.id == source_id).execute()
    response = upload(client, "lost.md", content)
    assert response.status == 202, response.json
    body = response.json
    assert body["source_id"] == source_id and body["duplicate"] is False and body["task_id"]
    assert wait_done(client, source_id)["status"] == "ready"
    assert upload(client, "lost.md", content).json["duplicate"] is True  # now it is known


@pytest.mark.parametrize("lost", ["no task", "task never queued"])
def test_a_source_a_crash_kept_from_its_queue_becomes_ready_without_a_reprocess(
        app, client, lost):
    """Recovery at start (and the schedule's recover_sources every minute) queues
    a pending source with no live run; one changed within the grace period (maybe
    between its two writes right now) is left alone."""
    old = _stored_but_never_queued(app, b"# Old\n\nThe amber kettle boils twice.\n",
                                   task_id=None if lost == "no task" else "never-queued",
                                   age_s=120)
    young = _stored_but_never_queued(app, b"# Young\n\nThe violet spoon is new.\n")
    runtime = app.runtime(1)  # what serve and worker start: it runs recover_sources
    runtime.start()
    try:
        assert wait_done(client, old)["status"] == "ready"
        recovered = wait_for(lambda: [t for t in client.get(
            "/api/tasks?name=recover_sources").json["tasks"] if t["status"] == "SUCCESS"],
            timeout=30, message="recover_sources to run")
        assert recovered[0]["result"] == {"queued": [old]}
        assert client.get("/api/sources/" + young).json["status"] == "pending"
    finally:
        runtime.stop()
    with app.database.connection_context():
        assert search(app, "default", "amber kettle")


@pytest.mark.parametrize("name", ["a\x00.txt", "\x00", "a\x1b.txt"])
def test_a_file_name_with_control_characters_is_a_400_and_stores_nothing(client, app, name):
    answer = upload(client, name, b"hello")
    assert answer.status == 400, answer.text
    assert answer.json["error"]["code"] == "invalid_filename"
    with app.database.connection_context():
        assert Source.select().count() == 0
    uploads = os.path.join(app.settings.data_dir, "uploads")
    assert not os.path.isdir(uploads) or not os.listdir(uploads)


@pytest.mark.parametrize("filename, content", [
    ("stash.html", b"<html><body><h1>Pulling into a dirty tree</h1><p>When your local "
     b"changes conflict with the upstream, git pull refuses. In such a case, stash your "
     b"changes away, perform a pull, and then unstash, like this:</p><pre>$ git pull\n"
     b"$ git stash\n$ git pull\n$ git stash pop</pre><p>Interrupted workflow</p>"
     b"</body></html>"),
    ("stash.md", b"# Pulling into a dirty tree\n\nWhen your local changes conflict with the "
     b"upstream, git pull refuses. In such a case, stash your changes away, perform a "
     b"pull, and then unstash, like this:\n\n```sh\n$ git pull\n$ git stash\n$ git pull\n"
     b"$ git stash pop\n```\n\nInterrupted workflow.\n"),
])
def test_the_command_a_document_shows_reaches_the_reply_as_code(client, worker, filename,
                                                                content):
    """'...and then unstash, like this:' was the reply; the commands were cut."""
    source = upload(client, filename, content).json["source_id"]
    assert wait_done(client, source)["status"] == "ready"
    answer = client.post("/chatbot/message/", {
        "message": "my local changes conflict with git pull, what do I do?"}, auth=False).json
    assert answer["answer_source"] == "knowledge", answer
    assert {"type": "code", "text": "$ git pull\n$ git stash\n$ git pull\n$ git stash pop"} \
        in answer["blocks"]
