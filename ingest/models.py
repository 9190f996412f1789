"""The typed records that flow through ingest: an `Article` read from a file, the `Chunk`s cut from it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields, replace
from functools import cached_property

CAPTIONS_HEADER = "Photo captions:"


@dataclass(frozen=True)
class Article:
    """One news article, as read from a file and cleaned.

    `text` is the cleaned body; `removed` keeps the boilerplate lines cleaning took out (for
    `dossier show ID --raw`), `captions` the photo captions kept apart from the body, and `pages`
    the start offset of each PDF page in `text` (empty for other formats).
    """

    id: str
    title: str
    text: str
    source: str = ""
    url: str = ""
    published: str = ""  # ISO date, YYYY-MM-DD, or "" when unknown
    author: str = ""
    path: str = ""
    removed: tuple[str, ...] = ()
    captions: tuple[str, ...] = ()
    pages: tuple[int, ...] = ()
    notes: tuple[str, ...] = ()  # what the loader had to repair, e.g. a guessed encoding

    @cached_property
    def version(self) -> str:
        """Hash of what ingest stores for the article: a change here means its chunks must be replaced."""
        parts = [self.title, self.text, self.source, self.url, self.published, self.author]
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]

    @cached_property
    def text_hash(self) -> str:
        """Hash of the body alone: two files with the same text are duplicates whatever their names."""
        return hashlib.sha256(" ".join(self.text.split()).encode()).hexdigest()[:16]

    @property
    def body_end(self) -> int:
        """Where the prose ends: the caption section (if any) follows it."""
        if not self.captions:
            return len(self.text)
        marker = self.text.rfind("\n\n" + CAPTIONS_HEADER + "\n\n")
        return marker if marker >= 0 else len(self.text)

    def page_at(self, offset: int) -> int | None:
        """The 1-based PDF page that holds character `offset`, or None for non-PDF articles."""
        if not self.pages:
            return None
        page = 1
        for number, start in enumerate(self.pages, start=1):
            if start <= offset:
                page = number
        return page


@dataclass(frozen=True)
class Chunk:
    """A passage of `article`: `text == article.text[start:end]`; `embed_text` adds a context header.

    `kind` is "body" or "caption"; `page` the PDF page it starts on (None for other formats). What the store keeps
    beside the chunk is made from these fields and the article's by the store (`assistant.store.chunk_metadata`).
    """

    article: Article
    index: int
    text: str
    start: int
    end: int
    embed_text: str
    kind: str = "body"
    page: int | None = None

    @property
    def article_id(self) -> str:
        return self.article.id

    @property
    def version(self) -> str:
        """The article's `version`: chunks of another version are an old copy of the article."""
        return self.article.version


@dataclass(frozen=True)
class ArticleFields:
    """Fields given beside a file (the chat's upload form) that replace what the file says; "" keeps the file's.

    They are applied to every article the file holds, before its chunks and hashes are made, so a new title
    or date is searched and shown like one from the file's own `key: value` header. Checked by the caller.

    >>> ArticleFields(title="Harbour seals counted", published="2024-07-02").apply(article)   # doctest: +SKIP
    """

    title: str = ""
    source: str = ""
    published: str = ""  # ISO date, YYYY-MM-DD
    url: str = ""

    def apply(self, article: Article) -> Article:
        given = {item.name: getattr(self, item.name) for item in fields(self) if getattr(self, item.name)}
        return replace(article, **given) if given else article

    def __bool__(self) -> bool:
        return any(getattr(self, item.name) for item in fields(self))


@dataclass(frozen=True)
class Skipped:
    """A file (or a line of one) that ingest could not use, and why, in words a user can act on."""

    path: str
    reason: str


@dataclass(frozen=True)
class Swept:
    """What a store's clean-up before an ingest found: leftover chunks it deleted, and stored articles some of
    whose current chunks are missing (to be written again rather than called unchanged)."""

    deleted: int = 0
    incomplete: frozenset[str] = frozenset()
