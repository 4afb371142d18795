"""A chunk may hold one vector per model (key: chunk and model), and a bot's
``vector_version`` gets an ``epoch`` that a rebuild changes, so every process
reloads the vectors it holds instead of reading only the newer ones.

0014 keyed vectors by chunk alone: two processes on different models replaced
each other's vectors. Its vectors were stored under the model file's hash,
which no process reads since models are named by their recipe (see
``Embedder.model_id``: "<sha>-q8"): they are not copied, and the next vector
build embeds those chunks again.
"""
from peewee import PostgresqlDatabase


def up(migrator, db):
    blob = "bytea" if isinstance(db, PostgresqlDatabase) else "blob"
    db.execute_sql("drop table if exists chunk_vector_0015")
    db.execute_sql(
        "create table chunk_vector_0015 ("
        "chunk_id integer not null references chunk (id) on delete cascade, "
        "chatbot_id varchar(64) not null, model varchar(16) not null, "
        "version integer not null, vector %s not null, primary key (chunk_id, model))"
        % blob)
    db.execute_sql("insert into chunk_vector_0015 (chunk_id, chatbot_id, model, version, vector) "
                   "select chunk_id, chatbot_id, model, version, vector from chunk_vector "
                   "where replace(model, '-', '') <> model")  # a named model's id has a '-'
    db.execute_sql("drop table chunk_vector")
    db.execute_sql("alter table chunk_vector_0015 rename to chunk_vector")
    if isinstance(db, PostgresqlDatabase):  # the names a table made as chunk_vector has
        db.execute_sql("alter table chunk_vector rename constraint chunk_vector_0015_pkey "
                       "to chunk_vector_pkey")
        db.execute_sql("alter table chunk_vector rename constraint "
                       "chunk_vector_0015_chunk_id_fkey to chunk_vector_chunk_id_fkey")
    db.execute_sql("create index if not exists chunk_vector_bot_version "
                   "on chunk_vector (chatbot_id, version)")
    db.execute_sql("alter table vector_version add column epoch integer not null default 0")
