"""Chat analytics: daily rollups per bot, period reports, message feedback.

``update_rollups`` rebuilds the (bot, day) rows marked out of date by the
writers themselves (``analytics_dirty``: the chat turn log and feedback mark the
day of what they write, in the same transaction, however late they write it),
plus the days that got rows since its last run (a watermark kept in
``ops_state``, for rows written by other means), so each run is cheap and running
it twice changes nothing.
Rollups outlive the raw messages that ``cleanup_old_data`` deletes.
"""
from __future__ import annotations

import collections
import datetime
import json
import math

from peewee import fn

from botlite import validate
from botlite.chatbots import get_bot
from botlite.errors import BadRequest, NotFound
from botlite.db import write_transaction
from botlite.models import (AnalyticsDaily, AnalyticsDirty, AnalyticsReport, Conversation,
                            Message, OpsState, UserAction)
from botlite.timeutil import isoformat, utcnow

PERIODS = {"7d": 7, "30d": 30, "90d": 90}
REPORT_TTL = datetime.timedelta(hours=1)
# Rows are written with their timestamp a moment before they commit; re-reading
# this much before the watermark catches the ones that committed late.
WATERMARK_LAG = datetime.timedelta(minutes=10)
WATERMARK_KEY = "analytics_watermark"
TOP_N = 10


class InvalidPeriod(ValueError):
    pass


def parse_period(value: str | None) -> str:
    period = value or "30d"
    if period not in PERIODS:
        raise InvalidPeriod("period must be one of %s (not %r)" % (", ".join(PERIODS), period))
    return period


# -- rollups ---------------------------------------------------------------------------

def _as_date(value) -> datetime.date:
    if isinstance(value, datetime.datetime):
        return value.date()
    return value if isinstance(value, datetime.date) else datetime.date.fromisoformat(
        str(value)[:10])


def _bounds(day: datetime.date) -> tuple[datetime.datetime, datetime.datetime]:
    start = datetime.datetime.combine(day, datetime.time())
    return start, start + datetime.timedelta(days=1)


def p95(values: list[float]) -> float | None:
    """The nearest-rank 95th percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def touched_days(since: datetime.datetime | None) -> set[tuple[str, datetime.date]]:
    """(bot, day) pairs with messages, new conversations or feedback (new or
    changed; it counts on the day it was first given) since ``since``."""
    found = set()
    # (model, bot column, the day it counts on, when it last changed, filter)
    for model, bot, day, changed, extra in (
            (Message, Message.chatbot_id, Message.created_at, Message.created_at, None),
            (Conversation, Conversation.chatbot, Conversation.started_at,
             Conversation.started_at, None),
            (UserAction, UserAction.chatbot_id, UserAction.created_at, UserAction.updated_at,
             UserAction.action == "feedback")):
        query = model.select(bot, fn.date(day)).distinct()
        if since is not None:
            query = query.where(changed >= since - WATERMARK_LAG)
        if extra is not None:
            query = query.where(extra)
        found.update((bot_id, _as_date(value)) for bot_id, value in query.tuples())
    return found


def rollup_day(bot_id: str, day: datetime.date) -> dict:
    """Recompute one bot's numbers for one day and store them."""
    start, end = _bounds(day)
    replies = list(Message.select(Message.intent, Message.answer_source, Message.latency_ms,
                                  Message.conversation)
                   .where((Message.chatbot_id == bot_id) & (Message.role == "bot") &
                          (Message.created_at >= start) & (Message.created_at < end)).tuples())
    intents = collections.Counter(intent for intent, _, _, _ in replies if intent)
    sources = collections.Counter(source for _, source, _, _ in replies if source)
    latencies = [latency for _, _, latency, _ in replies if latency is not None]
    feedback = collections.Counter(value for (value,) in UserAction.select(UserAction.value).where(
        (UserAction.chatbot_id == bot_id) & (UserAction.action == "feedback") &
        (UserAction.created_at >= start) & (UserAction.created_at < end)).tuples())
    row = {
        "chatbot_id": bot_id, "day": day,
        "messages": len(replies),
        "conversations": Conversation.select().where(
            (Conversation.chatbot == bot_id) & (Conversation.started_at >= start) &
            (Conversation.started_at < end)).count(),
        # one conversation per (bot, session): the conversations active that day
        "sessions": len({conversation for _, _, _, conversation in replies}),
        "fallbacks": sources.get("fallback", 0),
        "fallback_rate": round(sources.get("fallback", 0) / len(replies), 4) if replies else 0.0,
        "avg_latency_ms": round(sum(latencies) / len(latencies), 2) if latencies else None,
        "p95_latency_ms": p95(latencies),
        "intents": json.dumps(dict(sorted(intents.items()))),
        "answer_sources": json.dumps(dict(sorted(sources.items()))),
        "helpful": feedback.get("helpful", 0),
        "not_helpful": feedback.get("not_helpful", 0),
        "updated_at": utcnow(),
    }
    (AnalyticsDaily.insert(**row)
     .on_conflict(conflict_target=[AnalyticsDaily.chatbot_id, AnalyticsDaily.day],
                  update={getattr(AnalyticsDaily, k): v for k, v in row.items()
                          if k not in ("chatbot_id", "day")})
     .execute())
    return row


def _get_state(key: str):
    row = OpsState.get_or_none(OpsState.key == key)
    return json.loads(row.value) if row is not None else None


def _set_state(key: str, value) -> None:
    (OpsState.insert(key=key, value=json.dumps(value), updated_at=utcnow())
     .on_conflict(conflict_target=[OpsState.key],
                  update={OpsState.value: json.dumps(value), OpsState.updated_at: utcnow()})
     .execute())


def _take_dirty() -> set[tuple[str, datetime.date]]:
    """The (bot, day) pairs marked by writers, unmarked now: a write that lands
    while they are rebuilt marks its day again for the next run."""
    with write_transaction():
        pairs = {(bot, _as_date(day)) for bot, day in
                 AnalyticsDirty.select(AnalyticsDirty.chatbot_id, AnalyticsDirty.day).tuples()}
        for bot, day in pairs:
            AnalyticsDirty.delete().where((AnalyticsDirty.chatbot_id == bot) &
                                          (AnalyticsDirty.day == day)).execute()
    return pairs


def update_rollups() -> dict:
    """Rebuild the rollups of every (bot, day) marked by a writer (the chat turn
    log, feedback) or touched since the last run."""
    started = utcnow()
    state = _get_state(WATERMARK_KEY)
    since = datetime.datetime.fromisoformat(state["at"]) if state else None
    days = sorted(_take_dirty() | touched_days(since))
    for bot_id, day in days:
        rollup_day(bot_id, day)
    _set_state(WATERMARK_KEY, {"at": started.isoformat()})
    return {"days_updated": len(days), "since": isoformat(since),
            "watermark": isoformat(started)}


# -- reports ----------------------------------------------------------------------------

def _top_questions(bot_id: str, start: datetime.datetime, fallback_only: bool) -> list[dict]:
    key = fn.LOWER(fn.TRIM(Message.text))
    count = fn.COUNT(Message.id)
    query = Message.select(fn.MIN(Message.text), count)
    if fallback_only:
        # From the (few) fallback replies to their questions: a turn's question and
        # reply share the conversation and the timestamp.
        reply = Message.alias()
        query = query.join(reply, on=((reply.conversation == Message.conversation) &
                                      (reply.created_at == Message.created_at))).where(
            (reply.chatbot_id == bot_id) & (reply.role == "bot") &
            (reply.answer_source == "fallback") & (reply.created_at >= start) &
            (Message.role == "user"))
    else:
        query = query.where((Message.chatbot_id == bot_id) & (Message.role == "user") &
                            (Message.created_at >= start))
    query = query.group_by(key).order_by(count.desc(), key).limit(TOP_N)
    return [{"question": text.strip(), "count": n} for text, n in query.tuples()]


def build_report(bot_id: str, period: str) -> dict:
    days = PERIODS[period]
    now = utcnow()
    last = now.date()
    first = last - datetime.timedelta(days=days - 1)
    start = datetime.datetime.combine(first, datetime.time())
    rows = {row.day if isinstance(row.day, datetime.date) else _as_date(row.day): row
            for row in AnalyticsDaily.select().where(
                (AnalyticsDaily.chatbot_id == bot_id) & (AnalyticsDaily.day >= first) &
                (AnalyticsDaily.day <= last))}
    daily, intents, sources = [], collections.Counter(), collections.Counter()
    for offset in range(days):
        day = first + datetime.timedelta(days=offset)
        row = rows.get(day)
        daily.append({
            "day": day.isoformat(),
            "messages": row.messages if row else 0,
            "conversations": row.conversations if row else 0,
            "sessions": row.sessions if row else 0,
            "fallback_rate": row.fallback_rate if row else 0.0,
            "avg_latency_ms": row.avg_latency_ms if row else None,
            "p95_latency_ms": row.p95_latency_ms if row else None,
            "helpful": row.helpful if row else 0,
            "not_helpful": row.not_helpful if row else 0,
        })
        if row:
            intents.update(json.loads(row.intents))
            sources.update(json.loads(row.answer_sources))
    messages = sum(d["messages"] for d in daily)
    fallbacks = sum(row.fallbacks for row in rows.values())
    weighted = [(r.avg_latency_ms, r.messages) for r in rows.values()
                if r.avg_latency_ms is not None and r.messages]
    latencies = [v for (v,) in Message.select(Message.latency_ms).where(
        (Message.chatbot_id == bot_id) & (Message.role == "bot") &
        (Message.created_at >= start) & Message.latency_ms.is_null(False)).tuples()]
    sessions = (Message.select(fn.COUNT(Message.conversation.distinct()))
                .where((Message.chatbot_id == bot_id) & (Message.role == "bot") &
                       (Message.created_at >= start)).scalar())
    return {
        "chatbot_id": bot_id, "period": period,
        "from": first.isoformat(), "to": last.isoformat(),
        "generated_at": isoformat(now), "expires_at": isoformat(now + REPORT_TTL),
        "totals": {
            "messages": messages,
            "conversations": sum(d["conversations"] for d in daily),
            "sessions": sessions or 0,
            "fallbacks": fallbacks,
            "fallback_rate": round(fallbacks / messages, 4) if messages else 0.0,
            "avg_latency_ms": round(sum(a * n for a, n in weighted) /
                                    sum(n for _, n in weighted), 2) if weighted else None,
            "p95_latency_ms": p95(latencies),
            "helpful": sum(d["helpful"] for d in daily),
            "not_helpful": sum(d["not_helpful"] for d in daily),
        },
        "intents": dict(intents.most_common()),
        "answer_sources": dict(sources.most_common()),
        "daily": daily,
        "top_questions": _top_questions(bot_id, start, fallback_only=False),
        "top_unanswered": _top_questions(bot_id, start, fallback_only=True),
    }


def report(bot_id: str, period: str, refresh: bool = False) -> dict:
    """The (bot, period) report: the stored one while younger than an hour,
    else a fresh one (rollups brought up to date first), stored."""
    cached = AnalyticsReport.get_or_none((AnalyticsReport.chatbot_id == bot_id) &
                                         (AnalyticsReport.period == period))
    if cached is not None and not refresh and cached.generated_at > utcnow() - REPORT_TTL:
        return dict(json.loads(cached.report), cached=True)
    update_rollups()
    fresh = build_report(bot_id, period)
    (AnalyticsReport.insert(chatbot_id=bot_id, period=period, report=json.dumps(fresh),
                            generated_at=utcnow())
     .on_conflict(conflict_target=[AnalyticsReport.chatbot_id, AnalyticsReport.period],
                  update={AnalyticsReport.report: json.dumps(fresh),
                          AnalyticsReport.generated_at: utcnow()})
     .execute())
    return dict(fresh, cached=False)


def report_for_request(bot_id: str, query) -> dict:
    """GET /api/chatbots/{bot}/analytics?period=&refresh="""
    get_bot(bot_id)
    try:
        period = parse_period(query.get("period"))
    except InvalidPeriod as exc:
        raise BadRequest(str(exc), code="invalid_field") from None
    refresh = validate.flag(query.get("refresh"), "refresh")
    return report(bot_id, period, refresh=refresh)


# -- feedback ---------------------------------------------------------------------------

def feedback(app, message_id: str, data: dict) -> dict:
    """A visitor's "was this helpful?" on a bot reply of their own session,
    recorded by process_user_action (queued only when it changes something)."""
    validate.reject_unknown(data, {"helpful", "session_id"})
    helpful = data.get("helpful")
    if not isinstance(helpful, bool):
        raise BadRequest("field 'helpful' must be true or false", code="invalid_field")
    session_id = validate.text(data, "session_id", required=True, max_length=64,
                               allow_blank=False)
    message = Message.get_or_none(Message.id == message_id)
    if message is None and app.turn_log.flush():  # a reply given moments ago: logged now
        message = Message.get_or_none(Message.id == message_id)
    conversation = (Conversation.get_or_none(Conversation.id == message.conversation_id)
                    if message is not None and message.role == "bot" else None)
    if conversation is None or conversation.session_id != session_id:
        # Someone else's reply looks the same as no reply at all.
        raise NotFound("no bot reply with id %r in this session" % message_id)
    value = "helpful" if helpful else "not_helpful"
    given = UserAction.get_or_none((UserAction.message_id == message.id) &
                                   (UserAction.action == "feedback"))
    if given is None or given.value != value:  # a repeated POST queues nothing
        app.runner.enqueue("process_user_action", [
            message.chatbot_id, session_id, message.id, "feedback", value])
    return {"message_id": message.id, "helpful": helpful}
