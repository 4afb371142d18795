"""The (bot, day) pairs whose analytics rollup is out of date, marked by whatever
writes a turn or a feedback, in the same transaction."""
from peewee import CharField, DateField, Model


def up(migrator, db):
    class AnalyticsDirty(Model):
        chatbot_id = CharField(max_length=64)
        day = DateField()

        class Meta:
            database = db
            table_name = "analytics_dirty"
            primary_key = False
            indexes = ((("chatbot_id", "day"), True),)

    db.create_tables([AnalyticsDirty], safe=True)
