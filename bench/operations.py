"""The operations tasks on a large chat log (default 100,000 turns over 90 days):
rollups (full, then incremental), an uncached and a cached 30-day report, an online
backup, and the retention cleanup (deleting the older two thirds) while a thread
logs a chat turn every 10 ms, against the same writes with nothing else going on
(how long a turn waits for the write lock). Prints one JSON line.

    python bench/operations.py [--turns 100000] [--days 90]
"""
import os
import sys

# As a script, this folder comes first on sys.path, and bench/queue.py would shadow
# the standard library's queue.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))  # this checkout's botlite

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

from botlite import analytics, backup, operations  # noqa: E402
from botlite.app import Botlite  # noqa: E402
from botlite.chat.engine import Reply  # noqa: E402
from botlite.chat.service import record_turn  # noqa: E402
from botlite.models import Conversation, Message  # noqa: E402
from botlite.settings import load_settings  # noqa: E402
from botlite.timeutil import utcnow  # noqa: E402

SOURCES = ["knowledge"] * 7 + ["intent", "faq", "fallback"]
QUESTIONS = ["How long does shipping take?", "Do you ship to Norway?", "refund policy",
             "opening hours", "Where is my order?", "Do you sell llamas?"]


def fill(turns, days, sessions=2000, prefix="s"):
    """``turns`` question/reply pairs spread over the last ``days`` days."""
    rng = random.Random(7)
    now = utcnow()
    conversations = {}
    rows = []
    for _ in range(turns):
        session = "%s%d" % (prefix, rng.randrange(sessions))
        at = now - datetime.timedelta(seconds=rng.uniform(600, days * 86400))
        conv = conversations.get(session)
        if conv is None:
            conv = conversations[session] = [uuid.uuid4().hex, at, at, 0]
        conv[1], conv[2], conv[3] = min(conv[1], at), max(conv[2], at), conv[3] + 2
        common = {"conversation": conv[0], "chatbot_id": "default", "created_at": at}
        source = rng.choice(SOURCES)
        rows.append(dict(common, id=uuid.uuid4().hex, role="user", text=rng.choice(QUESTIONS),
                         intent=None, answer_source=None, latency_ms=None))
        rows.append(dict(common, id=uuid.uuid4().hex, role="bot", text="answer",
                         intent="question", answer_source=source,
                         latency_ms=rng.uniform(2, 60)))
    Conversation.insert_many([
        {"id": cid, "chatbot": "default", "session_id": session, "started_at": first,
         "last_message_at": last, "message_count": count}
        for session, (cid, first, last, count) in conversations.items()]).execute()
    for start in range(0, len(rows), 5000):
        Message.insert_many(rows[start:start + 5000]).execute()


def timed(fn):
    started = time.perf_counter()
    value = fn()
    return value, round((time.perf_counter() - started) * 1000, 1)


def chat_writer(app, stop, waits):
    """Log a turn every 10 ms on its own connection; record how long each took."""
    reply = Reply(reply="ok", intent="question", answer_source="knowledge", confidence=0.5,
                  sources=[])
    with app.database.connection_context():
        while not stop.is_set():
            started = time.perf_counter()
            record_turn("default", "writer", "ping", reply, 1.0)
            waits.append((time.perf_counter() - started) * 1000)
            stop.wait(0.01)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=100000)
    parser.add_argument("--days", type=int, default=90)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        app = Botlite.open(load_settings({"data_dir": data_dir}, environ={}))
        try:
            with app.database.connection_context():
                _, fill_ms = timed(lambda: fill(args.turns, args.days))
                full, full_ms = timed(analytics.update_rollups)
                fill(100, 0.005, prefix="new")  # 100 turns minutes ago
                incremental, incremental_ms = timed(analytics.update_rollups)
                _, report_ms = timed(lambda: analytics.report("default", "30d", refresh=True))
                _, cached_ms = timed(lambda: analytics.report("default", "30d"))
            db_file = os.path.join(data_dir, "botlite.db")
            made, backup_ms = timed(lambda: backup.backup_one(
                "app", db_file, os.path.join(data_dir, "backups"), 2))
            stop, idle = threading.Event(), []
            writer = threading.Thread(target=chat_writer, args=(app, stop, idle))
            writer.start()
            time.sleep(3)  # the same writes with nothing else going on
            stop.set()
            writer.join()
            stop, waits = threading.Event(), []
            writer = threading.Thread(target=chat_writer, args=(app, stop, waits))
            writer.start()
            with app.database.connection_context():
                counts, cleanup_ms = timed(lambda: operations.cleanup_old_data(
                    app.runner, args.days // 3))
            stop.set()
            writer.join()
        finally:
            app.close()
    print(json.dumps({
        "bench": "operations", "turns": args.turns, "days": args.days,
        "fill_ms": fill_ms,
        "rollup_full_ms": full_ms, "rollup_full_days": full["days_updated"],
        "rollup_incremental_ms": incremental_ms,
        "rollup_incremental_days": incremental["days_updated"],
        "report_30d_uncached_ms": report_ms, "report_30d_cached_ms": cached_ms,
        "backup_ms": backup_ms, "backup_mb": round(made["bytes"] / 2 ** 20, 1),
        "cleanup_ms": cleanup_ms, "cleanup_deleted_messages": counts["messages"],
        "chat_write_idle_p50_ms": round(statistics.median(idle), 2),
        "chat_write_idle_max_ms": round(max(idle), 2),
        "chat_writes_during_cleanup": len(waits),
        "chat_write_p50_ms": round(statistics.median(waits), 2) if waits else None,
        "chat_write_max_ms": round(max(waits), 2) if waits else None,
    }))


if __name__ == "__main__":
    main()
