"""Chat: FAQs, custom intents, conversations, messages, user actions."""
import datetime

from peewee import (CharField, DateTimeField, FloatField, ForeignKeyField, IntegerField, Model,
                    TextField)


def up(migrator, db):
    now = datetime.datetime.utcnow

    class Base(Model):
        class Meta:
            database = db

    class Chatbot(Base):
        id = CharField(primary_key=True, max_length=64)

        class Meta:
            table_name = "chatbot"

    class Faq(Base):
        chatbot = ForeignKeyField(Chatbot, on_delete="CASCADE", column_name="chatbot_id")
        question = TextField()
        answer = TextField()
        created_at = DateTimeField(default=now)
        updated_at = DateTimeField(default=now)

        class Meta:
            table_name = "faq"

    class CustomIntent(Base):
        chatbot = ForeignKeyField(Chatbot, on_delete="CASCADE", column_name="chatbot_id")
        name = CharField(max_length=64)
        examples = TextField()   # JSON list
        responses = TextField()  # JSON list
        created_at = DateTimeField(default=now)

        class Meta:
            table_name = "custom_intent"
            indexes = ((("chatbot", "name"), True),)

    class Conversation(Base):
        id = CharField(primary_key=True, max_length=32)
        chatbot = ForeignKeyField(Chatbot, on_delete="CASCADE", column_name="chatbot_id")
        session_id = CharField(max_length=64)
        message_count = IntegerField(default=0)
        started_at = DateTimeField(default=now)
        last_message_at = DateTimeField(default=now, index=True)

        class Meta:
            table_name = "conversation"
            indexes = ((("chatbot", "session_id"), True),)

    class Message(Base):
        id = CharField(primary_key=True, max_length=32)
        conversation = ForeignKeyField(Conversation, on_delete="CASCADE",
                                       column_name="conversation_id")
        chatbot_id = CharField(max_length=64)
        role = CharField(max_length=8)            # user | bot
        text = TextField()
        intent = CharField(max_length=64, null=True)
        answer_source = CharField(max_length=16, null=True)
        confidence = FloatField(null=True)
        sources = TextField(null=True)            # JSON list
        latency_ms = FloatField(null=True)
        created_at = DateTimeField(default=now)

        class Meta:
            table_name = "message"
            indexes = ((("chatbot_id", "created_at"), False),
                       (("conversation", "created_at"), False))

    class UserAction(Base):
        chatbot_id = CharField(max_length=64)
        session_id = CharField(max_length=64)
        message_id = CharField(max_length=32, null=True)
        action = CharField(max_length=32)         # message | feedback
        value = TextField(null=True)
        created_at = DateTimeField(default=now)

        class Meta:
            table_name = "user_action"
            indexes = ((("chatbot_id", "created_at"), False),
                       (("message_id", "action"), True))

    db.create_tables([Faq, CustomIntent, Conversation, Message, UserAction])
