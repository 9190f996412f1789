"""The typed records of the answering side: a retrieved `Passage`, an `Answer` and its `Citation`s.

A field's `description` (in its metadata) documents it in the HTTP API's schema, which is derived from these
records (`assistant.api`), so what the API documents and what it sends are one definition.
"""

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
    url: str = field(
        default="", metadata={"description": "The article's URL, or empty when it has none (never a file path)."}
    )
    path: str = field(
        default="",
        metadata={"description": "The name of the article's file (`briefs.jsonl:2` for a record), without its folder."},
    )
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

    n: int = field(metadata={"description": "The [n] marker in the answer text."})
    article_id: str
    title: str
    source: str = field(metadata={"description": "The outlet."})
    published: str = field(metadata={"description": "YYYY-MM-DD, or empty."})
    url: str = field(metadata={"description": "The article's URL, or empty when it has none (never a file path)."})
    passage: str = field(metadata={"description": "The cited passage."})
    sentence: str = field(metadata={"description": "The exact sentence of the passage that supports the claim."})
    start: int = field(metadata={"description": "The sentence's start offset in the cleaned article text."})
    end: int = field(metadata={"description": "The sentence's end offset in the cleaned article text."})
    page: int | None = field(metadata={"description": "PDF page, or null."})
    score: float = field(metadata={"description": "Support of the claim by the passage, 0..1."})

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
    text: str = field(metadata={"description": "The answer with [n] markers (or the abstention message)."})
    citations: list[Citation]
    abstained: bool = field(metadata={"description": "True when the articles do not answer the question."})
    timings: dict[str, float] = field(default_factory=dict, metadata={"description": "Milliseconds per step."})
    sentences: list[AnswerSentence] = field(
        default_factory=list, metadata={"description": "The answer's sentences as verified."}
    )
    removed: list[AnswerSentence] = field(
        default_factory=list,
        metadata={"description": "Sentences removed because the cited passages do not support them."},
    )
    closest: list[Passage] = field(
        default_factory=list, metadata={"description": "On abstention: the closest passages."}
    )
    retrieved: list[Passage] = field(
        default_factory=list,
        metadata={
            "description": "Every passage retrieved for the question, best first: only with `include_retrieved: true`, otherwise empty."
        },
    )
    rewritten_question: str = field(
        default="", metadata={"description": "The standalone question searched for a follow-up, or empty."}
    )
    as_of: str = ""
    answerer: str = "extractive"
    confidence: float | None = field(
        default=None,
        metadata={
            "description": "Extractive answers: the reader's probability (0..1) that the answer sentence answers the question; null for LLM answers."
        },
    )

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
