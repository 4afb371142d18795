"""Knowledge sources, their pages and chunks, the full-text index, notifications.

SQLite: an FTS5 table over chunk (external content, kept in step by triggers, so
a cascaded delete also cleans the index). PostgreSQL: a generated tsvector
column with a GIN index.
"""
import datetime

from peewee import (BigIntegerField, BooleanField, CharField, DateTimeField, ForeignKeyField,
                    IntegerField, Model, PostgresqlDatabase, TextField)


def up(migrator, db):
    now = datetime.datetime.utcnow

    class Base(Model):
        class Meta:
            database = db

    class Chatbot(Base):
        id = CharField(primary_key=True, max_length=64)

        class Meta:
            table_name = "chatbot"

    class Source(Base):
        id = CharField(primary_key=True, max_length=32)
        chatbot = ForeignKeyField(Chatbot, on_delete="CASCADE", column_name="chatbot_id")
        kind = CharField(max_length=16)
        title = TextField(null=True)
        url = TextField(null=True)
        filename = TextField(null=True)
        stored_path = TextField(null=True)
        file_kind = CharField(max_length=16, null=True)
        size_bytes = BigIntegerField(null=True)
        content_hash = CharField(max_length=64, null=True)
        status = CharField(max_length=16, default="pending")
        progress_done = IntegerField(default=0)
        progress_total = IntegerField(null=True)
        chunk_count = IntegerField(default=0)
        page_count = IntegerField(default=0)
        error = TextField(null=True)
        task_id = CharField(max_length=64, null=True)
        max_pages = IntegerField(null=True)
        max_depth = IntegerField(null=True)
        refresh_hours = IntegerField(null=True)
        last_synced_at = DateTimeField(null=True)
        created_at = DateTimeField(default=now)
        updated_at = DateTimeField(default=now)

        class Meta:
            table_name = "source"
            indexes = ((("chatbot", "content_hash"), False), (("chatbot", "url"), False))

    class Page(Base):
        source = ForeignKeyField(Source, on_delete="CASCADE", column_name="source_id")
        url = TextField()
        title = TextField(null=True)
        description = TextField(null=True)
        content_hash = CharField(max_length=64)
        fetched_at = DateTimeField(default=now)

        class Meta:
            table_name = "page"
            indexes = ((("source", "url"), True),)

    class Chunk(Base):
        source = ForeignKeyField(Source, on_delete="CASCADE", column_name="source_id")
        page = ForeignKeyField(Page, null=True, on_delete="CASCADE", column_name="page_id")
        chatbot_id = CharField(max_length=64, index=True)
        bot = CharField(max_length=24)       # the bot's search token (see knowledge/index.py)
        url = TextField(null=True)
        title = TextField(null=True)
        heading = TextField(null=True)
        locator = TextField(null=True)
        position = IntegerField()
        text = TextField()

        class Meta:
            table_name = "chunk"

    class Notification(Base):
        user_id = CharField(max_length=100, index=True)
        title = TextField()
        message = TextField()
        notification_type = CharField(max_length=50, default="info")
        read = BooleanField(default=False)
        dedup_key = CharField(max_length=128, null=True, unique=True)
        created_at = DateTimeField(default=now, index=True)

        class Meta:
            table_name = "notification"

    db.create_tables([Source, Page, Chunk, Notification])
    if isinstance(db, PostgresqlDatabase):
        db.execute_sql(
            "alter table chunk add column tsv tsvector generated always as ("
            "setweight(to_tsvector('english', coalesce(title, '')), 'A') || "
            "setweight(to_tsvector('english', coalesce(heading, '')), 'B') || "
            "setweight(to_tsvector('english', text), 'C')) stored")
        db.execute_sql("create index chunk_tsv on chunk using gin (tsv)")
        db.execute_sql("create index chunk_bot_source on chunk (chatbot_id, source_id)")
        return
    db.execute_sql(
        "create virtual table chunk_index using fts5(bot, title, heading, text, "
        "content='chunk', content_rowid='id', "
        "tokenize='porter unicode61 remove_diacritics 2')")
    db.execute_sql(
        "create trigger chunk_index_ai after insert on chunk begin "
        "insert into chunk_index (rowid, bot, title, heading, text) "
        "values (new.id, new.bot, new.title, new.heading, new.text); end")
    db.execute_sql(
        "create trigger chunk_index_ad after delete on chunk begin "
        "insert into chunk_index (chunk_index, rowid, bot, title, heading, text) "
        "values ('delete', old.id, old.bot, old.title, old.heading, old.text); end")
    db.execute_sql(
        "create trigger chunk_index_au after update on chunk begin "
        "insert into chunk_index (chunk_index, rowid, bot, title, heading, text) "
        "values ('delete', old.id, old.bot, old.title, old.heading, old.text); "
        "insert into chunk_index (rowid, bot, title, heading, text) "
        "values (new.id, new.bot, new.title, new.heading, new.text); end")
