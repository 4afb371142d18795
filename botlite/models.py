"""The app's tables. The schema itself is created by botlite/migrations."""
from __future__ import annotations

import json

from peewee import (BigIntegerField, BlobField, BooleanField, CharField, CompositeKey,
                    DateField, DateTimeField, FloatField, ForeignKeyField, IntegerField,
                    Model, TextField)

from botlite.db import database
from botlite.timeutil import isoformat, utcnow


DEFAULT_BOT_ID = "default"


class BaseModel(Model):
    class Meta:
        database = database
        legacy_table_names = False


class Chatbot(BaseModel):
    id = CharField(primary_key=True, max_length=64)
    name = CharField(max_length=200)
    description = TextField(default="")
    greeting = TextField(default="")
    fallback_message = TextField(default="")
    allowed_domains = TextField(default="[]")
    rate_limit_per_minute = IntegerField(default=30)
    webhook_url = TextField(null=True)
    webhook_secret = TextField(null=True)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "greeting": self.greeting,
            "fallback_message": self.fallback_message,
            "allowed_domains": json.loads(self.allowed_domains or "[]"),
            "rate_limit_per_minute": self.rate_limit_per_minute,
            "webhook_url": self.webhook_url,
            "webhook_secret_set": bool(self.webhook_secret),  # the secret is never shown
            "created_at": isoformat(self.created_at),
            "updated_at": isoformat(self.updated_at),
        }


class Source(BaseModel):
    """A file or website a bot answers from."""
    id = CharField(primary_key=True, max_length=32)
    chatbot = ForeignKeyField(Chatbot, backref="sources", on_delete="CASCADE",
                              column_name="chatbot_id")
    kind = CharField(max_length=16)                    # file | website
    title = TextField(null=True)
    url = TextField(null=True)                         # website: the start URL
    filename = TextField(null=True)                    # file: the sanitised upload name
    stored_path = TextField(null=True)                 # file: relative to the data dir
    file_kind = CharField(max_length=16, null=True)    # pdf, docx, ...
    size_bytes = BigIntegerField(null=True)
    content_hash = CharField(max_length=64, null=True)
    status = CharField(max_length=16, default="pending")  # pending|processing|ready|failed
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
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)
    # Search shows the chunks of this generation; a run writing a new one holds
    # it in ``staging`` until it flips (see knowledge/sources.py).
    generation = IntegerField(default=0)
    staging = IntegerField(null=True)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "chatbot_id": self.chatbot_id,
            "kind": self.kind,
            "title": self.title,
            "url": self.url,
            "filename": self.filename,
            "file_kind": self.file_kind,
            "size_bytes": self.size_bytes,
            "status": self.status,
            "progress": {"done": self.progress_done, "total": self.progress_total},
            "chunk_count": self.chunk_count,
            "page_count": self.page_count,
            "error": self.error,
            "task_id": self.task_id,
            "max_pages": self.max_pages,
            "max_depth": self.max_depth,
            "refresh_hours": self.refresh_hours,
            "last_synced_at": isoformat(self.last_synced_at),
            "created_at": isoformat(self.created_at),
            "updated_at": isoformat(self.updated_at),
        }


class Page(BaseModel):
    """One crawled page of a website source (for citations and re-sync)."""
    source = ForeignKeyField(Source, backref="pages", on_delete="CASCADE",
                             column_name="source_id")
    url = TextField()
    title = TextField(null=True)
    description = TextField(null=True)
    content_hash = CharField(max_length=64)
    fetched_at = DateTimeField(default=utcnow)


class Chunk(BaseModel):
    source = ForeignKeyField(Source, backref="chunks", on_delete="CASCADE",
                             column_name="source_id")
    page = ForeignKeyField(Page, null=True, backref="chunks", on_delete="CASCADE",
                           column_name="page_id")
    chatbot_id = CharField(max_length=64, index=True)
    bot = CharField(max_length=24)
    url = TextField(null=True)
    title = TextField(null=True)
    heading = TextField(null=True)
    locator = TextField(null=True)
    position = IntegerField()
    text = TextField()
    generation = IntegerField(default=0)


class ChunkVector(BaseModel):
    """A chunk's sentence embedding (float16 bytes) made by ``model`` (an id from
    the model file's hash); ``version``: the bot's `VectorVersion` when written,
    so a process holding the bot's vectors in memory reads only the newer ones."""
    chunk = ForeignKeyField(Chunk, on_delete="CASCADE", column_name="chunk_id")
    chatbot_id = CharField(max_length=64)
    model = CharField(max_length=16)
    version = IntegerField()
    vector = BlobField()

    class Meta:
        table_name = "chunk_vector"
        primary_key = CompositeKey("chunk", "model")


class VectorVersion(BaseModel):
    """Counts a bot's vector writes (one per transaction that writes some)."""
    chatbot_id = CharField(primary_key=True, max_length=64)
    version = IntegerField(default=0)
    epoch = IntegerField(default=0)  # changed by a rebuild: held vectors are reloaded

    class Meta:
        table_name = "vector_version"


class Notification(BaseModel):
    user_id = CharField(max_length=100, index=True)
    title = TextField()
    message = TextField()
    notification_type = CharField(max_length=50, default="info")
    read = BooleanField(default=False)
    dedup_key = CharField(max_length=128, null=True, unique=True)
    created_at = DateTimeField(default=utcnow, index=True)
    chatbot_id = CharField(max_length=64, null=True)
    task_id = CharField(max_length=64, null=True, unique=True)
    content_hash = CharField(max_length=64, null=True)
    read_at = DateTimeField(null=True)
    webhook_status = CharField(max_length=16, null=True)  # None | pending | delivered | failed
    delivered_at = DateTimeField(null=True)
    delivery_attempts = IntegerField(default=0)
    delivery_error = TextField(null=True)
    delivery_claimed_until = DateTimeField(null=True)
    delivery_claimed_by = CharField(max_length=64, null=True)  # the task delivering it

    def to_dict(self) -> dict:
        return {"id": str(self.id), "user_id": self.user_id, "title": self.title,
                "message": self.message, "notification_type": self.notification_type,
                "read": self.read, "created_at": isoformat(self.created_at),
                "read_at": isoformat(self.read_at), "chatbot_id": self.chatbot_id,
                "webhook": None if self.webhook_status is None else {
                    "status": self.webhook_status, "attempts": self.delivery_attempts,
                    "delivered_at": isoformat(self.delivered_at),
                    "error": self.delivery_error}}


class Faq(BaseModel):
    chatbot = ForeignKeyField(Chatbot, backref="faqs", on_delete="CASCADE",
                              column_name="chatbot_id")
    question = TextField()
    answer = TextField()
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    def to_dict(self) -> dict:
        return {"id": str(self.id), "chatbot_id": self.chatbot_id, "question": self.question,
                "answer": self.answer, "created_at": isoformat(self.created_at),
                "updated_at": isoformat(self.updated_at)}


class CustomIntent(BaseModel):
    chatbot = ForeignKeyField(Chatbot, backref="intents", on_delete="CASCADE",
                              column_name="chatbot_id")
    name = CharField(max_length=64)
    examples = TextField()
    responses = TextField()
    created_at = DateTimeField(default=utcnow)

    def to_dict(self) -> dict:
        return {"id": str(self.id), "chatbot_id": self.chatbot_id, "name": self.name,
                "examples": json.loads(self.examples), "responses": json.loads(self.responses),
                "created_at": isoformat(self.created_at)}


class Conversation(BaseModel):
    id = CharField(primary_key=True, max_length=32)
    chatbot = ForeignKeyField(Chatbot, backref="conversations", on_delete="CASCADE",
                              column_name="chatbot_id")
    session_id = CharField(max_length=64)
    message_count = IntegerField(default=0)
    started_at = DateTimeField(default=utcnow)
    last_message_at = DateTimeField(default=utcnow)

    def to_dict(self) -> dict:
        return {"id": self.id, "chatbot_id": self.chatbot_id, "session_id": self.session_id,
                "message_count": self.message_count, "started_at": isoformat(self.started_at),
                "last_message_at": isoformat(self.last_message_at)}


class Message(BaseModel):
    id = CharField(primary_key=True, max_length=32)
    conversation = ForeignKeyField(Conversation, backref="messages", on_delete="CASCADE",
                                   column_name="conversation_id")
    chatbot_id = CharField(max_length=64)
    role = CharField(max_length=8)
    text = TextField()
    intent = CharField(max_length=64, null=True)
    answer_source = CharField(max_length=16, null=True)
    confidence = FloatField(null=True)
    sources = TextField(null=True)
    latency_ms = FloatField(null=True)
    created_at = DateTimeField(default=utcnow)

    def to_dict(self) -> dict:
        return {"id": self.id, "conversation_id": self.conversation_id, "role": self.role,
                "text": self.text, "intent": self.intent, "answer_source": self.answer_source,
                "confidence": self.confidence,
                "sources": json.loads(self.sources) if self.sources else [],
                "latency_ms": self.latency_ms, "created_at": isoformat(self.created_at)}


class UserAction(BaseModel):
    chatbot_id = CharField(max_length=64)
    session_id = CharField(max_length=64)
    message_id = CharField(max_length=32, null=True)
    action = CharField(max_length=32)
    value = TextField(null=True)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(null=True, default=utcnow)


class ScheduleJob(BaseModel):
    """A periodic job: which task to enqueue, when (crontab, UTC) and with what."""
    name = CharField(primary_key=True, max_length=64)
    task = CharField(max_length=100)
    crontab = CharField(max_length=200)
    args = TextField(default="[]")
    enabled = BooleanField(default=True)
    no_overlap = BooleanField(default=True)
    description = TextField(default="")
    last_slot = DateTimeField(null=True)  # newest slot handled (run, skipped or passed by an edit)
    last_run = DateTimeField(null=True)
    last_status = CharField(max_length=20, null=True)
    last_task_id = CharField(max_length=64, null=True)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    @property
    def args_list(self) -> list:
        return json.loads(self.args)


class ScheduleRun(BaseModel):
    """One (job, slot): unique, so that only one scheduler enqueues it."""
    job = CharField(max_length=64)
    slot = DateTimeField()
    status = CharField(max_length=20)  # CLAIMED, then ENQUEUED | SKIPPED | ERROR
    task_id = CharField(max_length=64, null=True)
    detail = TextField(default="")
    scheduler = CharField(max_length=200, default="")  # host:pid of the one that claimed it
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("job", "slot"), True),)


class AnalyticsDaily(BaseModel):
    """One bot's numbers for one UTC day (rebuilt by update_analytics)."""
    chatbot_id = CharField(max_length=64)
    day = DateField()
    messages = IntegerField(default=0)
    conversations = IntegerField(default=0)
    sessions = IntegerField(default=0)
    fallbacks = IntegerField(default=0)
    fallback_rate = FloatField(default=0.0)
    avg_latency_ms = FloatField(null=True)
    p95_latency_ms = FloatField(null=True)
    intents = TextField(default="{}")
    answer_sources = TextField(default="{}")
    helpful = IntegerField(default=0)
    not_helpful = IntegerField(default=0)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "analytics_daily"


class AnalyticsReport(BaseModel):
    chatbot_id = CharField(max_length=64)
    period = CharField(max_length=8)
    report = TextField()
    generated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "analytics_report"


class HealthSample(BaseModel):
    checked_at = DateTimeField(default=utcnow, index=True)
    status = CharField(max_length=16)
    pending = IntegerField(null=True)
    scheduled = IntegerField(null=True)
    running = IntegerField(null=True)
    result = TextField()

    class Meta:
        table_name = "health_sample"


class SystemReport(BaseModel):
    created_at = DateTimeField(default=utcnow, index=True)
    report = TextField()

    class Meta:
        table_name = "system_report"


class AnalyticsDirty(BaseModel):
    """A (bot, day) whose rollup must be rebuilt: marked when a turn or a feedback
    is written, whatever its timestamp, so late writes are never missed."""
    chatbot_id = CharField(max_length=64)
    day = DateField()

    class Meta:
        table_name = "analytics_dirty"
        primary_key = False
        indexes = ((("chatbot_id", "day"), True),)


def mark_dirty(pairs) -> None:
    """Mark (bot, day) pairs for the next update_analytics (in the caller's transaction)."""
    rows = [{"chatbot_id": bot, "day": day} for bot, day in set(pairs)]
    if rows:
        AnalyticsDirty.insert_many(rows).on_conflict_ignore().execute()


class OpsState(BaseModel):
    """Small named values the operations tasks keep between runs (watermarks)."""
    key = CharField(primary_key=True, max_length=64)
    value = TextField()
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "ops_state"


class WebSession(BaseModel):
    """A dashboard login. ``id`` is an HMAC (keyed by the admin token) of the secret
    in the browser's cookie: the table never holds a usable cookie, and a new admin
    token matches none of the old rows. Logging out deletes the row."""
    id = CharField(primary_key=True, max_length=64)
    created_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField(index=True)

    class Meta:
        table_name = "web_session"
