"""Per-bot widget settings: the sites allowed to embed it and a visitor rate limit."""
from peewee import IntegerField, TextField


def up(migrator, db):
    migrator.migrate(
        migrator.add_column("chatbot", "allowed_domains", TextField(default="[]")),
        migrator.add_column("chatbot", "rate_limit_per_minute", IntegerField(default=30)),
    )
