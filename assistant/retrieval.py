"""Hybrid retrieval: dense search in Chroma plus BM25 over the same chunks, fused by reciprocal rank.

Filters (source, article id, date range) and the `as_of` date apply to both sides; articles
published after `as_of` are never returned. Articles inside the time window a question names
("this week", "in June") and near `as_of` get a boost. The final list is diversified: no
near-identical passages, and at most `max_per_article` passages of one article in the first `k`.

Fusion and diversity work on what the lexical index knows of each candidate (its article, outlet, day, kind and
words); passage texts are read from the store only for the passages kept (on a Chroma server, a read's cost grows
with the ids asked).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Set
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import numpy as np

from assistant.dates import TimeWindow, published_ordinal, time_window
from assistant.filters import Filters
from assistant.lexical import CAPTION_WEIGHT, LexicalIndex
from assistant.models import Passage
from assistant.question import Question
from assistant.store import Store
from assistant.text import terms
from assistant.timing import ms_since

RRF_K = 60
# Measured on realtimeqa-dev (docs/quality.md): a two-week half-life beat 90 days on every retrieval metric.
RECENCY_BOOST = 0.5
RECENCY_HALF_LIFE_DAYS = 14


@dataclass(frozen=True)
class Retrieved:
    """Ranked, diversified passages and what retrieval made of the question."""

    passages: list[Passage]
    window: TimeWindow | None
    timings: dict[str, float]


class Retriever:
    """Hybrid retriever over a `Store`.

    >>> retriever = Retriever(store)                                   # doctest: +SKIP
    >>> retriever.retrieve("What figures did Hamas report?", k=5).passages[0].title   # doctest: +SKIP
    'Putin blames Washington for Gaza war, ...'
    """

    def __init__(
        self,
        store: Store,
        max_per_article: int = 2,
        candidates: int = 40,
        reranker: str = "",
        unfiltered_limit: int = 2000,
    ) -> None:
        self.store = store
        self.lexical = LexicalIndex(store)
        self.max_per_article = max_per_article
        self.candidates = candidates
        # Most ids asked of Chroma's unfiltered vector index before Chroma is left to filter (see `_dense`).
        self.unfiltered_limit = unfiltered_limit
        self._reranker_path = reranker
        self._reranker: Any = None

    def retrieve(
        self,
        question: str | Question,
        k: int = 5,
        filters: Filters | None = None,
        as_of: date | None = None,
        depth: int = 20,
    ) -> Retrieved:
        """The best `max(k, depth)` passages for `question`, diversified, best first (score = fused score).

        An analysed `Question` brings its own time window; for a plain string it is read here.
        """
        if isinstance(question, Question):
            window = question.window
            question = question.text
        else:
            window = time_window(question, as_of) if as_of else None
        filters = filters or Filters()
        timings: dict[str, float] = {}
        started = time.perf_counter()
        self.lexical.refresh()
        timings["index_ms"] = ms_since(started)

        t = time.perf_counter()
        vector = self.store.embedder.encode_query(question)
        timings["embed_ms"] = ms_since(t)

        # One state of the index for the whole choice: a refresh in another thread waits until it is made.
        with self.lexical.guard.reading():
            t = time.perf_counter()
            mask = self.lexical.mask(filters, as_of)
            nearest, known = self._dense(vector, filters, as_of, mask)
            timings["dense_ms"] = ms_since(t)

            t = time.perf_counter()
            keyword = self.lexical.top(question, self.candidates, filters, as_of, mask)
            timings["lexical_ms"] = ms_since(t)

            # Fused and diversified on what the index knows of each chunk; texts are read for the passages kept.
            t = time.perf_counter()
            dense, lexical = (
                [
                    replace(passage, score=score)
                    for chunk_id, score in ranking
                    if (passage := self._sketch(chunk_id, known))
                ]
                for ranking in (nearest, keyword)
            )
            fused = fuse([dense, lexical], window=window, as_of=as_of)
            if self._reranker_path:
                reranking = time.perf_counter()
                fused = self._rerank(question, self._read(fused[: self.candidates], known))
                timings["rerank_ms"] = ms_since(reranking)
            passages = self._diversified(fused, max(k, depth), k, known)
            timings["texts_ms"] = ms_since(t)
        timings["retrieve_ms"] = ms_since(started)
        return Retrieved(passages, window, timings)

    def _dense(
        self, vector: np.ndarray, filters: Filters, as_of: date | None, mask: np.ndarray
    ) -> tuple[list[tuple[str, float]], dict[str, Passage]]:
        """The `candidates` nearest current chunks that pass the filters, best first: (chunk id, cosine), and the
        passages already read on the way (the caller reads the others' texts).

        Chroma's own metadata filter is slow on large stores (seconds at 100k chunks, it filters in
        SQLite), so the filters are applied here instead: Chroma's vector index is asked, unfiltered, for
        ids only, enough of them that about `candidates` pass the mask; the lexical index knows every
        current chunk (an id it lacks is a leftover of an interrupted write). Only when the filters keep so
        few chunks that this would mean asking for most of the store does Chroma filter itself.
        """
        index = self.lexical
        kept = int(mask.sum())
        if kept == 0:
            return [], {}
        total = index.size
        wanted = min(total, math.ceil(self.candidates * 1.5 * total / kept) + 8)
        if wanted > max(self.unfiltered_limit, self.candidates + 8):
            passages = [
                p for p in self.store.search(vector, self.candidates, filters, as_of) if p.chunk_id in index.positions
            ]
            return [(p.chunk_id, p.score) for p in passages], {p.chunk_id: p for p in passages}
        hits = []
        for chunk_id, similarity in self.store.nearest(vector, wanted):
            position = index.positions.get(chunk_id)
            if position is not None and mask[position]:
                hits.append((chunk_id, similarity))
                if len(hits) == self.candidates:
                    break
        return hits, {}

    def _sketch(self, chunk_id: str, known: dict[str, Passage]) -> Passage | None:
        """The passage if it was read already, else the index's sketch of it (no text), or None when not current."""
        return known.get(chunk_id) or self.lexical.sketch(chunk_id)

    def _read(self, passages: list[Passage], known: dict[str, Passage]) -> list[Passage]:
        """`passages` with their texts (read from the store in one call, for those not read yet), scores kept."""
        unread = [p.chunk_id for p in passages if p.chunk_id not in known]
        known.update((cid, p) for cid, p in zip(unread, self.store.passages(unread), strict=True) if p is not None)
        return [replace(known[p.chunk_id], score=p.score) for p in passages if p.chunk_id in known]

    def _diversified(self, fused: list[Passage], n: int, first: int, known: dict[str, Passage]) -> list[Passage]:
        """`diversify(fused, n, ...)`, reading texts only for a prefix of `fused` that decides it.

        Choosing needs each passage's start (an article's lead is exempt from the per-article limit), so the
        prefix is read; when its walk alone chooses `n` (no deferred passage needed to fill up), the rest of
        `fused` could not change the choice. Otherwise a prefix twice as long is read, up to all of `fused`.
        """
        size = n + n // 2
        while True:
            prefix = self._read(fused[:size], known)
            chosen, deferred, filled = pick(prefix, n, self.max_per_article, first, words=self._words)
            if filled or size >= len(fused):
                return (chosen + deferred)[:n]
            size *= 2

    def _words(self, passage: Passage) -> frozenset[str]:
        position = self.lexical.positions.get(passage.chunk_id)
        if position is None:
            return frozenset(terms(f"{passage.title} {passage.text}"))
        return self.lexical.words(position)

    def _rerank(self, question: str, passages: list[Passage]) -> list[Passage]:
        if self._reranker is None:
            from sentence_transformers import CrossEncoder

            self._reranker = CrossEncoder(self._reranker_path, device="cpu", local_files_only=True)
        scores = self._reranker.predict([(question, p.text) for p in passages])
        order = np.argsort(-np.asarray(scores))
        return [replace(passages[i], score=float(scores[i])) for i in order]


def fuse(rankings: list[list[Passage]], window: TimeWindow | None = None, as_of: date | None = None) -> list[Passage]:
    """Reciprocal rank fusion of ranked lists, with caption chunks down-weighted and time preferences applied.

    A passage inside the question's time window gets x1.5; with an as-of date, any passage gets a
    recency factor in (1, 1 + RECENCY_BOOST] whose excess halves every RECENCY_HALF_LIFE_DAYS before
    `as_of`: news questions are mostly about the last days' news, and an article years older than
    `as_of` is neither helped nor hurt against others of its age.

    A passage both lists rank beats one that only the first ranks first:

    >>> bridge, ferry = Passage("bridge#v#0", "bridge", "...", 0, 3), Passage("ferry#v#0", "ferry", "...", 0, 3)
    >>> [p.article_id for p in fuse([[bridge, ferry], [ferry]])]
    ['ferry', 'bridge']
    """
    scores: dict[str, float] = {}
    by_id: dict[str, Passage] = {}
    for ranking in rankings:
        for rank, passage in enumerate(ranking):
            scores[passage.chunk_id] = scores.get(passage.chunk_id, 0.0) + 1.0 / (RRF_K + rank + 1)
            by_id.setdefault(passage.chunk_id, passage)
    for chunk_id, passage in by_id.items():
        factor = CAPTION_WEIGHT if passage.kind == "caption" else 1.0
        day = published_ordinal(passage.published)
        if window and day and window.start.toordinal() <= day <= window.end.toordinal():
            factor *= 1.5
        if as_of and day:
            age = max(0, as_of.toordinal() - day)
            factor *= 1.0 + RECENCY_BOOST * math.pow(0.5, age / RECENCY_HALF_LIFE_DAYS)
        scores[chunk_id] *= factor
    ranked = sorted(by_id, key=lambda chunk_id: scores[chunk_id], reverse=True)
    return [replace(by_id[chunk_id], score=scores[chunk_id]) for chunk_id in ranked]


def diversify(
    passages: list[Passage],
    n: int,
    max_per_article: int,
    first: int,
    words: Callable[[Passage], Set[str]] = lambda passage: set(terms(passage.text)),
) -> list[Passage]:
    """Drop near-duplicates; allow at most `max_per_article` per article among the first `first` picks.

    An article's lead (the passage that starts it) does not count against the limit: news puts its main
    facts first, and the lead is where a question phrased unlike the article's body finds them.

    Later picks (up to `n`, used for ranking metrics and "closest passages") still skip duplicates
    but may repeat an article, so a long article does not crowd out others at the top. `words` gives
    a passage's terms (the retriever passes the ones its index already computed).
    """
    chosen, deferred, _ = pick(passages, n, max_per_article, first, words)
    return (chosen + deferred)[:n]


def pick(
    passages: list[Passage],
    n: int,
    max_per_article: int,
    first: int,
    words: Callable[[Passage], Set[str]] = lambda passage: set(terms(passage.text)),
) -> tuple[list[Passage], list[Passage], bool]:
    """`diversify`'s walk: the passages chosen in order, those deferred by the per-article limit, and whether the
    chosen ones reached `n` (then no later passage could change the outcome)."""
    chosen: list[Passage] = []
    seen_texts: list[Set[str]] = []
    per_article: dict[str, int] = {}
    deferred: list[Passage] = []
    for passage in passages:
        passage_words = words(passage)
        if any(_jaccard(passage_words, other) > 0.8 for other in seen_texts):
            continue
        is_lead = passage.start == 0
        if len(chosen) < first and not is_lead and per_article.get(passage.article_id, 0) >= max_per_article:
            deferred.append(passage)
            continue
        chosen.append(passage)
        seen_texts.append(passage_words)
        if not is_lead:
            per_article[passage.article_id] = per_article.get(passage.article_id, 0) + 1
        if len(chosen) >= n:
            return chosen, deferred, True
    return chosen, deferred, False


def _jaccard(a: Set[str], b: Set[str]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)
