"""The answering chain: condense follow-up -> retrieve -> answer -> cite and verify, behind the `Assistant` API."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from langchain_core.runnables import Runnable, RunnableLambda

from assistant.answer import Draft, ExtractiveAnswerer, LLMAnswerer, abstention_text
from assistant.citations import split_answer, verify
from assistant.dates import TimeWindow, human_date, parse_as_of
from assistant.errors import BadQuestionError, EmptyStoreError
from assistant.filters import Filters
from assistant.library import StoredArticles
from assistant.models import Answer, AnswerSentence, Citation, Passage
from assistant.question import NUMBER, Question, analyse
from assistant.rarity import Rarity
from assistant.reader import load_model
from assistant.retrieval import Retriever
from assistant.settings import Settings
from assistant.store import Store
from assistant.text import clean_untrusted, first_word, names, tokens
from assistant.timing import ms_since
from assistant.words import (
    AUXILIARIES,
    FOLLOWUP_OPENERS,
    FUNCTION_WORDS,
    PRONOUNS,
    QUESTION_WORDS,
    STOPWORDS,
    alternation,
)

__all__ = ["Assistant", "Turn", "rewrite_followup"]

History = Sequence[dict[str, str]] | Sequence[tuple[str, str]] | None
_FOLLOWUP_START = re.compile(rf"^\s*({alternation(FOLLOWUP_OPENERS)})\b", re.I)
_POSSESSIVE = re.compile(r"['\u2019]s$")
_PRONOUN = re.compile(rf"\b({alternation(PRONOUNS)})\b", re.I)
NOT_IN_ARTICLES = "NOT IN ARTICLES"
EXTRACTIVE = "extractive"


@dataclass(slots=True)
class Turn:
    """One question on its way through the steps: what was asked, then what each step found.

    `ask` and `stream` run the same steps on it (condense, retrieve, answer, finish); streaming only
    yields the answer step's pieces as they come.
    """

    question: str
    history: History
    k: int
    filters: Filters
    as_of: date
    answerer: str
    started: float
    timings: dict[str, float] = field(default_factory=dict)
    question_for_search: str = ""
    analysed: Question | None = None
    retrieved: list[Passage] = field(default_factory=list)
    context: list[Passage] = field(default_factory=list)
    window: TimeWindow | None = None
    draft: Draft | None = None


def _clean_history(history: History) -> History:
    """The turns with their text cleaned (`clean_untrusted`), in the shape they came in."""
    if not history:
        return history
    cleaned: list[Any] = []
    for turn in history:
        if isinstance(turn, dict):
            cleaned.append(
                {key: clean_untrusted(value) if isinstance(value, str) else value for key, value in turn.items()}
            )
        else:
            cleaned.append(tuple(clean_untrusted(part) if isinstance(part, str) else part for part in turn))
    return cleaned


def user_turns(history: History) -> list[str]:
    """The user's earlier questions, from OpenAI-style messages or (user, assistant) pairs."""
    turns: list[str] = []
    for item in history or []:
        if isinstance(item, dict):
            if item.get("role") == "user" and isinstance(item.get("content"), str):
                turns.append(item["content"])
        elif isinstance(item, (tuple, list)) and item and isinstance(item[0], str):
            turns.append(item[0])
    return turns


def is_followup(question: str) -> bool:
    """A question that leans on the conversation: opens with "and/what about", or is too thin to stand alone.

    A pronoun alone does not make a follow-up: "the race that ended on Tuesday" stands on its own
    when the question names enough of its subject.
    """
    content = [t for t in tokens(question) if t not in STOPWORDS and t not in QUESTION_WORDS]
    thin = len(content) < 2 or (bool(_PRONOUN.search(question)) and len(content) <= 2 and not names(question))
    return bool(_FOLLOWUP_START.search(question) or thin)


def rewrite_followup(question: str, history: History) -> str:
    """A standalone question from a follow-up, by a fixed rule (the extractive mode needs no LLM).

    A follow-up that only brings other names ("And what did Israel say?") asks the previous question
    about them: the previous question with its names replaced. Otherwise the previous question's
    words are carried over, except function words and, when the follow-up names someone, its names.

    >>> rewrite_followup("And what did Israel say?", [("What figures did Hamas report?", "...")])
    'What figures did Israel report?'
    >>> rewrite_followup("What about the deposit rate?", [("Did the ECB cut rates?", "...")])
    'What about the deposit rate about ECB cut rates?'
    """
    previous = user_turns(history)
    if not previous or not is_followup(question):
        return question
    last = previous[-1]
    new_names = names(question) - {first_word(question)}
    old_names = names(last) - {first_word(last)}
    own = set(tokens(question))
    if new_names and old_names and not _content_words(question) - new_names:
        return _with_names_replaced(last, old_names, _name_phrase(question, new_names))
    carried = []
    for word in re.findall(r"[\w'%$.,-]+", last):
        bare = word.strip(".,?!'\"")
        low = bare.lower()
        if not bare or low in FUNCTION_WORDS or low in QUESTION_WORDS or low in AUXILIARIES or low in own:
            continue
        if new_names and low in old_names:
            continue
        carried.append(bare)
    if not carried:
        return question
    return f"{question.rstrip(' ?')} about {' '.join(dict.fromkeys(carried))}?"


def _content_words(text: str) -> set[str]:
    return {t for t in tokens(text) if t not in STOPWORDS and t not in QUESTION_WORDS and t not in AUXILIARIES}


def _name_phrase(text: str, found: set[str]) -> str:
    """The names of `text` as written, in order ("New York Times")."""
    return " ".join(word for word in re.findall(r"[\w'\u2019-]+", text) if word.lower() in found)


def _with_names_replaced(text: str, old: set[str], phrase: str) -> str:
    """`text` with its first run of adjacent names (as `names` finds them) replaced by `phrase`.

    >>> _with_names_replaced("What did Vladimir Putin say about Gaza?", {"vladimir", "putin", "gaza"}, "Joe Biden")
    'What did Joe Biden say about Gaza?'
    """
    words = list(re.finditer(r"[\w'\u2019-]+", text))
    named = [i > 0 and _POSSESSIVE.sub("", m.group(0)).lower() in old for i, m in enumerate(words)]
    if True not in named:
        return text
    first = named.index(True)
    last = first
    while last + 1 < len(words) and named[last + 1] and not text[words[last].end() : words[last + 1].start()].strip():
        last += 1
    return text[: words[first].start()] + phrase + text[words[last].end() :]


class Assistant:
    """Dossier's question answering over a store of articles.

    >>> assistant = Assistant.from_settings(Settings(store="data/store"))        # doctest: +SKIP
    >>> answer = assistant.ask("What figures did Hamas report?")                   # doctest: +SKIP
    >>> answer.text                                                                # doctest: +SKIP
    'As of 6 June 2024: The Hamas-run Gaza health ministry reported ... [1]'
    >>> answer.citations[0].sentence                                               # doctest: +SKIP

    Its articles are `assistant.stored` (`StoredArticles`): the doors manage them through
    `Library(assistant.stored, settings)`, which adds their rules (uploads, read-only).
    """

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.stored = StoredArticles(store, settings)
        self.retriever = Retriever(store, settings.max_per_article, reranker=settings.reranker)
        self.rarity = Rarity(self.retriever.lexical)
        self.extractive = ExtractiveAnswerer(
            rarity=self.rarity,
            embed=store.embedder.encode_cached,
            model=load_model(settings.reader_weights or None),
            word_vectors=store.words.lookup,
            shortlist=settings.reader_shortlist or None,
        )
        self._llm: LLMAnswerer | None = None
        self.chain: Runnable[Turn, Answer] = (
            RunnableLambda(self._condense)
            | RunnableLambda(self._retrieve)
            | RunnableLambda(self._answer)
            | RunnableLambda(self._finish)
        )

    @classmethod
    def from_settings(cls, settings: Settings, store: Store | None = None) -> Assistant:
        return cls(settings, store or Store.from_settings(settings))

    @property
    def answerer_name(self) -> str:
        """The answerer used when a question names none: the configured one."""
        return self.settings.llm

    @property
    def answerers(self) -> list[str]:
        """The answerers a question may choose: the configured LLM (if any) first, and the extractive one."""
        return list(dict.fromkeys([self.settings.llm, EXTRACTIVE]))

    def _llm_for(self, turn: Turn) -> LLMAnswerer | None:
        return None if turn.answerer == EXTRACTIVE else self.llm

    @property
    def llm(self) -> LLMAnswerer | None:
        if self.settings.llm == "extractive":
            return None
        if self._llm is None:
            s = self.settings
            self._llm = LLMAnswerer(s.llm, s.openai_base_url, s.openai_api_key, s.ollama_url, s.llm_timeout)
        return self._llm

    # -- questions -------------------------------------------------------------------------------

    def ask(
        self,
        question: str,
        history: History = None,
        *,
        k: int | None = None,
        filters: Filters | None = None,
        as_of: date | str | None = None,
        answerer: str | None = None,
    ) -> Answer:
        """Answer `question` (a follow-up when `history` holds earlier turns) with verified citations.

        `answerer` is one of `answerers` (default: the configured one).
        """
        return self.chain.invoke(self._start(question, history, k, filters, as_of, answerer))

    def stream(
        self,
        question: str,
        history: History = None,
        *,
        k: int | None = None,
        filters: Filters | None = None,
        as_of: date | str | None = None,
        answerer: str | None = None,
    ) -> Iterator[str | Answer]:
        """Yield pieces of answer text as they are produced, then the final, verified `Answer`.

        With an LLM the pieces are the model's tokens (with raw `[n]` markers); the final `Answer`
        is what to show, since verification may remove sentences.
        """
        turn = self._retrieve(self._condense(self._start(question, history, k, filters, as_of, answerer)))
        pieces = self._answer_pieces(turn)
        if self._llm_for(turn) is not None:
            yield from pieces
            yield self._finish(turn)
            return
        # The extractive answer is whole at once: its pieces are the final text's words, "As of ..." first,
        # so what streams in is what stays.
        for _ in pieces:
            pass
        answer = self._finish(turn)
        yield from re.findall(r"\S+\s*", answer.text)
        yield answer

    def _start(
        self,
        question: str,
        history: History,
        k: int | None,
        filters: Filters | None,
        as_of: date | str | None,
        answerer: str | None = None,
    ) -> Turn:
        # Every door (API, chat, CLI) comes through here: untrusted text is cleaned once, before anything encodes it.
        question = clean_untrusted(question or "").strip()
        history = _clean_history(history)
        if filters is not None:
            filters = dataclasses.replace(
                filters,
                sources=tuple(map(clean_untrusted, filters.sources)),
                article_ids=tuple(map(clean_untrusted, filters.article_ids)),
            )
        if not question:
            raise BadQuestionError("the question is empty: type a question about the articles")
        if len(question) > self.settings.max_question_chars:
            raise BadQuestionError(
                f"the question is {len(question)} characters long; the limit is {self.settings.max_question_chars} (max_question_chars)"
            )
        if self.store.article_count() == 0:
            raise EmptyStoreError(self.store.location)
        if filters is not None:
            filters.check()
        answerer = answerer or self.answerer_name
        if answerer not in self.answerers:
            raise BadQuestionError(
                f"answerer {answerer!r} is not configured here: choose one of {', '.join(self.answerers)} (llm)"
            )
        k = k or self.settings.k
        if not 1 <= k <= 50:
            raise BadQuestionError(f"k must be between 1 and 50, not {k}")
        return Turn(
            question=question,
            history=history,
            k=k,
            filters=filters or Filters(),
            as_of=parse_as_of(as_of),
            answerer=answerer,
            started=time.perf_counter(),
        )

    def _condense(self, turn: Turn) -> Turn:
        t = time.perf_counter()
        llm = self._llm_for(turn)
        if llm is not None and user_turns(turn.history) and is_followup(turn.question):
            turns = "\n".join(f"User: {text}" for text in user_turns(turn.history)[-3:])
            turn.question_for_search = llm.rewrite(turn.question, turns)
        else:
            turn.question_for_search = rewrite_followup(turn.question, turn.history)
        lexical = self.retriever.lexical
        lexical.refresh()  # the words' rarity and the newest article come from the store's current index
        with lexical.guard.reading():
            turn.analysed = analyse(turn.question_for_search, self.rarity, turn.as_of, lexical.newest())
        turn.timings["condense_ms"] = ms_since(t)
        return turn

    def _retrieve(self, turn: Turn) -> Turn:
        assert turn.analysed is not None, "condense comes first"
        found = self.retriever.retrieve(turn.analysed, turn.k, turn.filters, turn.as_of)
        turn.retrieved = found.passages
        turn.context = found.passages[: turn.k]
        turn.window = found.window
        turn.timings.update(found.timings)
        return turn

    def _answer(self, turn: Turn) -> Turn:
        for _ in self._answer_pieces(turn):
            pass
        return turn

    def _answer_pieces(self, turn: Turn) -> Iterator[str]:
        """Draft the answer into `turn.draft`, yielding an LLM's tokens as they arrive (the extractive answer has none)."""
        t = time.perf_counter()
        llm = self._llm_for(turn)
        if not turn.context:
            turn.draft = Draft("", [], abstained=True)
        elif llm is None:
            assert turn.analysed is not None, "condense comes first"
            vector = self.store.embedder.encode_query(turn.question_for_search)
            turn.draft = self.extractive.answer(turn.analysed, turn.context, vector)
        else:
            tokens: list[str] = []
            for token in llm.stream(turn.question_for_search, turn.context, turn.as_of.isoformat()):
                tokens.append(token)
                yield token
            turn.draft = self._llm_draft("".join(tokens), turn.context)
        turn.timings["answer_ms"] = ms_since(t)

    @staticmethod
    def _llm_draft(text: str, context: list[Any]) -> Draft:
        if NOT_IN_ARTICLES in text.upper() and len(text) < 3 * len(NOT_IN_ARTICLES):
            return Draft("", [], abstained=True)
        return Draft(text.strip(), context, abstained=False)

    def _finish(self, turn: Turn) -> Answer:
        t = time.perf_counter()
        draft = turn.draft
        assert draft is not None, "the answer step comes first"
        llm = self._llm_for(turn)
        sentences: list[AnswerSentence] = []
        citations: list[Citation] = []
        dangling: list[int] = []
        if not draft.abstained:
            embed = self.store.embedder.encode if llm is not None else None
            sentences, citations, dangling = verify(
                list(draft.pieces) if draft.pieces is not None else split_answer(draft.text), draft.passages, embed
            )
        kept = [s for s in sentences if not s.unsupported or self.settings.keep_unsupported]
        removed = [s for s in sentences if s.unsupported and not self.settings.keep_unsupported]
        uncited = [s for s in kept if not s.citations]
        abstained = draft.abstained or not [s for s in kept if not s.unsupported]
        if abstained:
            text = abstention_text(turn.filters.describe(), found=bool(turn.retrieved))
            citations = []
        else:
            body = " ".join(f"{s.text} " + "".join(f"[{n}]" for n in s.citations) for s in kept).strip()
            text = self._dated(turn, citations) + body
            notes = []
            if removed:
                notes.append(f"{len(removed)} sentence(s) removed: the cited passages do not support them.")
            if dangling:
                notes.append(
                    f"Citation marker(s) {', '.join(f'[{n}]' for n in sorted(set(dangling)))} pointed to no passage and were dropped."
                )
            if uncited:
                notes.append(f"{len(uncited)} sentence(s) cite no passage.")
            if notes:
                text += "\n\nNote: " + " ".join(notes)
        turn.timings["verify_ms"] = ms_since(t)
        turn.timings["total_ms"] = ms_since(turn.started)
        return Answer(
            question=turn.question,
            text=text,
            citations=citations if not abstained else [],
            abstained=abstained,
            timings=turn.timings,
            sentences=kept if not abstained else [],
            removed=removed,
            closest=turn.retrieved[:3] if abstained else [],
            retrieved=turn.retrieved,
            rewritten_question=turn.question_for_search if turn.question_for_search != turn.question else "",
            as_of=turn.as_of.isoformat(),
            answerer=turn.answerer,
            confidence=round(draft.confidence, 4) if llm is None and turn.context else None,
        )

    @staticmethod
    def _dated(turn: Turn, citations: list[Any]) -> str:
        """'As of 6 June 2024: ' when timing matters (a time expression, or figures that change)."""
        numeric = turn.analysed is not None and turn.analysed.answer_type == NUMBER
        if not citations or not (turn.window or numeric):
            return ""
        dates = sorted({c.published for c in citations if c.published})
        return f"As of {human_date(dates[-1])}: " if dates else ""
