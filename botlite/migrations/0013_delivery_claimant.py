"""Which task holds a notification's delivery claim: the re-run of that task (its
worker killed mid-POST) takes the claim over instead of waiting out its margin."""
from peewee import CharField


def up(migrator, db):
    migrator.migrate(
        migrator.add_column("notification", "delivery_claimed_by",
                            CharField(max_length=64, null=True)))
