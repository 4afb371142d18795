"""The app's tables. The schema itself is created by botlite/migrations."""
from __future__ import annotations

import json

from peewee import CharField, DateTimeField, IntegerField, Model, TextField

from botlite.db import database
from botlite.timeutil import isoformat, utcnow


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


DEFAULT_BOT_ID = "default"
