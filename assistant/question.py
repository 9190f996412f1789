"""What a question asks, worked out once: its answer type, weighted key terms, names, numbers and time window.

Every step that needs to know about the question (retrieval's time preference, the extractive reader's
features, the "As of" date on answers) reads the same `Question` record instead of parsing the text again.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from assistant.dates import TimeWindow, time_window
from assistant.text import designations, first_word, match_stem, names, numbers, stem, tokens, written_acronyms
from assistant.words import (
    AUXILIARIES,
    PERSON_NOUNS,
    PLACE_NOUNS,
    QUANTITY_ADVERBS,
    QUANTITY_NOUNS,
    QUESTION_WORDS,
    STOPWORDS,
    TIME_NOUNS,
    alternation,
)

# Answer types, from the question's wording.
NUMBER, PERSON, DATE, PLACE, ENTITY, OTHER = "number", "person", "date", "place", "entity", "other"
ANSWER_TYPES = (NUMBER, PERSON, DATE, PLACE, ENTITY, OTHER)
# Types whose answer is a name.
NAME_TYPES = frozenset({PERSON, PLACE, ENTITY})

_WHAT = r"\b(?:what|which)\s+(?:\w+\s+)?"  # "what percentage", "which wildly popular show"
_TYPE_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        NUMBER,
        re.compile(
            rf"\bhow ({alternation(QUANTITY_ADVERBS)})\b|\bwhat (?:was |is |were |are )?the (?:\w+ )?({alternation(QUANTITY_NOUNS)})\b"
            rf"|\bwhat ({alternation(QUANTITY_NOUNS)})\b"
        ),
    ),
    (PERSON, re.compile(rf"\bwho(m|se)?\b|\b(which|what) ({alternation(PERSON_NOUNS)})\b")),
    (DATE, re.compile(rf"\bwhen\b|\b(what|which) ({alternation(TIME_NOUNS)})\b")),
    (PLACE, re.compile(rf"\bwhere\b|{_WHAT}({alternation(PLACE_NOUNS)})\b|\bin what (city|country|state)\b")),
    (ENTITY, re.compile(r"\bwhich\b")),
)


def answer_type(question: str) -> str:
    """'number', 'person', 'date', 'place', 'entity' (any other "which ...") or 'other', from the wording.

    >>> answer_type("How many people died?"), answer_type("Which company reported record revenue?")
    ('number', 'person')
    """
    text = question.lower()
    return next((kind for kind, rule in _TYPE_RULES if rule.search(text)), OTHER)


@dataclass(frozen=True)
class Term:
    """A content word of the question: as written (lowercased), stemmed (`match_stem`), its rarity weight, and whether
    it names."""

    word: str
    stem: str
    weight: float
    is_name: bool = False


@dataclass(frozen=True)
class Question:
    """One question, analysed. `terms` are its content words, unique by stem, heaviest first."""

    text: str
    answer_type: str
    terms: tuple[Term, ...]
    names: frozenset[str]
    numbers: frozenset[str]
    window: TimeWindow | None = None
    # Stems of the terms the question writes as acronyms ("ECB"): a passage may spell them out instead.
    acronyms: frozenset[str] = frozenset()
    # The day recency is measured from: the day the question is asked on, or the newest article's day when the
    # library holds nothing that recent (asked today of last year's news, last year's news is the latest).
    recent_until: date | None = None

    @property
    def weights(self) -> dict[str, float]:
        """stem -> weight."""
        return {term.stem: term.weight for term in self.terms}

    @property
    def total_weight(self) -> float:
        return sum(term.weight for term in self.terms) or 1.0

    @property
    def subject(self) -> frozenset[str]:
        """Stems of what the question is about: the names it gives, else its heaviest term."""
        named = frozenset(term.stem for term in self.terms if term.is_name)
        return named or frozenset(term.stem for term in self.terms[:1])

    @property
    def relation(self) -> frozenset[str]:
        """Stems of what it asks about its subject: the content words that are not names ("population", "response")."""
        return frozenset(term.stem for term in self.terms if not term.is_name)

    def share(self, stems: set[str] | frozenset[str], within: frozenset[str] | None = None) -> float:
        """The share of the question's weight (or of the `within` terms' weight) whose stems are in `stems`."""
        chosen = [t for t in self.terms if within is None or t.stem in within]
        total = sum(t.weight for t in chosen)
        return sum(t.weight for t in chosen if t.stem in stems) / total if total > 0 else 0.0

    @property
    def asks_for_name(self) -> bool:
        return self.answer_type in NAME_TYPES


def analyse(
    text: str, rarity: Callable[[str, str], float], as_of: date | None = None, newest: date | None = None
) -> Question:
    """The `Question` record of `text`; `rarity(word, stem)` weighs its words, `as_of` dates its time phrase.

    `newest` is the newest article's day in the library, when known (see `Question.recent_until`).

    >>> from assistant.rarity import Rarity
    >>> q = analyse("What figures did Hamas report?", Rarity())
    >>> q.answer_type, [t.word for t in q.terms], sorted(q.names)
    ('number', ['hamas', 'figures'], ['hamas'])
    """
    # A capitalised first word is only a sentence start ("Approximately how much ..."), unless it is an
    # acronym ("NASA is scheduled ...", "NFL owners ...").
    opening = (re.findall(r"[\w']+", text)[:1] or [""])[0]
    own_names = names(text) - ({first_word(text)} if not (len(opening) > 1 and opening.isupper()) else set())
    found: dict[str, Term] = {}
    # "Kestrel-1" is one term, not "kestrel" and "1": it is what tells the mission from Kestrel-2.
    designated = designations(text)
    for designation in sorted(designated):
        found[designation] = Term(designation, designation, rarity(designation, designation), is_name=True)
    parts = {part for designation in designated for part in tokens(designation)}
    for token in tokens(text):
        if token in STOPWORDS or token in QUESTION_WORDS or token in AUXILIARIES or token in parts:
            continue
        if len(token) < 2 and not token.isdigit():
            continue
        key = match_stem(token)
        if key not in found:  # rarity looks the word up in the keyword index, which stems lightly
            found[key] = Term(token, key, rarity(token, stem(token)), is_name=token in own_names)
    terms = tuple(sorted(found.values(), key=lambda term: (-term.weight, term.stem)))
    return Question(
        text=text,
        answer_type=answer_type(text),
        terms=terms,
        names=frozenset(own_names),
        numbers=frozenset(numbers(text) - parts),
        acronyms=frozenset(match_stem(acronym.lower()) for acronym in written_acronyms(text)) & set(found),
        window=time_window(text, as_of) if as_of else None,
        recent_until=min(as_of, newest) if as_of and newest else as_of,
    )
