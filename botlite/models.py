"""The app's tables. The schema itself is created by botlite/migrations."""
from __future__ import annotations

import json

from peewee import (BigIntegerField, BooleanField, CharField, DateTimeField, FloatField,
                    ForeignKeyField,
                    IntegerField, Model, TextField)

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


class Notification(BaseModel):
    user_id = CharField(max_length=100, index=True)
    title = TextField()
    message = TextField()
    notification_type = CharField(max_length=50, default="info")
    read = BooleanField(default=False)
    dedup_key = CharField(max_length=128, null=True, unique=True)
    created_at = DateTimeField(default=utcnow, index=True)

    def to_dict(self) -> dict:
        return {"id": str(self.id), "user_id": self.user_id, "title": self.title,
                "message": self.message, "notification_type": self.notification_type,
                "read": self.read, "created_at": isoformat(self.created_at)}


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
