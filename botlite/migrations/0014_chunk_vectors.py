"""Sentence embeddings of chunks, for hybrid retrieval (knowledge/vectors.py).

A vector belongs to its chunk (deleted with it) and is stored as float16 bytes;
``vector_version`` counts each bot's vector writes so a serving process reloads
only what is new.
"""
from peewee import PostgresqlDatabase


def up(migrator, db):
    blob = "bytea" if isinstance(db, PostgresqlDatabase) else "blob"
    db.execute_sql(
        "create table if not exists chunk_vector ("
        "chunk_id integer not null primary key references chunk (id) on delete cascade, "
        "chatbot_id varchar(64) not null, model varchar(16) not null, "
        "version integer not null, vector %s not null)" % blob)
    db.execute_sql("create index if not exists chunk_vector_bot_version "
                   "on chunk_vector (chatbot_id, version)")
    db.execute_sql("create table if not exists vector_version ("
                   "chatbot_id varchar(64) not null primary key, version integer not null)")
