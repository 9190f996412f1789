"""Answerers: the extractive one (no LLM: picks and cites the passages' own sentences) and LLM ones via LangChain.

Both return a draft: answer text with `[n]` markers and the passages the markers number. The chain
then verifies the draft (`assistant.citations`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from assistant.errors import BackendUnavailableError, ConfigError
from assistant.models import Passage
from assistant.question import NUMBER, Question, analyse
from assistant.rarity import Rarity
from assistant.reader import (
    ReaderModel,
    Sentence,
    SentenceFeatures,
    entities,
    figures,
    load_model,
    sentence_features,
    sentence_words,
    with_meaning,
)
from assistant.settings import READER_SHORTLIST
from assistant.text import match_stem, names, spelled_out, terms, written_acronyms
from assistant.words import ATTRIBUTION_VERBS, alternation
from ingest.models import CAPTIONS_HEADER
from ingest.sentences import paragraph_spans, sentence_spans

_ATTRIBUTION = re.compile(rf"\b({alternation(ATTRIBUTION_VERBS)}|according to)\b", re.I)
_QUOTE = re.compile(r"[\"\u201c\u201d]")
# Longer sentences are not added as extras: they bury the answer.
MAX_EXTRA_CHARS = 400
# Candidates encoded per question (`ReaderModel.shortlist`), the `reader_shortlist` setting's default.
SHORTLIST = READER_SHORTLIST


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


@dataclass(frozen=True)
class Candidate:
    """A passage sentence scored as an answer: `probability` that it contains the answer, from `features`."""

    passage_rank: int
    passage: Passage
    start: int  # offsets in the passage text
    end: int
    text: str
    probability: float
    features: SentenceFeatures | None = None


class ExtractiveAnswerer:
    """Answers with the retrieved passages' own sentences, ranked by one fitted, calibrated model.

    Every sentence of the passages is a candidate. `assistant.reader` describes each one (meaning from
    `embed`, coverage of the question's words weighted by `rarity`, answer type, names, retrieval rank ...)
    and gives the probability that it contains the answer. The best sentence is the answer, with up to
    two more that come close and add facts; below the model's threshold it abstains. No network, no
    LLM: every sentence is verbatim and cited.

    >>> answerer = ExtractiveAnswerer(embed=Embedder().encode_cached)           # doctest: +SKIP
    >>> answerer.answer("What figures did Hamas report?", passages).text         # doctest: +SKIP
    """

    def __init__(
        self,
        rarity: Callable[[str, str], float] | None = None,
        embed: Callable[[list[str]], np.ndarray] | None = None,
        model: ReaderModel | None = None,
        max_sentences: int = 3,
        word_vectors: Callable[[list[str]], dict[str, np.ndarray]] | None = None,
        shortlist: int | None = SHORTLIST,
    ) -> None:
        self.rarity = rarity or Rarity()
        self.embed = embed
        # Single words' vectors, from a cache that outlives the process (`Store.words`); else `embed`.
        self.word_vectors = word_vectors
        self.model = model or load_model()
        self.max_sentences = max_sentences
        # Only this many candidates, the likeliest by everything but meaning, are encoded (None: all of them).
        self.shortlist = shortlist

    def answer(
        self, question: Question | str, passages: list[Passage], query_vector: np.ndarray | None = None
    ) -> Draft:
        question = question if isinstance(question, Question) else analyse(question, self.rarity)
        return self.draft(question, self.rank_sentences(question, passages, query_vector))

    def draft(self, question: Question, candidates: list[Candidate]) -> Draft:
        """The answer from ranked candidates (best first): the best sentence and its company, or an abstention."""
        confidence = candidates[0].probability if candidates else 0.0
        if not candidates or confidence < self.model.threshold:
            return Draft("", [], abstained=True, confidence=confidence)
        lead, extras = self._choose(question, candidates)
        # The best sentence leads, with the neighbours it needs (a quote after the sentence naming its speaker);
        # the extras follow, one article's in that article's order.
        first_rank = {c.passage.article_id: c.passage_rank for c in sorted(extras, key=lambda c: c.passage_rank)}
        ordered = sorted(lead, key=lambda c: c.passage.start + c.start) + sorted(
            extras, key=lambda c: (first_rank[c.passage.article_id], c.passage.start + c.start)
        )
        cited = [candidate.passage for candidate in ordered]
        pieces = tuple((candidate.text, (n,)) for n, candidate in enumerate(ordered, start=1))
        text = " ".join(f"{sentence} [{n}]" for sentence, (n,) in pieces)
        return Draft(text, cited, abstained=False, confidence=confidence, pieces=pieces)

    def rank_sentences(
        self, question: Question | str, passages: list[Passage], query_vector: np.ndarray | None = None
    ) -> list[Candidate]:
        """Every answer sentence of the passages with its probability; best first."""
        question = question if isinstance(question, Question) else analyse(question, self.rarity)
        spans: list[tuple[int, Passage, int, int]] = []
        sentences: list[Sentence] = []
        for rank, passage in enumerate(passages):
            found = _answer_sentences(passage.text)
            for index, (start, end) in enumerate(found):
                previous = passage.text[found[index - 1][0] : found[index - 1][1]] if index else ""
                following = passage.text[found[index + 1][0] : found[index + 1][1]] if index + 1 < len(found) else ""
                spans.append((rank, passage, start, end))
                sentences.append(
                    Sentence(
                        passage.text[start:end],
                        index,
                        rank,
                        passage.title,
                        passage.text,
                        passage_starts_article=passage.start == 0,
                        previous=previous,
                        following=following,
                        passage_published=passage.published,
                    )
                )
        if not sentences:
            return []
        spelled = _spell_out_acronyms(question, passages)
        if spelled != question.text:
            query_vector = None  # the question in the passages' words is encoded instead
        features = sentence_features(
            question,
            sentences,
            [0.0] * len(sentences),
            [passage.score for _, passage, _, _ in spans],
            [bool(_ATTRIBUTION.search(s.text)) for s in sentences],
            self._word_vectors(question, sentences),
        )
        if self.embed is not None:
            kept = self.model.shortlist(features, self.shortlist) if self.shortlist else list(range(len(sentences)))
            spans, sentences = [spans[i] for i in kept], [sentences[i] for i in kept]
            semantic = self._similarities(spelled, [s.text for s in sentences], query_vector)
            features = with_meaning([features[i] for i in kept], semantic)
        candidates = [
            Candidate(rank, passage, start, end, sentence.text, self.model.probability(row), row)
            for (rank, passage, start, end), sentence, row in zip(spans, sentences, features, strict=True)
        ]
        # Ties (the same sentence in two passages) go to the better-ranked passage.
        return sorted(candidates, key=lambda c: (-c.probability, c.passage_rank, c.start))

    def _similarities(self, question: str, texts: list[str], query_vector: np.ndarray | None) -> list[float]:
        """Cosine similarity of the question with each sentence (0 for all when there is no embedder)."""
        if self.embed is None:
            return [0.0] * len(texts)
        if query_vector is None:
            query_vector = self.embed([question])[0]
        return [float(value) for value in self.embed(texts) @ query_vector]

    def _word_vectors(self, question: Question, sentences: list[Sentence]) -> dict[str, np.ndarray]:
        """Vectors of the question's terms and the sentences' content words (none when there is no embedder)."""
        if self.embed is None:
            return {}
        words = list(
            dict.fromkeys([t.word for t in question.terms] + [w for s in sentences for w in sentence_words(s.text)])
        )
        if not words:
            return {}
        if self.word_vectors is not None:
            return self.word_vectors(words)
        return dict(zip(words, self.embed(words), strict=True))

    def _choose(self, question: Question, candidates: list[Candidate]) -> tuple[list[Candidate], list[Candidate]]:
        """The best sentence with its speaker when it is an unattributed quote (or the sentence naming who it
        speaks of), and up to two more sentences that add facts (with their speakers): (lead, extras)."""
        best = candidates[0]
        chosen = [best]
        chosen += _attribution_for(best)
        if question.asks_for_name and not entities(best.text) - question.names:
            chosen += _naming_sentence_before(best, set(question.names))
        chosen = chosen[: self.max_sentences]
        lead = len(chosen)
        known_facts = _facts(best.text, question)
        floor = max(self.model.threshold, self.model.extra_ratio * best.probability)
        for candidate in candidates[1:]:
            if len(chosen) >= self.max_sentences or candidate.probability < floor:
                break
            if any(_same(candidate, c) for c in chosen) or len(candidate.text) > MAX_EXTRA_CHARS:
                continue
            facts = _facts(candidate.text, question)
            if not facts - known_facts:
                continue
            # A quote brings along the neighbouring sentence that names its speaker, if it has room.
            speaker = [c for c in _attribution_for(candidate) if not any(_same(c, other) for other in chosen)]
            if len(chosen) + 1 + len(speaker) > self.max_sentences:
                continue
            chosen += [candidate, *speaker]
            known_facts |= facts
        return chosen[:lead], chosen[lead : self.max_sentences]


def _spell_out_acronyms(question: Question, passages: list[Passage]) -> str:
    """The question with each acronym it writes followed by the name the passages spell it out as, when they do.

    The bundled model does not know that "ECB" is "the European Central Bank": a sentence that names the bank
    in full is close in meaning to "What did the European Central Bank (ECB) decide?", not to the question as
    written. The most frequent spelling in the passages wins.
    """
    if not question.acronyms:
        return question.text
    counts: Counter[tuple[str, str]] = Counter()
    for passage in passages:
        for acronym, name in spelled_out(f"{passage.title}\n{passage.text}").items():
            if match_stem(acronym) in question.acronyms:
                counts[(acronym, name)] += 1
    text = question.text
    for acronym in written_acronyms(question.text):
        spellings = [(n, name) for (a, name), n in counts.items() if a == acronym.lower()]
        if spellings:
            name = max(spellings)[1]
            text = re.sub(rf"\b{re.escape(acronym)}\b", f"{name} ({acronym})", text)
    return text


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


def _facts(text: str, question: Question) -> set[str]:
    """What a sentence states, in the terms the question's type cares about (figures, names or words)."""
    if question.answer_type == NUMBER:
        return figures(text)
    if question.asks_for_name:
        return names(text)
    return set(terms(text))


def _same(a: Candidate, b: Candidate) -> bool:
    return a.passage.chunk_id == b.passage.chunk_id and a.start == b.start


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
    if not entities(text) - q_names or len(text) > MAX_EXTRA_CHARS:
        return []
    return [replace(candidate, start=start, end=end, text=text, features=None)]


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
                        return [replace(candidate, start=start, end=end, text=text[start:end], features=None)]
    return []


# -- LLM answerers --------------------------------------------------------------------------------


def load_prompt(name: str) -> str:
    """A prompt template from the `prompts` package, by file name without `.txt`."""
    from importlib.resources import files

    try:
        return (files("prompts") / f"{name}.txt").read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"prompt {name!r} not found in prompts/") from exc


# Article text that could pass for the prompt's own structure: a `<passage>` or `</passage>` tag (any case or
# spacing), and a `[n]` marker, which is how the prompt numbers passages and how the answer cites them.
_PASSAGE_TAG = re.compile(r"<(\s*/?\s*passage)", re.IGNORECASE)
_MARKER = re.compile(r"\[(\s*\d+(?:\s*[,;]\s*\d+)*\s*)\]")


def number_passages(passages: list[Passage]) -> str:
    """The passages as the numbered, delimited block the prompt refers to.

    Article text is data and must stay inside its `<passage>` block: a tag in it loses its `<` (to `‹`) and
    a `[n]` in it becomes `(n)`, so an article can neither close its block and speak as the prompt, nor
    forge another passage's header or a citation. Headers are put on one line for the same reason.
    """

    def inert(text: str) -> str:
        return _MARKER.sub(r"(\1)", _PASSAGE_TAG.sub("\u2039\\1", text))

    blocks = []
    for n, passage in enumerate(passages, start=1):
        parts = (passage.title, passage.source, passage.published)
        header = " | ".join(inert(" ".join(part.split())) for part in parts if part)
        blocks.append(f"[{n}] {header}\n<passage>\n{inert(passage.text)}\n</passage>")
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


def abstention_text(filters: str = "", found: bool = True) -> str:
    """What an abstention says: that the articles do not answer, which filters limited the search (`filters`,
    in words), and whether any passage came close (`found`)."""
    if not found and filters:
        return f"The articles do not answer this question: no article matches the filters ({filters}). Widen or clear them."
    text = "The articles do not answer this question" + (f" within the filters ({filters})." if filters else ".")
    return text + (" The closest passages are listed below." if found else "")
