"""What a question may be restricted to: `Filters` (outlets, articles, a published-date range), parsed in one place.

Retrieval applies them on both sides (the lexical index's mask, the store's vector search); each side
translates them itself, so no filter dialect (a Chroma `where`) travels between modules.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from assistant.dates import parse_day
from assistant.errors import BadQuestionError


@dataclass(frozen=True)
class Filters:
    """Restrict retrieval to some outlets, some articles, or a published-date range (inclusive)."""

    sources: tuple[str, ...] = ()
    article_ids: tuple[str, ...] = ()
    since: date | None = None
    until: date | None = None

    @classmethod
    def parse(
        cls,
        sources: Iterable[str] = (),
        article_ids: Iterable[str] = (),
        since: date | str | None = None,
        until: date | str | None = None,
    ) -> Filters:
        """Filters from what a door received (CLI options, API fields, the chat's controls), read in this one place.

        Days are written YYYY-MM-DD (or given as dates); a blank one means no bound. A day that is not a date,
        or a range that ends before it starts, raises `BadQuestionError` naming the field and what to do.

        >>> Filters.parse(["Harbor Daily"], since="2024-06-01").describe()
        'outlet "Harbor Daily", from 2024-06-01'
        >>> Filters.parse(since="2024/06/01")
        Traceback (most recent call last):
        assistant.errors.BadQuestionError: since: '2024/06/01' is not a date; use YYYY-MM-DD
        """
        filters = cls(tuple(sources), tuple(article_ids), parse_day(since, "since"), parse_day(until, "until"))
        filters.check()
        return filters

    def check(self) -> None:
        """Refuse a date range that ends before it starts (it would match nothing, silently)."""
        if self.since and self.until and self.since > self.until:
            raise BadQuestionError(
                f"filters: since {self.since.isoformat()} is after until {self.until.isoformat()}: swap the two dates"
            )

    def describe(self) -> str:
        """The filters in words, for messages: 'outlet "Harbor Daily", from 2024-06-01'.

        >>> Filters(sources=("Harbor Daily",), since=date(2024, 6, 1)).describe()
        'outlet "Harbor Daily", from 2024-06-01'
        """
        parts = []
        if self.sources:
            parts.append(
                ("outlet " if len(self.sources) == 1 else "outlets ") + ", ".join(f'"{s}"' for s in self.sources)
            )
        if self.article_ids:
            parts.append(("article " if len(self.article_ids) == 1 else "articles ") + ", ".join(self.article_ids))
        if self.since:
            parts.append(f"from {self.since.isoformat()}")
        if self.until:
            parts.append(f"until {self.until.isoformat()}")
        return ", ".join(parts)
