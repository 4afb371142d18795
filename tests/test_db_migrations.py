import peewee

from botlite import db as dbmod
from botlite.app import Botlite
from botlite.models import Chatbot
from botlite.settings import load_settings


def _all_migrations():
    from playhouse.migrations import Migration
    return [m.name for m in Migration.load_directory(dbmod.MIGRATIONS_DIR)]


def _columns(database, table):
    return {column.name for column in database.get_columns(table)}


def test_an_older_schema_is_upgraded_in_place_with_its_rows_kept(tmp_path):
    path = str(tmp_path / "botlite.db")
    old = dbmod.open_database("sqlite:///" + path)
    dbmod.migrate(old, target="0001_initial")
    with old.connection_context():
        assert "allowed_domains" not in _columns(old, "chatbot")
        old.execute_sql("insert into chatbot (id, name, description, greeting, "
                        "fallback_message, created_at, updated_at) values "
                        "('support', 'Support', 'Answers questions', 'Hi!', 'Sorry', "
                        "'2025-01-02 03:04:05', '2025-01-02 03:04:05')")
    old.close()

    app = Botlite.open(load_settings({"data_dir": str(tmp_path),
                                      "database_url": "sqlite:///" + path}, environ={}))
    try:
        with app.database.connection_context():
            assert "allowed_domains" in _columns(app.database, "chatbot")
            kept = Chatbot.get_by_id("support")
            assert (kept.name, kept.description, kept.greeting) == ("Support", "Answers questions", "Hi!")
            assert kept.to_dict()["allowed_domains"] == []
            assert kept.rate_limit_per_minute == 30
            assert Chatbot.get_or_none(Chatbot.id == "default") is not None
        assert dbmod.schema_version(app.database) == _all_migrations()[-1]
    finally:
        app.close()


def test_migrating_twice_changes_nothing(tmp_path):
    database = dbmod.open_database("sqlite:///%s/x.db" % tmp_path)
    applied = dbmod.migrate(database)
    assert applied == _all_migrations() and applied[:3] == [
        "0001_initial", "0002_chatbot_widget_settings", "0003_knowledge"]
    assert dbmod.migrate(database) == []


def test_sqlite_runs_in_wal_with_foreign_keys_and_a_busy_timeout(app):
    with app.database.connection_context():
        pragma = lambda name: app.database.execute_sql("pragma %s" % name).fetchone()[0]
        assert pragma("journal_mode") == "wal"
        assert pragma("foreign_keys") == 1
        assert pragma("busy_timeout") == 5000


def test_each_thread_gets_its_own_connection(app):
    import threading
    barrier = threading.Barrier(3)
    seen = []

    def work():
        with app.database.connection_context():
            seen.append(app.database.connection())
            barrier.wait(timeout=5)  # all three are open at once

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(conn) for conn in seen}) == 3


def test_the_app_database_works_on_postgresql(tmp_path, postgres_url):
    app = Botlite.open(load_settings({"data_dir": str(tmp_path), "database_url": postgres_url},
                                     environ={}))
    try:
        assert isinstance(app.database, peewee.PostgresqlDatabase)
        with app.database.connection_context():
            assert Chatbot.get_by_id("default").name == "Default bot"
        assert dbmod.schema_version(app.database) == _all_migrations()[-1]
    finally:
        app.close()


def test_0015_keeps_vectors_of_named_models_and_a_second_model_can_sit_beside_them(tmp_path):
    # 0014's ids were a file hash no process reads any more: those are left to be rebuilt.
    path = str(tmp_path / "botlite.db")
    old = dbmod.open_database("sqlite:///" + path)
    dbmod.migrate(old, target="0014_chunk_vectors")
    with old.connection_context():
        old.execute_sql("pragma foreign_keys = off")  # a chunk without its bot and source
        old.execute_sql("insert into chunk (id, source_id, chatbot_id, bot, position, text) "
                        "values (7, 's', 'b', 'b', 0, 'hello')")
        old.execute_sql("insert into chunk_vector values (8, 'b', '8199be6f699a395f', 2, x'09')")
        old.execute_sql("insert into chunk_vector values (7, 'b', 'old-model', 3, x'0102')")
        old.execute_sql("insert into vector_version values ('b', 3)")
    old.close()

    database = dbmod.open_database("sqlite:///" + path)
    assert "0015_vector_per_model" in dbmod.migrate(database)
    with database.connection_context():
        assert database.execute_sql("select chunk_id, model, version, vector from chunk_vector"
                                    ).fetchall() == [(7, "old-model", 3, b"\x01\x02")]
        database.execute_sql("insert into chunk_vector values (7, 'b', 'new-model', 4, x'03')")
        assert database.execute_sql("select version, epoch from vector_version").fetchall() == [
            (3, 0)]
        database.execute_sql("pragma foreign_keys = on")
        database.execute_sql("delete from chunk where id = 7")
        assert database.execute_sql("select count(*) from chunk_vector").fetchone()[0] == 0
    database.close()
