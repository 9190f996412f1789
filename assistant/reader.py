"""The extractive reader's scoring model: features of a candidate sentence, and the probability that it answers.

A candidate is one sentence of a retrieved passage. `sentence_features` describes it against the analysed
`Question` (meaning, rarity-weighted coverage, answer type, the question's subject and numbers, the
passage's retrieval rank and score, title match, position ...); `ReaderModel.probability` turns the
features into the probability that the sentence contains the answer, by one logistic function whose
weights live in `reader_weights.json` beside this module. That file says where its numbers came from:
`bench/fit_reader.py` fits them on the dev question sets with cross-validation (label: the sentence
contains an expected answer). The same probability ranks the sentences, picks the extra ones, and decides
whether to answer at all (`threshold`).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, fields, replace
from datetime import date
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from assistant.dates import published_ordinal
from assistant.errors import ConfigError
from assistant.question import DATE, ENTITY, NUMBER, OTHER, PERSON, PLACE, Question
from assistant.text import acronyms, designations, has_number, match_stem, match_terms, names, numbers, tokens
from assistant.words import (
    CALENDAR_WORDS,
    MONTH_NAMES,
    NEGATIONS,
    QUESTION_WORDS,
    RELATIVE_DAYS,
    STOPWORDS,
    WEEKDAYS,
    alternation,
)

WEIGHTS_FILE = "reader_weights.json"
WEIGHTS_FORMAT = 1
# A sentence that adds this many content words the question lacks is as novel as can be.
NOVELTY_WORDS = 4
# News is about the days before the question: an article this many days older counts half as recent.
RECENCY_HALF_LIFE_DAYS = 14
# Tokens at which a sentence counts as full length (shorter ones are often headings or fragments).
FULL_LENGTH_TOKENS = 12

_DATE = re.compile(
    rf"\b(\d{{4}}|{alternation(MONTH_NAMES | WEEKDAYS)}|{alternation(RELATIVE_DAYS)})\b",
    re.I,
)
_MONTH_ABBREVIATIONS = r"jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec"
_DATE_NUMBER = re.compile(
    rf"\b(?:(?:{_MONTH_ABBREVIATIONS})[a-z]*\.?\s+\d{{1,2}}(?:st|nd|rd|th)?\b(?:,?\s+\d{{4}})?"
    rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:{_MONTH_ABBREVIATIONS})[a-z]*\b(?:\s+\d{{4}})?"
    r"|\b(?:1[89]|20)\d{2}\b)",
    re.I,
)
_QUOTE = re.compile(r"[\"\u201c\u201d]")
_NEGATION = re.compile(r"\b(" + alternation(NEGATIONS - {"n't"}) + r")\b|n['\u2019]t\b", re.I)


def figures(text: str) -> set[str]:
    """Numbers that are quantities, not dates: "36,000" counts, "October 7, 2023" does not.

    >>> sorted(figures("On October 7, 2023, 1,200 people were killed."))
    ['1200']
    """
    return numbers(_DATE_NUMBER.sub(" ", text))


def content_words(text: str) -> list[str]:
    """The words of a text that carry meaning, lowercased, unique, in order: what word vectors are taken of.

    >>> content_words("The satellite weighs 1,150 kilograms.")
    ['satellite', 'weighs', 'kilograms']
    """
    found = (t for t in tokens(text) if t.isalpha() and len(t) > 1 and t not in STOPWORDS and t not in QUESTION_WORDS)
    return list(dict.fromkeys(found))


# Sentences and titles recur: within a question (a sentence is also its neighbours' context, a title is every
# sentence's) and across questions (the same passages come back). The reader works their words out once; the
# cache holds the texts of the last few dozen questions (ingest, whose chunks do not recur, does not use it).
_WORDS_CACHE = 8192


@lru_cache(maxsize=_WORDS_CACHE)
def sentence_words(text: str) -> tuple[str, ...]:
    """`content_words` of a candidate sentence, remembered."""
    return tuple(content_words(text))


@lru_cache(maxsize=_WORDS_CACHE)
def _stems(text: str) -> frozenset[str]:
    return frozenset(match_terms(text)) | designations(text)


def word_match(question: Question, words: list[str], vectors: dict[str, np.ndarray]) -> float:
    """How closely a sentence's words match what the question asks about its subject, 0..1, in meaning.

    For each relation term (all terms when the question has none), the best cosine similarity of its word
    vector with any of `words`; averaged by the terms' weights. "How heavy is it?" finds "weighs" and
    "fastest" finds "fast", which the stems never match.
    """
    worded = [t for t in question.terms if t.word.isalpha() and t.word in vectors]
    asked = [t for t in worded if not t.is_name] or worded
    present = [vectors[w] for w in words if w in vectors]
    if not asked or not present:
        return 0.0
    similarity = np.stack([vectors[t.word] for t in asked]) @ np.stack(present).T
    best = np.clip(similarity.max(axis=1), 0.0, 1.0)
    weights = np.array([t.weight for t in asked])
    return float(best @ weights / weights.sum()) if weights.sum() > 0 else float(best.mean())


def matchable(question: Question, text: str) -> set[str]:
    """What of `text` can match a question term: its stemmed terms, its designations ("kestrel-1"), and the
    acronyms the question writes that `text` writes too or spells out ("ECB" in "the European Central Bank").

    >>> from assistant.question import analyse
    >>> from assistant.rarity import Rarity
    >>> sorted(matchable(analyse("What did the ECB decide?", Rarity()), "The European Central Bank cut rates."))
    ['bank', 'central', 'cut', 'ecb', 'european', 'rate']
    """
    found = _stems(text)
    if question.acronyms:
        return set(found | (question.acronyms & {match_stem(acronym) for acronym in acronyms(text)}))
    return set(found)


def entities(text: str) -> set[str]:
    """Names of people, places and things: capitalised words without days and months, which name no one."""
    return names(text) - CALENDAR_WORDS


def _in_window(question: Question, published: str) -> float:
    day = published_ordinal(published)  # 0: undated
    if question.window is None or not day:
        return 0.5
    return 1.0 if question.window.start.toordinal() <= day <= question.window.end.toordinal() else 0.0


def _recency_reference(question: Question) -> date | None:
    """The day recency counts back from, for a question about a recent time ("this week", "recently"): the day
    it is asked on (or the library's newest day, when that is earlier). Other questions get none: asked today of
    last year's news, "What did the ECB decide?" is about last year's decision.
    """
    return question.recent_until if question.window is not None else None


def _recency(reference: date | None, published: str) -> float:
    day = published_ordinal(published)  # 0: undated
    if reference is None or not day:
        return 0.5
    return 0.5 ** (max(0, reference.toordinal() - day) / RECENCY_HALF_LIFE_DAYS)


def _negated(text: str) -> bool:
    return bool(_NEGATION.search(text))


def type_match(question: Question, text: str) -> float:
    """How well a sentence holds the kind of answer the question asks for, 0..1."""
    kind = question.answer_type
    if kind == NUMBER:
        if figures(text) - question.numbers:
            return 1.0
        return 0.3 if has_number(text) else 0.0
    if kind in {PERSON, PLACE}:
        return 1.0 if entities(text) - question.names else 0.0
    if kind == DATE:
        return 1.0 if _DATE.search(text) else 0.0
    if kind == ENTITY:  # "which show ...": often a name, but not always ("which measure ...")
        return 1.0 if entities(text) - question.names else 0.3
    return 0.5


@dataclass(frozen=True)
class SentenceFeatures:
    """What the reader knows of one candidate sentence. Shares are of the question's rarity weight, 0..1."""

    semantic: float  # cosine similarity of the question's and the sentence's vectors
    semantic_gap: float  # semantic minus the best semantic among all candidates (0 for the best)
    coverage: float  # share of the question's terms in the sentence
    coverage_gap: float  # coverage minus the best coverage among all candidates (0 for the best)
    word_match: float  # the relation terms' closest words in the sentence, by word vectors (`word_match`)
    word_match_gap: float  # word_match minus the best word_match among all candidates
    context_coverage: float  # ... in the sentence, the sentence before it, or the title
    passage_coverage: float  # ... anywhere in the passage or its title
    subject_coverage: float  # share of the subject's (names', else heaviest term's) weight in sentence or title
    subject_missing: float  # share of the subject's weight absent from the passage and title
    relation_coverage: float  # share of the non-name terms' weight in the sentence or title
    heaviest_missing: float  # weight of the heaviest question term absent from the passage, over the heaviest term's
    heaviest_missing_near: float  # ... absent from the sentence and its neighbours (and the title)
    negation_mismatch: float  # 1 when one of question and sentence is negated ("not", "never" ...) and the other not
    numbers_missing: float  # share of the question's numbers absent from the passage
    type_match: float  # the sentence holds the kind of answer asked for (number, name, date ...)
    typed_question: float  # 1 when the question asks for a known kind of answer
    novelty: float  # content words the sentence adds to the question, up to NOVELTY_WORDS, 0..1
    retrieval_rank: float  # 1 / (1 + the passage's rank)
    retrieval_score: float  # the passage's fused score over the best passage's
    title_coverage: float  # share of the question's terms in the passage's title
    in_window: float  # the passage is dated inside the time the question names (1), outside (0), or either (0.5)
    recency: float  # for "this week" questions: halves every RECENCY_HALF_LIFE_DAYS of age (`_recency_reference`)
    lead: float  # 1 / (1 + the sentence's index in its article's text, counted within the passage)
    length: float  # tokens / FULL_LENGTH_TOKENS, at most 1
    unattributed_quote: float  # 1 for a quote that does not say who speaks

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(field.name for field in fields(cls))

    def values(self) -> list[float]:
        return [float(getattr(self, name)) for name in self.field_names()]


@dataclass(frozen=True)
class Sentence:
    """A candidate sentence and what its features are computed from."""

    text: str
    index: int  # position among the passage's answer sentences
    passage_rank: int
    passage_title: str
    passage_text: str
    passage_starts_article: bool
    previous: str = ""
    passage_published: str = ""
    following: str = ""


def sentence_features(
    question: Question,
    sentences: list[Sentence],
    semantic: list[float],
    retrieval_scores: list[float],
    attributed: list[bool],
    word_vectors: dict[str, np.ndarray] | None = None,
) -> list[SentenceFeatures]:
    """Features of every candidate sentence of one question (`semantic[i]` is sentence i's cosine similarity).

    `word_vectors` maps words (the question's terms and `content_words` of the sentences) to unit vectors;
    without them the word-match features are 0.

    Gaps are measured against the best candidate, so a sentence is judged against the alternatives it has.
    """
    # Passages given without retrieval scores (all 0) are all as good as the best.
    asked = _Asked(
        heaviest=question.terms[0].weight if question.terms else 1.0,
        top_score=max(retrieval_scores, default=0.0),
        negated=_negated(question.text),
        reference=_recency_reference(question),
    )
    passage_terms: dict[tuple[int, str], set[str]] = {}
    rows = []
    for sentence, score in zip(sentences, retrieval_scores, strict=True):
        key = (sentence.passage_rank, sentence.passage_title)
        if key not in passage_terms:
            passage_terms[key] = matchable(question, sentence.passage_title + " " + sentence.passage_text)
        rows.append(_own_features(question, asked, sentence, score, passage_terms[key], word_vectors or {}))
    best_semantic = max(semantic, default=0.0)
    best_coverage = max((row["coverage"] for row in rows), default=0.0)
    best_match = max((row["word_match"] for row in rows), default=0.0)
    return [
        SentenceFeatures(
            semantic=similarity,
            semantic_gap=similarity - best_semantic,
            coverage_gap=row["coverage"] - best_coverage,
            word_match_gap=row["word_match"] - best_match,
            unattributed_quote=0.0 if said or not _QUOTE.search(sentence.text) else 1.0,
            **row,
        )
        for sentence, row, similarity, said in zip(sentences, rows, semantic, attributed, strict=True)
    ]


def with_meaning(features: list[SentenceFeatures], semantic: list[float]) -> list[SentenceFeatures]:
    """`features` with their sentences' similarity to the question, and its gap to the best of them, filled in."""
    best = max(semantic, default=0.0)
    return [
        replace(row, semantic=similarity, semantic_gap=similarity - best)
        for row, similarity in zip(features, semantic, strict=True)
    ]


@dataclass(frozen=True)
class _Asked:
    """What `sentence_features` works out about the question once, for every sentence."""

    heaviest: float  # the weight of the question's heaviest term
    top_score: float  # the best retrieval score among the candidates' passages
    negated: bool
    reference: date | None  # the day recency is measured from


def _own_features(
    question: Question,
    asked: _Asked,
    sentence: Sentence,
    score: float,
    in_passage: set[str],
    word_vectors: dict[str, np.ndarray],
) -> dict[str, float]:
    """The features of one sentence that do not depend on the other candidates."""
    in_sentence = matchable(question, sentence.text)
    in_title = matchable(question, sentence.passage_title)
    in_previous = matchable(question, sentence.previous)
    near = in_sentence | in_previous | in_title | matchable(question, sentence.following)
    missing = [term.weight for term in question.terms if term.stem not in in_passage]
    missing_near = [term.weight for term in question.terms if term.stem not in near]
    passage_numbers = numbers(sentence.passage_title + " " + sentence.passage_text)
    subject, relation, heaviest = question.subject, question.relation, asked.heaviest
    return {
        "coverage": question.share(in_sentence),
        "word_match": word_match(question, list(sentence_words(sentence.text)), word_vectors),
        "context_coverage": question.share(in_sentence | in_title | in_previous),
        "passage_coverage": question.share(in_passage),
        "subject_coverage": question.share(in_sentence | in_title, within=subject),
        "subject_missing": 1.0 - question.share(in_passage, within=subject) if subject else 0.0,
        "relation_coverage": question.share(in_sentence | in_title, within=relation) if relation else 1.0,
        "heaviest_missing": max(missing, default=0.0) / heaviest if heaviest > 0 else 0.0,
        "heaviest_missing_near": max(missing_near, default=0.0) / heaviest if heaviest > 0 else 0.0,
        "negation_mismatch": float(asked.negated != _negated(sentence.text)),
        "numbers_missing": len(question.numbers - passage_numbers) / len(question.numbers) if question.numbers else 0.0,
        "type_match": type_match(question, sentence.text),
        "typed_question": 0.0 if question.answer_type == OTHER else 1.0,
        "novelty": min(1.0, len(in_sentence - set(question.weights)) / NOVELTY_WORDS),
        "retrieval_rank": 1.0 / (1 + sentence.passage_rank),
        "retrieval_score": max(0.0, score) / asked.top_score if asked.top_score > 0 else 1.0,
        "title_coverage": question.share(in_title),
        "in_window": _in_window(question, sentence.passage_published),
        "recency": _recency(asked.reference, sentence.passage_published),
        "lead": 1.0 / (1 + sentence.index) if sentence.passage_starts_article else 0.0,
        "length": min(1.0, len(tokens(sentence.text)) / FULL_LENGTH_TOKENS),
    }


# The features that need the sentence's vector.
MEANING_FEATURES = frozenset({"semantic", "semantic_gap"})


@dataclass(frozen=True)
class ReaderModel:
    """A logistic model over `SentenceFeatures`: standardised features, one weight each, a bias.

    `threshold` is the probability under which the reader declines to answer; `extra_ratio` how close
    to the best sentence's probability a second or third sentence must come to be added.
    """

    weights: dict[str, float]
    means: dict[str, float]
    scales: dict[str, float]
    bias: float
    threshold: float
    extra_ratio: float
    provenance: dict[str, Any]

    def logit(self, features: SentenceFeatures, leave_out: frozenset[str] = frozenset()) -> float:
        """The log-odds; features in `leave_out` count as their mean (as if unknown)."""
        total = self.bias
        for name, value in zip(SentenceFeatures.field_names(), features.values(), strict=True):
            if name not in leave_out:
                total += self.weights[name] * (value - self.means[name]) / self.scales[name]
        return total

    def shortlist(self, features: list[SentenceFeatures], size: int) -> list[int]:
        """The indices of the `size` candidates most likely to answer before their meaning is known.

        Encoding a sentence is the reader's main cost; the features of words, names and retrieval cost
        almost nothing. The candidates they rank lowest rarely win once meaning is added, so only the
        shortlist is encoded (`bench/fit_reader.py --shortlist` measures what that costs in quality).
        """
        if len(features) <= size:
            return list(range(len(features)))
        cheap = [self.logit(row, MEANING_FEATURES) for row in features]
        return sorted(sorted(range(len(features)), key=lambda i: -cheap[i])[:size])

    def probability(self, features: SentenceFeatures) -> float:
        """The probability that the sentence contains the answer to the question."""
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, self.logit(features)))))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": WEIGHTS_FORMAT,
            "bias": self.bias,
            "threshold": self.threshold,
            "extra_ratio": self.extra_ratio,
            "features": {
                name: {"weight": self.weights[name], "mean": self.means[name], "scale": self.scales[name]}
                for name in SentenceFeatures.field_names()
            },
            "provenance": self.provenance,
        }


def load_model(path: str | Path | None = None) -> ReaderModel:
    """The reader's weights from `path` (default: the fitted file shipped with Dossier), checked field by field."""
    where = str(path) if path else f"assistant/{WEIGHTS_FILE}"
    try:
        text = Path(path).read_text(encoding="utf-8") if path else (files("assistant") / WEIGHTS_FILE).read_text()
    except OSError as exc:
        raise ConfigError(
            f"reader weights {where}: cannot read ({exc.strerror or exc}); run bench/fit_reader.py"
        ) from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"reader weights {where}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
    return parse_model(data, where)


def parse_model(data: Any, where: str = "reader weights") -> ReaderModel:
    """A `ReaderModel` from the JSON form; every missing or malformed field is named in the error."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object")
    if data.get("format") != WEIGHTS_FORMAT:
        raise ConfigError(f"{where}: format {data.get('format')!r} is not {WEIGHTS_FORMAT}; fit it again")
    numbers_: dict[str, float] = {}
    for key in ("bias", "threshold", "extra_ratio"):
        numbers_[key] = _number(data.get(key), f"{where}: field {key!r}")
    table = data.get("features")
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: field 'features' must be an object of feature name -> weight, mean, scale")
    unknown = sorted(set(table) - set(SentenceFeatures.field_names()))
    if unknown:
        raise ConfigError(f"{where}: unknown feature(s) {', '.join(unknown)}; fit the weights again")
    weights, means, scales = {}, {}, {}
    for name in SentenceFeatures.field_names():
        entry = table.get(name)
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: feature {name!r} is missing; fit the weights again")
        weights[name] = _number(entry.get("weight"), f"{where}: features.{name}.weight")
        means[name] = _number(entry.get("mean"), f"{where}: features.{name}.mean")
        scales[name] = _number(entry.get("scale"), f"{where}: features.{name}.scale")
        if scales[name] <= 0:
            raise ConfigError(f"{where}: features.{name}.scale must be positive")
    provenance = data["provenance"] if isinstance(data.get("provenance"), dict) else {}
    return ReaderModel(weights, means, scales, provenance=provenance, **numbers_)


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{what} must be a finite number, not {value!r}")
    return float(value)
