"""Operations: webhook delivery on notifications, per-bot webhooks, analytics
rollups and reports, health samples, system reports, a small key-value table
for watermarks, and when a user action (feedback) last changed."""
import datetime

from peewee import (CharField, DateField, DateTimeField, FloatField, IntegerField, Model,
                    TextField)


def up(migrator, db):
    now = datetime.datetime.utcnow

    class Base(Model):
        class Meta:
            database = db

    class AnalyticsDaily(Base):
        chatbot_id = CharField(max_length=64)
        day = DateField()
        messages = IntegerField(default=0)
        conversations = IntegerField(default=0)
        sessions = IntegerField(default=0)
        fallbacks = IntegerField(default=0)
        fallback_rate = FloatField(default=0.0)
        avg_latency_ms = FloatField(null=True)
        p95_latency_ms = FloatField(null=True)
        intents = TextField(default="{}")           # JSON {intent: count}
        answer_sources = TextField(default="{}")    # JSON {source: count}
        helpful = IntegerField(default=0)
        not_helpful = IntegerField(default=0)
        updated_at = DateTimeField(default=now)

        class Meta:
            table_name = "analytics_daily"
            indexes = ((("chatbot_id", "day"), True),)

    class AnalyticsReport(Base):
        chatbot_id = CharField(max_length=64)
        period = CharField(max_length=8)
        report = TextField()                        # JSON
        generated_at = DateTimeField(default=now)

        class Meta:
            table_name = "analytics_report"
            indexes = ((("chatbot_id", "period"), True),)

    class HealthSample(Base):
        checked_at = DateTimeField(default=now, index=True)
        status = CharField(max_length=16)
        pending = IntegerField(null=True)
        scheduled = IntegerField(null=True)
        running = IntegerField(null=True)
        result = TextField()                        # JSON: the whole check

        class Meta:
            table_name = "health_sample"

    class SystemReport(Base):
        created_at = DateTimeField(default=now, index=True)
        report = TextField()                        # JSON

        class Meta:
            table_name = "system_report"

    class OpsState(Base):
        key = CharField(primary_key=True, max_length=64)
        value = TextField()                         # JSON
        updated_at = DateTimeField(default=now)

        class Meta:
            table_name = "ops_state"

    db.create_tables([AnalyticsDaily, AnalyticsReport, HealthSample, SystemReport, OpsState])
    migrator.migrate(
        migrator.add_column("chatbot", "webhook_url", TextField(null=True)),
        migrator.add_column("chatbot", "webhook_secret", TextField(null=True)),
        migrator.add_column("notification", "chatbot_id", CharField(max_length=64, null=True)),
        migrator.add_column("notification", "task_id", CharField(max_length=64, null=True)),
        migrator.add_column("notification", "content_hash",
                            CharField(max_length=64, null=True)),
        migrator.add_column("notification", "read_at", DateTimeField(null=True)),
        migrator.add_column("notification", "webhook_status",
                            CharField(max_length=16, null=True)),
        migrator.add_column("notification", "delivered_at", DateTimeField(null=True)),
        migrator.add_column("notification", "delivery_attempts", IntegerField(default=0)),
        migrator.add_column("notification", "delivery_error", TextField(null=True)),
        migrator.add_column("notification", "delivery_claimed_until",
                            DateTimeField(null=True)),
        migrator.add_index("notification", ("task_id",), True),
        migrator.add_index("notification", ("content_hash", "created_at"), False),
        migrator.add_index("notification", ("user_id", "read"), False),
        migrator.add_column("user_action", "updated_at", DateTimeField(null=True)),
        migrator.add_index("user_action", ("created_at",), False),
        migrator.add_index("message", ("created_at",), False),
        migrator.add_index("conversation", ("started_at",), False),
    )
    # Feedback changed since the last rollup (a visitor changing their mind).
    db.execute_sql("create index user_action_feedback_updated on user_action (updated_at) "
                   "where action = 'feedback'")
