"""One source per content (files) or URL (websites) per bot, even under concurrent uploads."""


def up(migrator, db):
    db.execute_sql("create unique index if not exists source_unique_content on source "
                   "(chatbot_id, content_hash) where content_hash is not null")
    db.execute_sql("create unique index if not exists source_unique_url on source "
                   "(chatbot_id, url) where url is not null")
