"""The registered task set. Every function in ALL becomes a task of the same name."""
from botlite.tasks.analytics import (generate_analytics_report, process_user_action,
                                     update_analytics)
from botlite.tasks.expiry import expire_results
from botlite.tasks.ingest import (process_document, recover_sources, resync_websites,
                                  scrape_website)
from botlite.tasks.maintenance import (backup_data, cleanup_old_data, cleanup_temp_files,
                                       generate_reports, health_check)
from botlite.tasks.notify import notify_source_failed, notify_source_ready, send_notification
from botlite.tasks.vectors import embed_chunks

ALL = (health_check, process_document, scrape_website, resync_websites, recover_sources,
       send_notification,
       notify_source_ready, notify_source_failed, process_user_action, update_analytics,
       generate_analytics_report, cleanup_old_data, cleanup_temp_files, backup_data,
       generate_reports, expire_results, embed_chunks)

# Their first retry waits BOTLITE_WEBHOOK_RETRY_DELAY (they deliver webhooks).
WEBHOOK_TASKS = (send_notification, notify_source_ready, notify_source_failed)


def register_all(runner, webhook_retry_delay: float | None = None) -> None:
    for fn in ALL:
        if fn in WEBHOOK_TASKS and webhook_retry_delay is not None:
            runner.register(fn, retry_delay=webhook_retry_delay)
        else:
            runner.register(fn)
