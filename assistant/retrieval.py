"""Hybrid retrieval: dense search in Chroma plus BM25 over the same chunks, fused by reciprocal rank.

Filters (source, article id, date range) and the `as_of` date apply to both sides; articles
published after `as_of` are never returned. Articles inside the time window a question names
("this week", "in June") and near `as_of` get a boost. The final list is diversified: no
near-identical passages, and at most `max_per_article` passages of one article in the first `k`.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import numpy as np

from assistant.dates import TimeWindow, time_window
from assistant.models import Passage
from assistant.store import Store
from assistant.text import terms

RRF_K = 60
CAPTION_WEIGHT = 0.5


@dataclass(frozen=True)
class Filters:
    """Restrict retrieval to some outlets, some articles, or a published-date range (inclusive)."""

    sources: tuple[str, ...] = ()
    article_ids: tuple[str, ...] = ()
    since: date | None = None
    until: date | None = None

    def is_empty(self) -> bool:
        return not (self.sources or self.article_ids or self.since or self.until)


@dataclass(frozen=True)
class Retrieved:
    """Ranked, diversified passages and what retrieval made of the question."""

    passages: list[Passage]
    window: TimeWindow | None
    timings: dict[str, float]


class LexicalIndex:
    """BM25 (bm25s) over the store's current chunks, rebuilt whenever the store's generation changes."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._generation = -1
        self.passages: list[Passage] = []
        self.versions: dict[str, str] = {}
        self._bm25: Any = None
        self._published = np.zeros(0, dtype=np.int64)
        self._weights = np.zeros(0, dtype=np.float32)
        self._idf: dict[str, float] = {}
        self._idf_unseen = 1.0

    def refresh(self) -> None:
        """Reload from the store if anything was written since the last load."""
        generation = self.store.generation()
        if generation == self._generation:
            return
        with self._lock:
            if generation == self._generation:
                return
            import bm25s

            chunks = self.store.current_chunks()
            passages = [chunk.passage for chunk in chunks]
            corpus = [terms(f"{p.title} {p.text}") or ["_empty_"] for p in passages]
            bm25 = bm25s.BM25()
            if corpus:
                bm25.index(corpus, show_progress=False)
            self._bm25 = bm25 if corpus else None
            document_frequency: dict[str, int] = {}
            for doc in corpus:
                for term in set(doc):
                    document_frequency[term] = document_frequency.get(term, 0) + 1
            total = max(1, len(corpus))
            self._idf = {term: math.log(1 + (total - df + 0.5) / (df + 0.5)) for term, df in document_frequency.items()}
            self._idf_unseen = math.log(1 + (total + 0.5) / 0.5)
            self.passages = passages
            self.versions = {p.article_id: p.chunk_id.split("#")[1] for p in passages}
            self._published = np.array([_day(p.published) for p in passages], dtype=np.int64)
            self._weights = np.array([CAPTION_WEIGHT if p.kind == "caption" else 1.0 for p in passages], dtype=np.float32)
            self._sources = np.array([p.source for p in passages], dtype=object)
            self._articles = np.array([p.article_id for p in passages], dtype=object)
            self._generation = generation

    def idf(self, term: str) -> float:
        """Rarity of a (stemmed) term across chunks; unseen terms count as rarest.

        Reads the index as last refreshed (retrieval refreshes it once per question).
        """
        return self._idf.get(term, self._idf_unseen)

    def mask(self, filters: Filters, as_of: date | None) -> np.ndarray:
        keep = np.ones(len(self.passages), dtype=bool)
        if filters.sources:
            keep &= np.isin(self._sources, list(filters.sources))
        if filters.article_ids:
            keep &= np.isin(self._articles, list(filters.article_ids))
        if filters.since:
            keep &= self._published >= filters.since.toordinal()
        if filters.until:
            keep &= (self._published <= filters.until.toordinal()) & (self._published > 0)
        if as_of:
            keep &= self._published <= as_of.toordinal()
        return keep

    def search(self, question: str, n: int, filters: Filters, as_of: date | None) -> list[Passage]:
        """The `n` best BM25 matches among the store's current chunks (reloaded first if the store changed)."""
        self.refresh()
        if self._bm25 is None:
            return []
        query = terms(question)
        if not query:
            return []
        scores = self._bm25.get_scores(query) * self._weights
        scores = np.where(self.mask(filters, as_of), scores, 0.0)
        n = min(n, int((scores > 0).sum()))
        if n == 0:
            return []
        top = np.argpartition(-scores, n - 1)[:n]
        top = top[np.argsort(-scores[top])]
        return [replace(self.passages[i], score=float(scores[i])) for i in top]


def _day(published: str) -> int:
    try:
        return date.fromisoformat(published[:10]).toordinal() if published else 0
    except ValueError:
        return 0


def chroma_where(filters: Filters, as_of: date | None) -> dict[str, Any] | None:
    """The Chroma `where` clause for filters and the as-of date."""
    clauses: list[dict[str, Any]] = []
    if filters.sources:
        clauses.append({"source": {"$in": list(filters.sources)}})
    if filters.article_ids:
        clauses.append({"article_id": {"$in": list(filters.article_ids)}})
    if filters.since:
        clauses.append({"published_day": {"$gte": filters.since.toordinal()}})
    if filters.until:
        clauses.append({"published_day": {"$lte": filters.until.toordinal()}})
        clauses.append({"published_day": {"$gt": 0}})
    if as_of:
        clauses.append({"published_day": {"$lte": as_of.toordinal()}})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


class Retriever:
    """Hybrid retriever over a `Store`.

    >>> retriever = Retriever(store)                                   # doctest: +SKIP
    >>> retriever.retrieve("What figures did Hamas report?", k=5).passages[0].title   # doctest: +SKIP
    'Putin blames Washington for Gaza war, ...'
    """

    def __init__(self, store: Store, max_per_article: int = 2, candidates: int = 40, reranker: str = "") -> None:
        self.store = store
        self.lexical = LexicalIndex(store)
        self.max_per_article = max_per_article
        self.candidates = candidates
        self._reranker_path = reranker
        self._reranker: Any = None

    def retrieve(
        self,
        question: str,
        k: int = 5,
        filters: Filters | None = None,
        as_of: date | None = None,
        depth: int = 20,
    ) -> Retrieved:
        """The best `max(k, depth)` passages for `question`, diversified, best first (score = fused score)."""
        filters = filters or Filters()
        timings: dict[str, float] = {}
        started = time.perf_counter()
        self.lexical.refresh()
        timings["index_ms"] = _ms(started)

        t = time.perf_counter()
        vector = self.store.embedder.encode_query(question)
        timings["embed_ms"] = _ms(t)

        t = time.perf_counter()
        dense = self.store.search(vector, self.candidates, chroma_where(filters, as_of))
        current = self.lexical.versions
        dense = [p for p in dense if current.get(p.article_id) == p.chunk_id.split("#")[1]]
        timings["dense_ms"] = _ms(t)

        t = time.perf_counter()
        lexical = self.lexical.search(question, self.candidates, filters, as_of)
        timings["lexical_ms"] = _ms(t)

        window = time_window(question, as_of) if as_of else None
        fused = fuse([dense, lexical], window=window, as_of=as_of)
        if self._reranker_path:
            t = time.perf_counter()
            fused = self._rerank(question, fused[: self.candidates])
            timings["rerank_ms"] = _ms(t)
        passages = diversify(fused, max(k, depth), self.max_per_article, first=k)
        timings["retrieve_ms"] = _ms(started)
        return Retrieved(passages, window, timings)

    def _rerank(self, question: str, passages: list[Passage]) -> list[Passage]:
        if self._reranker is None:
            from sentence_transformers import CrossEncoder

            self._reranker = CrossEncoder(self._reranker_path, device="cpu", local_files_only=True)
        scores = self._reranker.predict([(question, p.text) for p in passages])
        order = np.argsort(-np.asarray(scores))
        return [replace(passages[i], score=float(scores[i])) for i in order]


def fuse(rankings: list[list[Passage]], window: TimeWindow | None = None, as_of: date | None = None) -> list[Passage]:
    """Reciprocal rank fusion of ranked lists, with caption chunks down-weighted and time preferences applied.

    A passage inside the question's time window gets x1.5; with an as-of date, any passage gets a mild
    recency factor in (1, 1.25] that halves every 90 days before `as_of` (news questions are about news).
    """
    scores: dict[str, float] = {}
    by_id: dict[str, Passage] = {}
    for ranking in rankings:
        for rank, passage in enumerate(ranking):
            scores[passage.chunk_id] = scores.get(passage.chunk_id, 0.0) + 1.0 / (RRF_K + rank + 1)
            by_id.setdefault(passage.chunk_id, passage)
    for chunk_id, passage in by_id.items():
        factor = CAPTION_WEIGHT if passage.kind == "caption" else 1.0
        day = _day(passage.published)
        if window and day and window.start.toordinal() <= day <= window.end.toordinal():
            factor *= 1.5
        if as_of and day:
            age = max(0, as_of.toordinal() - day)
            factor *= 1.0 + 0.25 * math.pow(0.5, age / 90)
        scores[chunk_id] *= factor
    ranked = sorted(by_id, key=lambda chunk_id: scores[chunk_id], reverse=True)
    return [replace(by_id[chunk_id], score=scores[chunk_id]) for chunk_id in ranked]


def diversify(passages: list[Passage], n: int, max_per_article: int, first: int) -> list[Passage]:
    """Drop near-duplicates; allow at most `max_per_article` per article among the first `first` picks.

    Later picks (up to `n`, used for ranking metrics and "closest passages") still skip duplicates
    but may repeat an article, so a long article does not crowd out others at the top.
    """
    chosen: list[Passage] = []
    seen_texts: list[set[str]] = []
    per_article: dict[str, int] = {}
    deferred: list[Passage] = []
    for passage in passages:
        words = set(terms(passage.text))
        if any(_jaccard(words, other) > 0.8 for other in seen_texts):
            continue
        if len(chosen) < first and per_article.get(passage.article_id, 0) >= max_per_article:
            deferred.append(passage)
            continue
        chosen.append(passage)
        seen_texts.append(words)
        per_article[passage.article_id] = per_article.get(passage.article_id, 0) + 1
        if len(chosen) >= n:
            break
    for passage in deferred:
        if len(chosen) >= n:
            break
        chosen.append(passage)
    return chosen


def _jaccard(a: set[str], b: set[str]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
