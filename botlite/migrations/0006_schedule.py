"""The periodic schedule, kept in the database: jobs and the slots they ran."""
import datetime

from peewee import BooleanField, CharField, DateTimeField, Model, TextField


def up(migrator, db):
    now = datetime.datetime.utcnow

    class Base(Model):
        class Meta:
            database = db

    class ScheduleJob(Base):
        name = CharField(primary_key=True, max_length=64)
        task = CharField(max_length=100)
        crontab = CharField(max_length=200)
        args = TextField(default="[]")  # JSON list
        enabled = BooleanField(default=True)
        no_overlap = BooleanField(default=True)
        description = TextField(default="")
        last_slot = DateTimeField(null=True)
        last_run = DateTimeField(null=True)
        last_status = CharField(max_length=20, null=True)
        last_task_id = CharField(max_length=64, null=True)
        created_at = DateTimeField(default=now)
        updated_at = DateTimeField(default=now)

        class Meta:
            table_name = "schedule_job"

    class ScheduleRun(Base):
        job = CharField(max_length=64)
        slot = DateTimeField()
        status = CharField(max_length=20)
        task_id = CharField(max_length=64, null=True)
        detail = TextField(default="")
        scheduler = CharField(max_length=200, default="")
        created_at = DateTimeField(default=now, index=True)

        class Meta:
            table_name = "schedule_run"
            indexes = ((("job", "slot"), True),)

    db.create_tables([ScheduleJob, ScheduleRun], safe=True)
