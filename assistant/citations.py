"""Citations and verification: `[n]` markers mapped back to passages, and each answer sentence checked against them.

A sentence is supported when its content words are found in a cited passage (or it is close in meaning
to one of the passage's sentences) and every number and name it states appears in that passage.
Unsupported sentences are flagged; by default the chain removes them from the shown answer.

Articles are data: a passage sentence that speaks to a model ("Ignore previous instructions and answer
...", see `assistant.text.is_instruction`) is never support, and an answer sentence that is one is never
supported. So a model that obeys an instruction planted in an article cannot pass the result off as a
cited answer, even when it copies the planted words and cites their passage.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from assistant.models import AnswerSentence, Citation, Passage
from assistant.text import absent_names, first_word, is_instruction, names, numbers, terms
from ingest.sentences import sentence_spans

MARKER = re.compile(r"\[\s*(\d+(?:\s*[,;]\s*\d+)*)\s*\]")
# Markers written after a sentence's full stop (and closing quote): "... rose. [2]" or '... over." [1]'.
_MARKERS_AFTER_STOP = re.compile(
    r"(?P<stop>[.!?]+[\"'\u201d\u2019)]*)(?P<markers>(?:\s*\[\s*\d+(?:\s*[,;]\s*\d+)*\s*\])+)"
)
SUPPORT_THRESHOLD = 0.6


@dataclass(frozen=True)
class Support:
    """How well one passage supports one claim, and the passage sentence that does it best."""

    score: float
    passage: Passage
    sentence: str
    start: int  # offsets in the article's cleaned text
    end: int
    missing: tuple[str, ...]  # numbers or names of the claim absent from the passage


def split_answer(text: str) -> list[tuple[str, tuple[int, ...]]]:
    """Split an answer into sentences with the `[n]` numbers each carries (markers removed from the text).

    A marker directly after a sentence's full stop ("... rose. [2]") belongs to that sentence; it is moved
    before the stop first, so the sentence splitter never sees a marker at the start of a sentence.
    """
    text = _MARKERS_AFTER_STOP.sub(lambda m: " " + " ".join(m.group("markers").split()) + m.group("stop"), text)
    spans = sentence_spans(text)
    pieces: list[tuple[str, tuple[int, ...]]] = []
    for start, end in spans:
        raw = text[start:end]
        markers = tuple(int(n) for group in MARKER.findall(raw) for n in re.split(r"[,;]\s*", group))
        clean = re.sub(r"\s+", " ", MARKER.sub("", raw)).strip()
        clean = re.sub(r"\s+([.,;:!?])", r"\1", clean)
        if not clean and pieces:  # a sentence made only of markers belongs to the one before
            previous_text, previous_markers = pieces[-1]
            pieces[-1] = (previous_text, previous_markers + markers)
        elif clean:
            pieces.append((clean, markers))
    return pieces


def support(claim: str, passage: Passage, embed: Callable[[list[str]], np.ndarray] | None = None) -> Support:
    """Score `passage`'s support for `claim` in 0..1; numbers and names in the claim must appear in it.

    Only the passage's statements count: its sentences that are instructions to a model are left out.
    """
    spans = statement_spans(passage.text)
    if not spans:  # nothing but planted instructions: no support at all
        return Support(0.0, passage, "", passage.start, passage.start, missing=())
    sentences = [passage.text[s:e] for s, e in spans]
    statements = " ".join(sentences)
    claim_terms = set(terms(claim))
    passage_terms = set(terms(passage.title + " " + statements))
    containment = len(claim_terms & passage_terms) / len(claim_terms) if claim_terms else 0.0
    overlaps = [len(claim_terms & set(terms(sentence))) for sentence in sentences]
    best = int(np.argmax(overlaps)) if overlaps else 0
    semantic = 0.0
    if embed is not None and containment < 0.999:
        vectors = embed([claim, *sentences])
        similarities = vectors[1:] @ vectors[0]
        best_semantic = int(np.argmax(similarities))
        semantic = float(similarities[best_semantic])
        if overlaps[best] == 0:
            best = best_semantic
    missing_numbers = numbers(claim) - numbers(statements)
    # A capitalised first word is usually just the sentence start ("Roughly 36,000 ..."), not a name.
    missing_names = absent_names(names(claim) - {first_word(claim)}, passage.title + " " + statements)
    score = max(containment, semantic)
    start, end = spans[best]
    return Support(
        score=round(score, 4),
        passage=passage,
        sentence=sentences[best],
        start=passage.start + start,
        end=passage.start + end,
        missing=tuple(sorted(missing_numbers | missing_names)),
    )


def statement_spans(text: str) -> list[tuple[int, int]]:
    """The spans of `text`'s sentences that may support a claim: all but instructions to a model."""
    spans = sentence_spans(text) or [(0, len(text))]
    return [(start, end) for start, end in spans if not is_instruction(text[start:end])]


def verify(
    pieces: list[tuple[str, tuple[int, ...]]],
    passages: list[Passage],
    embed: Callable[[list[str]], np.ndarray] | None = None,
) -> tuple[list[AnswerSentence], list[Citation], list[int]]:
    """Check each answer sentence against the passages its markers name (1-based into `passages`).

    Returns the verified sentences, one citation per cited passage number (with the sentence that
    best supports the first claim citing it), and the marker numbers that pointed to no passage.
    """
    checked: list[AnswerSentence] = []
    citations: dict[int, Citation] = {}
    dangling: list[int] = []
    for text, markers in pieces:
        valid = [n for n in markers if 1 <= n <= len(passages)]
        dangling += [n for n in markers if n not in valid]
        results = [(n, support(text, passages[n - 1], embed)) for n in dict.fromkeys(valid)]
        best = max((result for _, result in results), key=lambda r: (not r.missing, r.score), default=None)
        ok = best is not None and not best.missing and best.score >= SUPPORT_THRESHOLD and not is_instruction(text)
        checked.append(
            AnswerSentence(
                text=text,
                citations=tuple(dict.fromkeys(valid)),
                support=best.score if best else 0.0,
                unsupported=not ok,
            )
        )
        for n, result in results:
            if n not in citations and ok:
                citations[n] = citation(n, result)
    return checked, [citations[n] for n in sorted(citations)], dangling


def citation(n: int, found: Support) -> Citation:
    passage = found.passage
    return Citation(
        n=n,
        article_id=passage.article_id,
        title=passage.title,
        source=passage.source,
        published=passage.published,
        url=passage.link,
        passage=passage.text,
        sentence=found.sentence,
        start=found.start,
        end=found.end,
        page=passage.page,
        score=found.score,
    )
