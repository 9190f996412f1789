"""Reading time in questions: the assistant's `as_of` date and expressions like "this week" or "in June"."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from datetime import date, timedelta

from assistant.errors import BadQuestionError
from assistant.words import MONTHS, alternation

_DAY_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_MONTH_RE = re.compile(r"\bin\s+(" + alternation(frozenset(MONTHS)) + r")\b(?:\s+(\d{4}))?", re.I)


@dataclass(frozen=True)
class TimeWindow:
    """The period a question points at: articles inside it are preferred (never required)."""

    start: date
    end: date
    phrase: str


def parse_as_of(value: date | str | None) -> date:
    """The assistant's "today": a date, an ISO string, or None for the real today."""
    if value is None or value == "":
        return date.today()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError as exc:
        raise BadQuestionError(f"as_of {value!r} is not a date: use YYYY-MM-DD") from exc


def parse_day(value: date | str | None, field: str) -> date | None:
    """A day as written at a door (YYYY-MM-DD, or a `date`); None when blank. Anything else is refused, naming `field`.

    >>> parse_day(" 2024-06-01 ", "since"), parse_day("", "since")
    (datetime.date(2024, 6, 1), None)
    >>> parse_day("2024-02-30", "until")
    Traceback (most recent call last):
    assistant.errors.BadQuestionError: until: '2024-02-30' is not a date; use YYYY-MM-DD
    """
    if value is None or isinstance(value, date):
        return value
    text = value.strip()
    if not text:
        return None
    if _DAY_RE.fullmatch(text):
        with contextlib.suppress(ValueError):  # 2024-02-30 has the shape of a day but is none
            return date.fromisoformat(text)
    raise BadQuestionError(f"{field}: {value!r} is not a date; use YYYY-MM-DD")


def published_ordinal(published: str) -> int:
    """An article's `published` date as a day number (what the store and the lexical index filter on); 0 when unknown.

    >>> published_ordinal("2024-06-01") == date(2024, 6, 1).toordinal(), published_ordinal(""), published_ordinal("soon")
    (True, 0, 0)
    """
    try:
        return date.fromisoformat(published[:10]).toordinal() if published else 0
    except ValueError:
        return 0


def time_window(question: str, as_of: date) -> TimeWindow | None:
    """The window a question's time expression names, relative to `as_of`, or None when it names none.

    >>> time_window("What happened yesterday?", date(2024, 6, 6))
    TimeWindow(start=datetime.date(2024, 6, 5), end=datetime.date(2024, 6, 5), phrase='yesterday')
    """
    text = question.lower()
    relative = [
        (r"\byesterday\b", 1, 1),
        (r"\btoday\b|\bthis morning\b|\btonight\b", 0, 0),
        (r"\bthis week\b|\bthis past week\b|\bthe past week\b|\bthe last few days\b", 7, 0),
        (r"\blast week\b", 14, 7),
        (r"\bthis weekend\b|\blast weekend\b", 7, 0),
        (r"\bthis month\b|\bthe past month\b", 31, 0),
        (r"\blast month\b", 62, 28),
        (r"\brecent(ly)?\b|\blatest\b|\bnewly\b", 21, 0),
        (r"\bthis year\b", 366, 0),
    ]
    for pattern, back, forward_gap in relative:
        match = re.search(pattern, text)
        if match:
            return TimeWindow(as_of - timedelta(days=back), as_of - timedelta(days=forward_gap), match.group(0))
    month = _MONTH_RE.search(question)
    if month:
        number = MONTHS[month.group(1).lower()]
        year = int(month.group(2)) if month.group(2) else (as_of.year if number <= as_of.month else as_of.year - 1)
        start = date(year, number, 1)
        end = date(year + number // 12, number % 12 + 1, 1) - timedelta(days=1)
        return TimeWindow(start, min(end, as_of), month.group(0))
    return None


def human_date(value: str | date) -> str:
    """`2024-06-06` -> `6 June 2024` (as written in answers)."""
    day = value if isinstance(value, date) else date.fromisoformat(value[:10])
    return f"{day.day} {day.strftime('%B')} {day.year}"
