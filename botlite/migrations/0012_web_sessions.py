"""Dashboard sessions kept on the server, so logging out ends a session for good."""
from peewee import CharField, DateTimeField, Model


def up(migrator, db):
    class WebSession(Model):
        id = CharField(primary_key=True, max_length=64)
        created_at = DateTimeField()
        expires_at = DateTimeField(index=True)

        class Meta:
            database = db
            table_name = "web_session"

    db.create_tables([WebSession], safe=True)
