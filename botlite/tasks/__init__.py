"""The registered task set. Every function in ALL becomes a task of the same name."""
from botlite.tasks.analytics import process_user_action
from botlite.tasks.expiry import expire_results
from botlite.tasks.ingest import process_document, resync_websites, scrape_website
from botlite.tasks.maintenance import health_check
from botlite.tasks.notify import notify_source_failed, notify_source_ready, send_notification

ALL = (health_check, process_document, scrape_website, resync_websites, send_notification,
       notify_source_ready, notify_source_failed, process_user_action, expire_results)


def register_all(runner) -> None:
    for fn in ALL:
        runner.register(fn)
