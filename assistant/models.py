"""The typed records of the answering side: a retrieved `Passage`, an `Answer` and its `Citation`s."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath
from typing import Any, ClassVar
from urllib.parse import urlsplit

# Answers whose confidence is under this are shown as uncertain (chat, CLI): in the reader's calibration on the
# dev sets (docs/quality.md), best sentences scored under 0.3 held the answer less than a third of the time.
LOW_CONFIDENCE = 0.3


@dataclass(frozen=True)
class ArticleRecord:
    """What the store knows of one article: its metadata, and (when asked for) its text and what cleaning removed."""

    id: str
    title: str
    source: str
    url: str
    published: str
    author: str
    path: str
    version: str
    text_hash: str
    chunks: int
    ingested_at: str = ""
    text: str = ""
    removed: tuple[str, ...] = ()
    captions: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    # Filled only when the text is asked for; `to_dict()` leaves them out otherwise.
    TEXT_FIELDS: ClassVar[tuple[str, ...]] = ("text", "removed", "captions")

    def to_dict(self, with_text: bool = False) -> dict[str, Any]:
        data = asdict(self)
        if not with_text:
            for key in self.TEXT_FIELDS:
                data.pop(key)
        return data


@dataclass(frozen=True)
class Passage:
    """A stored chunk as retrieval returns it; `text == article text[start:end]`."""

    chunk_id: str
    article_id: str
    text: str
    start: int
    end: int
    title: str = ""
    source: str = ""
    published: str = ""
    url: str = ""
    path: str = ""
    page: int | None = None
    kind: str = "body"
    score: float = 0.0

    @property
    def link(self) -> str:
        """The article's URL, or "" when it has none: never a file path, which means nothing to a reader elsewhere."""
        return "" if is_file_path(self.url) else self.url

    @property
    def file_name(self) -> str:
        """The name of the file the passage came from (`briefs.jsonl:2` for a record), without its folder."""
        return file_name(self.path)


@dataclass(frozen=True)
class Citation:
    """One numbered source of an answer: the passage and the exact sentence that supports the claim."""

    n: int
    article_id: str
    title: str
    source: str
    published: str
    url: str
    passage: str
    sentence: str
    start: int
    end: int
    page: int | None
    score: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AnswerSentence:
    """One sentence of an answer, the citation numbers it carries, and whether verification found support."""

    text: str
    citations: tuple[int, ...]
    support: float
    unsupported: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "citations": list(self.citations),
            "support": self.support,
            "unsupported": self.unsupported,
        }


@dataclass(frozen=True)
class Answer:
    """The result of a question: the shown `text` with `[n]` markers, its citations, and how it was made."""

    question: str
    text: str
    citations: list[Citation]
    abstained: bool
    timings: dict[str, float] = field(default_factory=dict)
    sentences: list[AnswerSentence] = field(default_factory=list)
    removed: list[AnswerSentence] = field(default_factory=list)
    closest: list[Passage] = field(default_factory=list)
    retrieved: list[Passage] = field(default_factory=list)
    rewritten_question: str = ""
    as_of: str = ""
    answerer: str = "extractive"
    # The extractive reader's probability that its answer sentence answers the question; None for an LLM.
    confidence: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form shared by `dossier ask --json`, the HTTP API and the eval reports."""
        return {
            "question": self.question,
            "text": self.text,
            "citations": [citation.to_dict() for citation in self.citations],
            "abstained": self.abstained,
            "timings": self.timings,
            "sentences": [sentence.to_dict() for sentence in self.sentences],
            "removed": [sentence.to_dict() for sentence in self.removed],
            "closest": [_passage_dict(passage) for passage in self.closest],
            "retrieved": [_passage_dict(passage) for passage in self.retrieved],
            "rewritten_question": self.rewritten_question,
            "as_of": self.as_of,
            "answerer": self.answerer,
            "confidence": self.confidence,
        }


def _passage_dict(passage: Passage) -> dict[str, Any]:
    """A passage's JSON: its file by name only, so answers never tell where the server keeps its files."""
    return {**asdict(passage), "url": passage.link, "path": passage.file_name}


def is_file_path(url: str) -> bool:
    """Whether an article's `url` is in fact a file path (no scheme, or `file:`) rather than a web address."""
    return bool(url) and urlsplit(url.strip()).scheme.lower() in {"", "file"}


def file_name(path: str) -> str:
    """The last part of a stored path (`/srv/dossier/uploads/x.txt` -> `x.txt`), for showing a file without its folder."""
    return PurePosixPath(path.replace("\\", "/")).name if path else ""
