"""Chatbots."""
import datetime

from peewee import CharField, DateTimeField, Model, TextField


def up(migrator, db):
    class Chatbot(Model):
        id = CharField(primary_key=True, max_length=64)
        name = CharField(max_length=200)
        description = TextField(default="")
        greeting = TextField(default="")
        fallback_message = TextField(default="")
        created_at = DateTimeField(default=datetime.datetime.utcnow)
        updated_at = DateTimeField(default=datetime.datetime.utcnow)

        class Meta:
            database = db
            table_name = "chatbot"

    db.create_tables([Chatbot])
