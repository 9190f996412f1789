"""Answerers: the extractive one (no LLM: picks and cites the passages' own sentences) and LLM ones via LangChain.

Both return a draft: answer text with `[n]` markers and the passages the markers number. The chain
then verifies the draft (`assistant.citations`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from assistant.errors import BackendUnavailableError, ConfigError
from assistant.models import Passage
from assistant.text import (
    QUESTION_WORDS,
    STOPWORDS,
    absent_names,
    first_word,
    has_number,
    names,
    numbers,
    stem,
    terms,
    tokens,
)
from ingest.models import CAPTIONS_HEADER
from ingest.sentences import paragraph_spans, sentence_spans

_ATTRIBUTION = re.compile(
    r"\b(said|says|say|told|tells|according to|added|adds|stated|states|claimed|claims|charged|wrote|writes|"
    r"argued|noted|insisted|warned|announced|explained|asked)\b",
    re.I,
)
# The question's rarest word must be in a passage to trust it only when the word carries at least this
# share of the question's (idf) weight: measured on realtimeqa-dev and squad2-dev (docs/quality.md).
RARE_TERM_SHARE = 0.15
# Question types whose answer is a name.
NAME_KINDS = frozenset({"person", "place", "entity"})
_CALENDAR = frozenset(
    "monday tuesday wednesday thursday friday saturday sunday january february march april may june july "  # noqa: SIM905
    "august september october november december".split()
)
_QUOTE = re.compile(r"[\"\u201c\u201d]")
_DATE = re.compile(
    r"\b(\d{4}|january|february|march|april|may|june|july|august|september|october|november|december|"
    r"monday|tuesday|wednesday|thursday|friday|saturday|sunday|yesterday|today|last week|this week)\b",
    re.I,
)


@dataclass(frozen=True)
class Draft:
    """An answer before verification: text with `[n]` markers, the numbered passages, and abstention."""

    text: str
    passages: list[Passage]
    abstained: bool
    confidence: float = 0.0
    # The answer's sentences with their markers when the answerer knows them (extractive), so
    # verification need not split the text again (a splitter may cut "Mr." or a quote differently).
    pieces: tuple[tuple[str, tuple[int, ...]], ...] | None = None


def question_type(question: str) -> str:
    """'number', 'person', 'date', 'place', 'entity' (any other "which ...") or 'other', from the question's wording."""
    q = question.lower()
    if re.search(
        r"\bhow (many|much|long|far|old|big|large|high|fast|wide|tall|deep|heavy|often)\b|\bwhat (figures?|number|numbers|percentage|share|"
        r"proportion|rate|amount|price|cost|fee|temperature|time|score|total|sum)\b|\bwhat was the (death toll|toll)\b",
        q,
    ):
        return "number"
    if re.search(
        r"\bwho(m|se)?\b|\b(which|what) (person|people|company|companies|country|countries|team|organi[sz]ation|"
        r"group|party|man|woman|leader|president|official|automaker|airline|brand|firm|nation)\b",
        q,
    ):
        return "person"
    if re.search(r"\bwhen\b|\bwhat (year|date|day|month)\b|\bwhich (year|date|day|month)\b", q):
        return "date"
    if re.search(
        r"\bwhere\b|\bwhich (city|town|state|place|region|village|venue)\b|\bin what (city|country|state)\b", q
    ):
        return "place"
    if re.search(r"\bwhich\b", q):
        return "entity"
    return "other"


@dataclass(frozen=True)
class Candidate:
    """A passage sentence scored as an answer; `confidence` decides between answering and abstaining."""

    passage_rank: int
    passage: Passage
    start: int  # offsets in the passage text
    end: int
    text: str
    score: float
    coverage: float  # share of the question's (idf-weighted) terms found in the sentence
    context: float  # ... in the sentence, its passage and its title
    type_match: float
    rare_missing: bool  # the question's rarest term is absent from the passage
    numbers_missing: bool  # a number of the question is absent from the passage
    names_missing: int = 0  # names of the question absent from the passage
    semantic: float = 0.0

    @property
    def confidence(self) -> float:
        value = 0.5 * self.context + 0.3 * self.coverage + 0.2 * max(self.semantic, 0.0)
        # A "when" question answered by a sentence with no date (or "how many" with no number) is not answered.
        wrong_type = 0.6 if self.type_match == 0.0 else 1.0
        return value * wrong_type * _missing_penalty(self.rare_missing, self.numbers_missing, self.names_missing)


def _missing_penalty(rare_missing: bool, numbers_missing: bool, names_missing: int) -> float:
    """How much less to trust a sentence whose passage lacks the question's rarest term, numbers or names.

    A passage that never mentions someone or something the question names is usually about something
    else, however many other words it shares with the question.
    """
    return (0.6 if rare_missing else 1.0) * (0.5 if numbers_missing else 1.0) * 0.8**names_missing


class ExtractiveAnswerer:
    """Answers with the retrieved passages' own sentences, chosen by meaning, word overlap and answer type.

    `idf` weighs question words by rarity (from the lexical index); `embed` (optional) gives
    sentence-level semantic similarity. No network, no LLM: every sentence is verbatim and cited.
    It abstains when the best sentence's confidence is under `min_confidence`.
    """

    def __init__(
        self,
        idf: Callable[[str], float],
        embed: Callable[[list[str]], np.ndarray] | None = None,
        min_confidence: float = 0.3,
        max_sentences: int = 3,
        semantic_candidates: int = 4,
    ) -> None:
        self.idf = idf
        self.embed = embed
        self.min_confidence = min_confidence
        self.max_sentences = max_sentences
        self.semantic_candidates = semantic_candidates

    def answer(self, question: str, passages: list[Passage], query_vector: np.ndarray | None = None) -> Draft:
        candidates = self.rank_sentences(question, passages, query_vector)
        confidence = candidates[0].confidence if candidates else 0.0
        if not candidates or confidence < self.min_confidence:
            return Draft("", [], abstained=True, confidence=confidence)
        chosen = self._choose(question, candidates)
        # Sentences of one article in the article's order (a quote after the sentence naming its speaker).
        first_rank = {c.passage.article_id: c.passage_rank for c in sorted(chosen, key=lambda c: c.passage_rank)}
        ordered = sorted(chosen, key=lambda c: (first_rank[c.passage.article_id], c.passage.start + c.start))
        cited = [candidate.passage for candidate in ordered]
        pieces = tuple((candidate.text, (n,)) for n, candidate in enumerate(ordered, start=1))
        text = " ".join(f"{sentence} [{n}]" for sentence, (n,) in pieces)
        return Draft(text, cited, abstained=False, confidence=confidence, pieces=pieces)

    def rank_sentences(
        self, question: str, passages: list[Passage], query_vector: np.ndarray | None
    ) -> list[Candidate]:
        """Every sentence of the passages, scored; best first."""
        kind = question_type(question)
        q_terms = set(terms(question))
        q_weight = {term: self.idf(term) for term in q_terms}
        total = sum(q_weight.values()) or 1.0
        # Ties go to the alphabetically first term, so the same question is judged the same in every process.
        rarest = max(sorted(q_weight), key=lambda term: q_weight[term]) if q_weight else ""
        if rarest and q_weight[rarest] / total < RARE_TERM_SHARE:
            rarest = ""  # in a long question no single word decides what it is about
        q_numbers, q_names = numbers(question), names(question)
        # The first word of a question is capitalised whether or not it is a name ("Did", "Name").
        q_own_names = q_names - {first_word(question)}
        candidates: list[Candidate] = []
        for rank, passage in enumerate(passages):
            passage_terms = set(terms(passage.title + " " + passage.text))
            passage_numbers = numbers(passage.title + " " + passage.text)
            rare_missing = bool(rarest) and rarest not in passage_terms
            numbers_missing = bool(q_numbers - passage_numbers)
            names_missing = len(absent_names(q_own_names, passage.title + " " + passage.text))
            title_terms = set(terms(passage.title))
            for start, end in _answer_sentences(passage.text):
                text = passage.text[start:end]
                s_terms = set(terms(text))
                coverage = sum(q_weight[t] for t in q_terms & s_terms) / total
                context = sum(q_weight[t] for t in q_terms & (s_terms | title_terms)) / total
                novelty = min(1.0, len(s_terms - q_terms) / 4)
                type_match = _type_score(kind, text, q_numbers, q_names)
                score = 0.45 * coverage + 0.15 * context + 0.2 * type_match + 0.1 / (1 + rank) + 0.1 * novelty
                if len(tokens(text)) < 4:
                    score *= 0.5
                # Rank as confidence judges: a sentence it would not trust must not outrank one it would.
                score *= _missing_penalty(rare_missing, numbers_missing, names_missing)
                candidates.append(
                    Candidate(
                        rank,
                        passage,
                        start,
                        end,
                        text,
                        score,
                        coverage,
                        context,
                        type_match,
                        rare_missing,
                        numbers_missing,
                        names_missing,
                    )
                )
        candidates.sort(key=lambda c: c.score, reverse=True)
        if self.embed is not None and query_vector is not None and candidates:
            top = candidates[: self.semantic_candidates]
            similarity = self.embed([c.text for c in top]) @ query_vector
            rescored = [
                replace(c, score=0.7 * c.score + 0.3 * max(0.0, float(sim)) / 0.8, semantic=float(sim))
                for c, sim in zip(top, similarity, strict=True)
            ]
            rest = [replace(c, score=c.score * 0.7) for c in candidates[self.semantic_candidates :]]
            candidates = sorted(rescored, key=lambda c: c.score, reverse=True) + rest
        return candidates

    def _choose(self, question: str, candidates: list[Candidate]) -> list[Candidate]:
        """The best sentence, its speaker when it is an unattributed quote, and up to two that add facts."""
        kind = question_type(question)
        best = candidates[0]
        chosen = [best]
        chosen += _attribution_for(best)
        if kind in NAME_KINDS and not entities(best.text) - names(question):
            chosen += _naming_sentence_before(best, names(question))
        known_facts = _facts(best.text, kind)
        for candidate in candidates[1:]:
            if len(chosen) >= self.max_sentences:
                break
            if (
                candidate.score < 0.85 * best.score
                or candidate.coverage < max(0.5 * best.coverage, 0.2)
                or any(_same(candidate, c) for c in chosen)
            ):
                continue
            facts = _facts(candidate.text, kind)
            if not facts - known_facts or len(candidate.text) > 400:
                continue
            # A quote brings along the neighbouring sentence that names its speaker, if it has room.
            speaker = [c for c in _attribution_for(candidate) if not any(_same(c, other) for other in chosen)]
            if len(chosen) + 1 + len(speaker) > self.max_sentences:
                continue
            chosen += [candidate, *speaker]
            known_facts |= facts
        return chosen[: self.max_sentences]


def _answer_sentences(text: str) -> list[tuple[int, int]]:
    """Sentences of a passage that can be answers: not headings, not the caption header."""
    spans = []
    for start, end in sentence_spans(text):
        sentence = text[start:end]
        # Headings, bylines and standfirsts carry no full stop, and a question answers nothing.
        if sentence == CAPTIONS_HEADER or not re.search(r"[.!][\"'\u201d\u2019)]*$", sentence):
            continue
        spans.append((start, end))
    return spans


_DATE_NUMBER = re.compile(
    r"\b(?:(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?\s+\d{1,2}(?:st|nd|rd|th)?\b(?:,?\s+\d{4})?"
    r"|\d{1,2}(?:st|nd|rd|th)?\s+(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\b(?:\s+\d{4})?"
    r"|\b(?:1[89]|20)\d{2}\b)",
    re.I,
)


def figures(text: str) -> set[str]:
    """Numbers that are quantities, not dates: "36,000" counts, "October 7, 2023" does not."""
    return numbers(_DATE_NUMBER.sub(" ", text))


def _type_score(kind: str, text: str, q_numbers: set[str], q_names: set[str]) -> float:
    if kind == "number":
        if figures(text) - q_numbers:
            return 1.0
        return 0.3 if has_number(text) else 0.0
    if kind in {"person", "place"}:
        return 1.0 if entities(text) - q_names else 0.0
    if kind == "date":
        return 1.0 if _DATE.search(text) else 0.0
    if kind == "entity":  # "which show ...": often a name, but not always ("which measure ...")
        return 1.0 if entities(text) - q_names else 0.3
    return 0.5


def _facts(text: str, kind: str) -> set[str]:
    if kind == "number":
        return figures(text)
    if kind in NAME_KINDS:
        return names(text)
    return {stem(t) for t in tokens(text) if t not in STOPWORDS and t not in QUESTION_WORDS}


def _same(a: Candidate, b: Candidate) -> bool:
    return a.passage.chunk_id == b.passage.chunk_id and a.start == b.start


def entities(text: str) -> set[str]:
    """Names of people, places and things: `names` without days and months, which name no one."""
    return names(text) - _CALENDAR


def _naming_sentence_before(candidate: Candidate, q_names: set[str]) -> list[Candidate]:
    """The sentence just before `candidate` in its passage, when it names someone or something new.

    A "which show ..." question is often best matched by a sentence that says "the show" because the one
    before named it ("Squid Game is coming back. Netflix announced that the show ...").
    """
    spans = _answer_sentences(candidate.passage.text)
    index = next((i for i, span in enumerate(spans) if span[0] == candidate.start), None)
    if not index:
        return []
    start, end = spans[index - 1]
    text = candidate.passage.text[start:end]
    if not entities(text) - q_names or len(text) > 400:
        return []
    return [replace(candidate, start=start, end=end, text=text, coverage=0.0)]


def _attribution_for(candidate: Candidate) -> list[Candidate]:
    """A quote with no speaker in its own sentence takes the neighbouring sentence that names one."""
    if not _QUOTE.search(candidate.text) or _ATTRIBUTION.search(candidate.text):
        return []
    text = candidate.passage.text
    for p_start, p_end in paragraph_spans(text):
        if p_start <= candidate.start < p_end:
            spans = sentence_spans(text, p_start, p_end)
            index = next((i for i, span in enumerate(spans) if span[0] == candidate.start), None)
            if index is None:
                return []
            for neighbour in (index + 1, index - 1):
                if 0 <= neighbour < len(spans):
                    start, end = spans[neighbour]
                    if _ATTRIBUTION.search(text[start:end]):
                        return [replace(candidate, start=start, end=end, text=text[start:end], coverage=0.0)]
    return []


# -- LLM answerers --------------------------------------------------------------------------------


def load_prompt(name: str) -> str:
    """A prompt template from the `prompts` package, by file name without `.txt`."""
    from importlib.resources import files

    try:
        return (files("prompts") / f"{name}.txt").read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"prompt {name!r} not found in prompts/") from exc


def number_passages(passages: list[Passage]) -> str:
    """The passages as the numbered, delimited block the prompt refers to."""
    blocks = []
    for n, passage in enumerate(passages, start=1):
        header = " | ".join(part for part in (passage.title, passage.source, passage.published) if part)
        blocks.append(f"[{n}] {header}\n<passage>\n{passage.text}\n</passage>")
    return "\n\n".join(blocks)


class LLMAnswerer:
    """An answer written by a chat model through LangChain, citing the numbered passages it was given.

    `spec` is 'ollama:MODEL' or 'openai:MODEL'; the OpenAI kind talks to any OpenAI-compatible server.
    """

    def __init__(
        self, spec: str, base_url: str = "", api_key: str = "", ollama_url: str = "", timeout: float = 60.0
    ) -> None:
        self.spec = spec
        kind, _, self.model = spec.partition(":")
        self.kind = kind
        self.url = (base_url or "https://api.openai.com/v1") if kind == "openai" else ollama_url
        self.chat = self._build(kind, api_key, timeout)

    def _build(self, kind: str, api_key: str, timeout: float) -> Any:
        if kind == "openai":
            try:
                from langchain_openai import ChatOpenAI
            except ImportError as exc:
                raise ConfigError(
                    "llm 'openai:...' needs the package langchain-openai: pip install langchain-openai"
                ) from exc
            return ChatOpenAI(
                model=self.model,
                base_url=self.url,
                api_key=api_key or "not-needed",
                timeout=timeout,
                max_retries=0,
                temperature=0,
            )
        try:
            from langchain_ollama import ChatOllama
        except ImportError as exc:
            raise ConfigError(
                "llm 'ollama:...' needs the package langchain-ollama: pip install langchain-ollama"
            ) from exc
        return ChatOllama(model=self.model, base_url=self.url, temperature=0, client_kwargs={"timeout": timeout})

    def messages(self, question: str, passages: list[Passage], today: str) -> list[tuple[str, str]]:
        system = load_prompt("answer_system")
        user = load_prompt("answer_user").format(passages=number_passages(passages), question=question, today=today)
        return [("system", system), ("human", user)]

    def stream(self, question: str, passages: list[Passage], today: str) -> Iterator[str]:
        """Tokens of the answer as the model writes them."""
        try:
            for chunk in self.chat.stream(self.messages(question, passages, today)):
                text = chunk.content if isinstance(chunk.content, str) else "".join(str(part) for part in chunk.content)
                if text:
                    yield text
        except Exception as exc:
            raise self.unavailable(exc) from exc

    def rewrite(self, question: str, history: str) -> str:
        """A standalone version of a follow-up question, written by the model."""
        prompt = load_prompt("condense").format(history=history, question=question)
        try:
            reply = self.chat.invoke([("human", prompt)])
        except Exception as exc:
            raise self.unavailable(exc) from exc
        text = reply.content if isinstance(reply.content, str) else str(reply.content)
        return text.strip().strip('"') or question

    def unavailable(self, exc: Exception) -> BackendUnavailableError:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if re.search(r"not found|does not exist|no such model|404", message, re.I):
            what = f"model {self.model!r} is not available on {self.url}"
        else:
            what = f"the {self.kind} server at {self.url} did not answer ({message})"
        return BackendUnavailableError(f"{what}: start it or check the model name, or use --llm extractive")


def abstention_text() -> str:
    return "The articles do not answer this question. The closest passages are listed below."
