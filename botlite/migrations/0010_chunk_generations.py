"""Chunk generations: a source's chunks are replaced without a long write lock.

``source.generation`` names the chunks search shows (``chunk.generation`` equal
to it); a run writes its chunks under a new generation in small transactions,
``source.staging`` holding its claim, then flips ``source.generation`` in one
short transaction and deletes the older chunks in batches (knowledge/sources.py).
Existing chunks and sources start at generation 0, so they stay visible.
"""


def up(migrator, db):
    db.execute_sql("alter table source add column generation integer not null default 0")
    db.execute_sql("alter table source add column staging integer")
    db.execute_sql("alter table chunk add column generation integer not null default 0")
    db.execute_sql("create index if not exists chunk_source_generation "
                   "on chunk (source_id, generation)")
