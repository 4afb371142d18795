"""Five-field crontab expressions: parse, match, and find the next or latest slot.

``Crontab("*/5 * * * *")`` understands what cron users write: ``*``, numbers,
ranges ``a-b``, steps ``*/n`` and ``a-b/n``, lists ``a,b``, month and weekday
names (``jan``, ``mon``), weekday ``7`` for Sunday, and the macros ``@hourly``,
``@daily``, ``@weekly``, ``@monthly``, ``@yearly``. Like Vixie cron, when both
day of month and day of week are restricted, a day matching either one is due.
Times are naive UTC datetimes at minute resolution.

Huey's ``crontab()`` only answers "is this minute due?"; a schedule that shows
``next_run`` and catches up after downtime also needs the next and the latest
due minute, found here field by field rather than minute by minute.
"""
from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31),
          ("month", 1, 12), ("day of week", 0, 6))
NAMES = {
    3: {name: i + 1 for i, name in enumerate(
        "jan feb mar apr may jun jul aug sep oct nov dec".split())},
    4: {name: i for i, name in enumerate("sun mon tue wed thu fri sat".split())},
}
MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
          "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
          "@hourly": "0 * * * *"}
DIGITS = re.compile(r"[0-9]+")
SEARCH_DAYS = 28 * 366 + 1  # the calendar repeats every 28 years (within a century)


class CronError(ValueError):
    """A crontab expression that cannot be parsed; names the field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__("%s: %s" % (field, message))
        self.field = field


@dataclass(frozen=True)
class Crontab:
    expression: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool  # day of month starts with "*" (as in Vixie cron, "*/2" too)
    any_weekday: bool  # day of week starts with "*"

    @classmethod
    def parse(cls, expression: str) -> "Crontab":
        if not isinstance(expression, str) or not expression.strip():
            raise CronError("crontab", "must be five fields: minute hour day month weekday")
        text = " ".join(expression.split())
        fields = MACROS.get(text.lower(), text).split(" ")
        if len(fields) != 5:
            raise CronError("crontab", "must be five fields (minute hour day month weekday), "
                                       "got %d in %r" % (len(fields), text))
        sets = [_parse_field(i, value) for i, value in enumerate(fields)]
        weekdays = frozenset(d % 7 for d in sets[4])
        return cls(text, tuple(sorted(sets[0])), tuple(sorted(sets[1])), frozenset(sets[2]),
                   frozenset(sets[3]), weekdays, fields[2].startswith("*"),
                   fields[4].startswith("*"))

    def day_matches(self, day: datetime.date) -> bool:
        if day.month not in self.months:
            return False
        in_month = day.day in self.days
        in_week = (day.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return in_month and in_week
        return in_month or in_week

    def matches(self, when: datetime.datetime) -> bool:
        return (when.minute in self.minutes and when.hour in self.hours
                and self.day_matches(when.date()))

    def next_after(self, when: datetime.datetime) -> datetime.datetime | None:
        """The first due minute strictly after ``when``."""
        start = _floor(when) + datetime.timedelta(minutes=1)
        day = start.date()
        for offset in range(SEARCH_DAYS):
            current = day + datetime.timedelta(days=offset)
            if not self.day_matches(current):
                continue
            for hour in self.hours:
                if offset == 0 and hour < start.hour:
                    continue
                for minute in self.minutes:
                    if offset == 0 and hour == start.hour and minute < start.minute:
                        continue
                    return datetime.datetime.combine(current, datetime.time(hour, minute))
        return None

    def latest_at_or_before(self, when: datetime.datetime,
                            not_before: datetime.datetime | None = None
                            ) -> datetime.datetime | None:
        """The newest due minute at or before ``when`` (and after ``not_before``)."""
        end = _floor(when)
        day = end.date()
        for offset in range(SEARCH_DAYS):
            current = day - datetime.timedelta(days=offset)
            if not_before is not None and current < not_before.date():
                return None
            if not self.day_matches(current):
                continue
            for hour in reversed(self.hours):
                if offset == 0 and hour > end.hour:
                    continue
                for minute in reversed(self.minutes):
                    if offset == 0 and hour == end.hour and minute > end.minute:
                        continue
                    slot = datetime.datetime.combine(current, datetime.time(hour, minute))
                    if not_before is not None and slot <= not_before:
                        return None
                    return slot
        return None

    def next_runs(self, when: datetime.datetime, count: int) -> list[datetime.datetime]:
        runs: list[datetime.datetime] = []
        while len(runs) < count:
            nxt = self.next_after(runs[-1] if runs else when)
            if nxt is None:
                break
            runs.append(nxt)
        return runs


def _floor(when: datetime.datetime) -> datetime.datetime:
    if when.tzinfo is not None:
        when = when.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return when.replace(second=0, microsecond=0)


def _number(index: int, text: str) -> int:
    name, low, high = FIELDS[index]
    value = NAMES.get(index, {}).get(text.lower())
    if value is None:
        if not DIGITS.fullmatch(text):
            raise CronError(name, "%r is not a number%s" % (
                text, " or a name" if index in NAMES else ""))
        # Past 2 digits no field fits (and 5,000 digits do not even convert).
        value = int(text) if len(text.lstrip("0")) <= 2 else None
    top = 7 if index == 4 else high  # 7 is Sunday too
    if value is None or not low <= value <= top:
        raise CronError(name, "%s is out of range %d-%d" % (
            value if value is not None else _cut(text), low, top))
    return value


def _cut(text: str, limit: int = 12) -> str:
    """``text`` for an error message: at most ``limit`` characters of it."""
    return text if len(text) <= limit else text[:limit] + "…"


def _parse_field(index: int, field: str) -> set[int]:
    name, low, high = FIELDS[index]
    values: set[int] = set()
    for part in field.split(","):
        if not part:
            raise CronError(name, "empty item in %r" % field)
        base, _, step_text = part.partition("/")
        step = 1
        if step_text or part.endswith("/"):
            if not DIGITS.fullmatch(step_text) or not step_text.strip("0"):
                raise CronError(name, "step %r must be a whole number above 0"
                                % _cut(step_text))
            if len(step_text.lstrip("0")) > 4:  # 5,000 digits do not even convert
                raise CronError(name, "step %s is larger than the field's range %d-%d"
                                % (_cut(step_text), low, high))
            step = int(step_text)
        if base == "*":
            first, last = low, high
        elif "-" in base:
            first_text, _, last_text = base.partition("-")
            first, last = _number(index, first_text), _number(index, last_text)
            if first > last:
                raise CronError(name, "range %r runs backwards" % base)
        else:
            first = _number(index, base)
            last = high if step_text else first
        values.update(range(first, last + 1, step))
    if not values:
        raise CronError(name, "%r matches no value" % field)
    return values
