"""Batch evaluation: run a question set through the `Assistant`, score retrieval, answers, citations and abstention, report.

The pieces, in the order a run uses them:

- `load_questions` reads a JSONL or CSV question file into `EvalQuestion`s; lines it cannot use become
  `InvalidQuestion`s (reported and counted, never silently dropped).
- `prepare_store` ingests `--articles` into the given store or a cached one, and skips that work when the
  articles and the store are unchanged since the last run.
- `evaluate` asks each question (only its text and `asked_on` reach the assistant) and `score_question`
  turns each `Answer` into a `QuestionResult` with its metrics; `summarize` averages them.
- `compare_reports` sets the run against an earlier report; with a `report_dir`, `run_eval` writes
  `results.jsonl`, `summary.json`, `compare.json` and a self-contained `report.html` there
  (`assistant.report`).

Every metric is a pure function below, with its edge cases in its docstring. A metric whose denominator is
empty (no answerable question, no citation, no abstention...) is `None` (`null` in JSON), never 0.

>>> run = run_eval("examples/questions.jsonl", Settings(), articles=["examples/articles"], report_dir=Path("report"))  # doctest: +SKIP
>>> run.summary["hit@5"]                                                                                           # doctest: +SKIP
0.9286
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
import string
import sys
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from assistant import __version__
from assistant.errors import BadQuestionError, DossierError, QuestionFileError
from assistant.models import Answer, Citation, Passage
from assistant.settings import Settings

# Summary keys, in the order of summary.json, the text table and the HTML table.
RETRIEVAL_METRICS = ("hit@1", "hit@5", "hit@10", "mrr@10", "ndcg@10", "recall@5", "hit@5_lenient", "mrr@10_lenient")
ANSWER_METRICS = ("answer_in_top5", "answer_contains", "answer_exact", "answer_f1", "citation_precision")
ABSTAIN_METRICS = ("abstain_precision", "abstain_recall")
QUESTION_METRICS = (*RETRIEVAL_METRICS, *ANSWER_METRICS, "unsupported_rate")
FRACTION_METRICS = (*RETRIEVAL_METRICS, *ANSWER_METRICS, *ABSTAIN_METRICS, "unsupported_rate")
COUNT_KEYS = ("n", "n_answerable", "n_invalid")
SUMMARY_KEYS = (*COUNT_KEYS, *FRACTION_METRICS, "latency_p50_ms", "latency_p95_ms", "config")
MAX_RANK = 10
JSONL_SUFFIXES = {".jsonl", ".ndjson", ".json"}

Metric = float | None


# -- question sets ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalQuestion:
    """One question of a set, holding only what the evaluation uses (`meta` and other fields are dropped).

    `answers` are alternatives (any one counts); none means the articles do not answer the question and
    the right behaviour is to abstain. `source_ids` are the gold articles, `related_ids` other articles
    that hold the answer too (for the lenient scores), `asked_on` the assistant's "today" (YYYY-MM-DD).
    """

    id: str
    question: str
    answers: tuple[str, ...]
    source_ids: tuple[str, ...] = ()
    related_ids: tuple[str, ...] = ()
    asked_on: str = ""
    line: int = 0

    @property
    def answerable(self) -> bool:
        return bool(self.answers)


@dataclass(frozen=True)
class InvalidQuestion:
    """A line of a question file that was excluded from the run, and why."""

    path: str
    line: int
    reason: str
    id: str = ""

    def __str__(self) -> str:
        return f"{self.path} line {self.line}: {self.reason}"


@dataclass(frozen=True)
class QuestionSet:
    """The usable questions of a file, in file order, and the lines that were not usable."""

    path: str
    questions: tuple[EvalQuestion, ...]
    invalid: tuple[InvalidQuestion, ...]


class _LineError(ValueError):
    """What is wrong with one line (becomes an `InvalidQuestion`)."""


def load_questions(path: str | Path) -> QuestionSet:
    """Read a question file: JSON Lines (`.jsonl`, `.ndjson`, `.json`) or CSV (`.csv`, with a header row).

    Fields: `id`, `question`, `answers` (required; an empty list means unanswerable), optional
    `source_ids`, `related_ids` and `asked_on`. In CSV, a list cell holds alternatives separated by
    `|` or a JSON list (`["a", "b"]`); an empty cell is an empty list. Blank lines are skipped; a line
    that is not usable (bad JSON, a missing or mistyped field, a repeated id) is excluded and reported
    in `invalid` with its line number. Raises `QuestionFileError` when the file itself is unusable or
    holds no valid question at all.

    >>> load_questions("examples/questions.jsonl").questions[0].id     # doctest: +SKIP
    'demo-01'
    """
    file = Path(path)
    if not file.is_file():
        raise QuestionFileError(f"{file}: no such question file" + (" (it is a folder)" if file.is_dir() else ""))
    suffix = file.suffix.lower()
    if suffix not in JSONL_SUFFIXES and suffix != ".csv":
        raise QuestionFileError(f"{file}: unknown question file type {suffix or '(none)'}: use .jsonl or .csv")
    try:
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise QuestionFileError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise QuestionFileError(f"{file}: cannot read it ({exc.strerror})") from exc
    rows = _csv_rows(file, text) if suffix == ".csv" else _jsonl_rows(text)

    questions: list[EvalQuestion] = []
    invalid: list[InvalidQuestion] = []
    first_line: dict[str, int] = {}
    for line, row in rows:
        try:
            if isinstance(row, _LineError):
                raise row
            question = _question(row, line)
            if question.id in first_line:
                raise _LineError(f"id {question.id!r} already used on line {first_line[question.id]}")
        except _LineError as exc:
            raw_id = row.get("id") if isinstance(row, dict) else None
            invalid.append(
                InvalidQuestion(str(file), line, str(exc), str(raw_id) if isinstance(raw_id, str | int) else "")
            )
            continue
        first_line[question.id] = line
        questions.append(question)
    if not questions:
        detail = (
            f": {invalid[0]}" + (f" (and {len(invalid) - 1} more bad lines)" if len(invalid) > 1 else "")
            if invalid
            else ""
        )
        raise QuestionFileError(f"{file}: no valid question{detail}")
    return QuestionSet(str(file), tuple(questions), tuple(invalid))


def _jsonl_rows(text: str) -> Iterable[tuple[int, dict[str, Any] | _LineError]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, _LineError(f"not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        yield (
            number,
            record if isinstance(record, dict) else _LineError(f"expected a JSON object, got {type(record).__name__}"),
        )


def _csv_rows(file: Path, text: str) -> Iterable[tuple[int, dict[str, Any] | _LineError]]:
    reader = csv.reader(text.splitlines(keepends=True))
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise QuestionFileError(
            f"{file}: the CSV file is empty: it needs a header row with id,question,answers"
        ) from None
    except csv.Error as exc:
        raise QuestionFileError(f"{file} line 1: unreadable CSV header ({exc})") from exc
    missing = [name for name in ("id", "question", "answers") if name not in header]
    if missing:
        raise QuestionFileError(
            f"{file} line 1: the CSV header lacks the column(s) {', '.join(missing)} (it has: {', '.join(header)})"
        )
    rows: list[tuple[int, dict[str, Any] | _LineError]] = []
    while True:
        start = reader.line_num + 1  # a quoted cell may span lines: report the row's first line
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            rows.append((start, _LineError(f"unreadable CSV row ({exc})")))
            continue
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(header):
            rows.append((start, _LineError(f"expected {len(header)} CSV fields, got {len(cells)}")))
            continue
        record: dict[str, Any] = dict(zip(header, cells, strict=True))
        try:
            for name in ("answers", "source_ids", "related_ids"):
                if name in record:
                    record[name] = _split_cell(name, record[name])
        except _LineError as exc:
            rows.append((start, exc))
            continue
        rows.append((start, record))
    return rows


def _split_cell(name: str, cell: str) -> list[Any]:
    """A CSV list cell: a JSON list, or alternatives separated by `|` (empty parts dropped)."""
    cell = cell.strip()
    if cell.startswith("["):
        try:
            value = json.loads(cell)
        except json.JSONDecodeError as exc:
            raise _LineError(f"{name}: {cell[:40]!r} starts like a JSON list but is not one ({exc.msg})") from exc
        if not isinstance(value, list):
            raise _LineError(f"{name}: expected a JSON list")
        return value
    return [part.strip() for part in cell.split("|") if part.strip()]


def _question(record: dict[str, Any], line: int) -> EvalQuestion:
    raw_id = record.get("id")
    if isinstance(raw_id, bool) or not isinstance(raw_id, str | int) or not str(raw_id).strip():
        raise _LineError(
            "missing or empty 'id'" if raw_id in (None, "") else f"'id' must be a string, not {type(raw_id).__name__}"
        )
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        raise _LineError("missing or empty 'question'" if question in (None, "") else "'question' must be a string")
    if "answers" not in record:
        raise _LineError("missing 'answers' (use [] for a question the articles do not answer)")
    asked_on = record.get("asked_on") or ""
    if asked_on and not (isinstance(asked_on, str) and _is_date(asked_on.strip())):
        raise _LineError(f"'asked_on' {asked_on!r} is not a date like 2024-06-06")
    return EvalQuestion(
        id=str(raw_id).strip(),
        question=question.strip(),
        answers=_strings(record, "answers"),
        source_ids=_strings(record, "source_ids"),
        related_ids=_strings(record, "related_ids"),
        asked_on=asked_on.strip(),
        line=line,
    )


def _strings(record: dict[str, Any], name: str) -> tuple[str, ...]:
    value = record.get(name)
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _LineError(f"'{name}' must be a list of strings, not {type(value).__name__}")
    items = []
    for position, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, str | int) or not str(item).strip():
            raise _LineError(f"'{name}' item {position + 1} must be a non-empty string, not {item!r}")
        items.append(str(item).strip())
    return tuple(dict.fromkeys(items))


def _is_date(value: str) -> bool:
    """True for a real calendar date written YYYY-MM-DD."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


# -- metrics: retrieval ----------------------------------------------------------------------------


def ranked_articles(passages: Sequence[Passage]) -> list[str]:
    """The article ids of retrieved passages, in rank order, each article once at the rank of its best passage.

    Retrieval may return several passages of one article; ranking metrics score articles, so later
    passages of an article already seen are dropped. Ties in score keep the order retrieval returned:
    the list order is the ranking, scores are not consulted.

    >>> ranked_articles([Passage("a#1#0", "a", ""), Passage("a#1#3", "a", ""), Passage("b#1#0", "b", "")])
    ['a', 'b']
    """
    return list(dict.fromkeys(passage.article_id for passage in passages))


def first_rank(ranked: Sequence[str], gold: Iterable[str]) -> int | None:
    """The 1-based rank of the first gold article in `ranked`, or None when no gold article is there."""
    wanted = set(gold)
    return next((rank for rank, article_id in enumerate(ranked, start=1) if article_id in wanted), None)


def hit_at(ranked: Sequence[str], gold: Iterable[str], k: int) -> Metric:
    """1.0 when a gold article is among the first `k` ranked articles, else 0.0; None when there is no gold.

    >>> hit_at(["x", "a"], {"a"}, 1), hit_at(["x", "a"], {"a"}, 5), hit_at(["x"], set(), 5)
    (0.0, 1.0, None)
    """
    wanted = set(gold)
    if not wanted:
        return None
    return 1.0 if wanted & set(ranked[:k]) else 0.0


def mrr_at(ranked: Sequence[str], gold: Iterable[str], k: int) -> Metric:
    """Reciprocal rank of the first gold article within the first `k` (0.0 when none); None without gold.

    >>> mrr_at(["x", "y", "a"], {"a", "b"}, 10), mrr_at(["x", "y", "a"], {"a"}, 2)
    (0.3333333333333333, 0.0)
    """
    wanted = set(gold)
    if not wanted:
        return None
    rank = first_rank(ranked[:k], wanted)
    return 1.0 / rank if rank else 0.0


def ndcg_at(ranked: Sequence[str], gold: Iterable[str], k: int) -> Metric:
    """Normalised discounted cumulative gain at `k` with binary relevance (a gold article counts 1).

    DCG sums 1/log2(rank + 1) over the gold articles in the first `k`; the ideal DCG puts all gold
    articles first (at most `k` of them), so 1.0 means every gold article (or the first `k`) leads the
    list. None without gold.

    >>> round(ndcg_at(["x", "a"], {"a"}, 10), 4), ndcg_at(["a", "b"], {"a", "b"}, 10)
    (0.6309, 1.0)
    """
    wanted = set(gold)
    if not wanted:
        return None
    dcg = sum(1.0 / math.log2(rank + 1) for rank, article_id in enumerate(ranked[:k], start=1) if article_id in wanted)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(wanted), k) + 1))
    return dcg / ideal


def recall_at(ranked: Sequence[str], gold: Iterable[str], k: int) -> Metric:
    """The share of the gold articles found among the first `k` ranked articles; None without gold.

    >>> recall_at(["a", "x"], {"a", "b"}, 5)
    0.5
    """
    wanted = set(gold)
    if not wanted:
        return None
    return len(wanted & set(ranked[:k])) / len(wanted)


# -- metrics: answers ------------------------------------------------------------------------------

_ASCII_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_MARKERS = re.compile(r"\[\d+(?:\s*,\s*\d+)*\]")


def normalize_answer(text: str) -> str:
    """SQuAD's answer normalisation: lowercase, drop punctuation, drop the articles a/an/the, squeeze spaces.

    Punctuation is removed, not replaced, as in SQuAD ("36,000" -> "36000", "St. Petersburg" -> "st
    petersburg"); Unicode punctuation (curly quotes, dashes) goes too, so typography does not count.

    >>> normalize_answer("The  Aurora-3 rocket!")
    'aurora3 rocket'
    """
    text = "".join(
        char
        for char in text.lower()
        if char not in _ASCII_PUNCTUATION and not unicodedata.category(char).startswith("P")
    )
    return " ".join(_ARTICLES.sub(" ", text).split())


def answer_for_scoring(answer: Answer) -> str:
    """The answer text that answer metrics score: empty when the assistant abstained, `[n]` markers removed.

    An abstention's text ("the articles do not answer ...") is a refusal, not an answer, so it scores
    0 on an answerable question whatever words it contains.
    """
    return "" if answer.abstained else _MARKERS.sub(" ", answer.text)


def _alternatives(answers: Iterable[str]) -> list[str]:
    # An alternative that normalises to nothing ("The", "%") could match any text: it is ignored.
    return [normal for normal in (normalize_answer(answer) for answer in answers) if normal]


def contains_answer(text: str, answers: Iterable[str]) -> Metric:
    """1.0 when a normalised alternative occurs in the normalised `text` as whole tokens, else 0.0.

    Whole tokens: "12" is not found in "2012". None when there are no alternatives (unanswerable);
    0.0 when every alternative normalises to nothing.

    >>> contains_answer("It cost $4.82 billion [1].", ["$4.82 billion"]), contains_answer("In 2012.", ["12"])
    (1.0, 0.0)
    """
    answers = list(answers)
    if not answers:
        return None
    haystack = f" {normalize_answer(text)} "
    return 1.0 if any(f" {alternative} " in haystack for alternative in _alternatives(answers)) else 0.0


def exact_match(text: str, answers: Iterable[str]) -> Metric:
    """1.0 when the normalised `text` equals a normalised alternative, else 0.0; None without alternatives.

    >>> exact_match("The Aurora-3.", ["Aurora-3"])
    1.0
    """
    answers = list(answers)
    if not answers:
        return None
    normal = normalize_answer(text)
    return 1.0 if normal and normal in _alternatives(answers) else 0.0


def token_f1(text: str, answers: Iterable[str]) -> Metric:
    """SQuAD token F1 between the normalised `text` and the best-matching alternative; None without alternatives.

    Tokens are counted with multiplicity; an empty text scores 0.0 against any alternative (an empty
    alternative is ignored, as in `contains_answer`).

    >>> token_f1("Daniel Kiprono won", ["Kiprono"])
    0.5
    """
    answers = list(answers)
    if not answers:
        return None
    predicted = normalize_answer(text).split()
    best = 0.0
    for alternative in _alternatives(answers):
        expected = alternative.split()
        same = sum((Counter(predicted) & Counter(expected)).values())
        if same:
            precision, recall = same / len(predicted), same / len(expected)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def citation_precision(citations: Sequence[Citation], gold: Iterable[str], answers: Iterable[str]) -> Metric:
    """The share of citations whose passage comes from a gold article or contains an expected answer.

    Gold here is `source_ids` (the issue's definition); a passage of a related article still counts when
    it holds the answer. None when the answer has no citations (an abstention, or nothing cited).

    >>> from assistant.models import Citation
    >>> cite = lambda article, passage: Citation(1, article, "", "", "", "", passage, "", 0, 0, None, 0.0)
    >>> citation_precision([cite("a", "x"), cite("b", "it was 87 km"), cite("c", "x")], {"a"}, ["87 km"])
    0.6666666666666666
    """
    if not citations:
        return None
    wanted, answers = set(gold), list(answers)
    good = sum(
        1 for c in citations if c.article_id in wanted or (answers and contains_answer(c.passage, answers) == 1.0)
    )
    return good / len(citations)


def verification_counts(answer: Answer) -> tuple[int, int]:
    """(flagged, total) answer sentences: flagged ones were marked unsupported (kept or removed).

    `answer.sentences` are the shown sentences, `answer.removed` the ones verification took out; a
    sentence listed in both counts once.
    """
    every = list(dict.fromkeys([*answer.sentences, *answer.removed]))
    flagged = sum(1 for sentence in every if sentence.unsupported or sentence in answer.removed)
    return flagged, len(every)


def abstain_scores(outcomes: Iterable[tuple[bool, bool]]) -> tuple[Metric, Metric]:
    """(precision, recall) of abstaining, from (unanswerable, abstained) pairs, one per question.

    Precision: of the questions the assistant abstained on, the share that were unanswerable (None
    when it never abstained). Recall: of the unanswerable questions, the share it abstained on (None
    when every question was answerable).

    >>> abstain_scores([(True, True), (True, False), (False, True), (False, False)])
    (0.5, 0.5)
    """
    pairs = list(outcomes)
    abstained = [unanswerable for unanswerable, did in pairs if did]
    unanswerable = [did for is_unanswerable, did in pairs if is_unanswerable]
    precision = sum(abstained) / len(abstained) if abstained else None
    recall = sum(unanswerable) / len(unanswerable) if unanswerable else None
    return precision, recall


def percentile(values: Iterable[float], q: float) -> Metric:
    """The `q`-th percentile (0..100) with linear interpolation between ranks (numpy's default); None if empty.

    >>> percentile([10, 20, 30, 40], 50), percentile([5], 95)
    (25.0, 5.0)
    """
    ordered = sorted(values)
    if not ordered:
        return None
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


def mean(values: Iterable[Metric]) -> Metric:
    """The mean of the values that are not None; None when none is left.

    >>> mean([1.0, None, 0.0]), mean([None])
    (0.5, None)
    """
    present = [value for value in values if value is not None]
    return sum(present) / len(present) if present else None


# -- scoring one question --------------------------------------------------------------------------


@dataclass(frozen=True)
class QuestionResult:
    """One evaluated question: what was expected, what the assistant answered and saw, and its metrics.

    `to_dict()` is a line of results.jsonl. `metrics` holds every name in `QUESTION_METRICS`; retrieval
    and answer metrics are None on unanswerable questions (and retrieval ones when `source_ids` is empty).
    """

    id: str
    question: str
    answers: tuple[str, ...]
    source_ids: tuple[str, ...]
    related_ids: tuple[str, ...]
    asked_on: str
    answer: str
    abstained: bool
    citations: tuple[dict[str, Any], ...]
    retrieved: tuple[dict[str, Any], ...]
    retrieved_articles: tuple[str, ...]
    gold_rank: int | None
    gold_rank_lenient: int | None
    sentences: int
    flagged: int
    metrics: dict[str, Metric]
    latency_ms: float

    @property
    def answerable(self) -> bool:
        return bool(self.answers)

    @property
    def right(self) -> bool:
        """Right: an answerable question whose answer contains an expected answer, or an abstention on an unanswerable one."""
        return self.metrics.get("answer_contains") == 1.0 if self.answerable else self.abstained

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["answerable"], data["right"] = self.answerable, self.right
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuestionResult:
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        for name in ("answers", "source_ids", "related_ids", "citations", "retrieved", "retrieved_articles"):
            known[name] = tuple(known.get(name) or ())
        return cls(
            **{
                "asked_on": "",
                "answer": "",
                "abstained": False,
                "gold_rank": None,
                "gold_rank_lenient": None,
                "sentences": 0,
                "flagged": 0,
                "metrics": {},
                "latency_ms": 0.0,
                **known,
            }
        )


def score_question(question: EvalQuestion, answer: Answer, latency_ms: float) -> QuestionResult:
    """Score one answer: retrieval on `answer.retrieved`, the answer text, its citations and its verification."""
    ranked = ranked_articles(answer.retrieved)
    lenient = (*question.source_ids, *question.related_ids)
    metrics: dict[str, Metric] = dict.fromkeys(QUESTION_METRICS)
    if question.answerable:
        text = answer_for_scoring(answer)
        metrics.update(
            {
                "hit@1": hit_at(ranked, question.source_ids, 1),
                "hit@5": hit_at(ranked, question.source_ids, 5),
                "hit@10": hit_at(ranked, question.source_ids, 10),
                "mrr@10": mrr_at(ranked, question.source_ids, 10),
                "ndcg@10": ndcg_at(ranked, question.source_ids, 10),
                "recall@5": recall_at(ranked, question.source_ids, 5),
                "hit@5_lenient": hit_at(ranked, lenient, 5),
                "mrr@10_lenient": mrr_at(ranked, lenient, 10),
                # Retrieval's share of answering: could the answer have been read from the first five passages?
                "answer_in_top5": contains_answer(" ".join(p.text for p in answer.retrieved[:5]), question.answers),
                "answer_contains": contains_answer(text, question.answers),
                "answer_exact": exact_match(text, question.answers),
                "answer_f1": token_f1(text, question.answers),
                "citation_precision": citation_precision(answer.citations, question.source_ids, question.answers),
            }
        )
    flagged, total = verification_counts(answer)
    metrics["unsupported_rate"] = flagged / total if total else None
    return QuestionResult(
        id=question.id,
        question=question.question,
        answers=question.answers,
        source_ids=question.source_ids,
        related_ids=question.related_ids,
        asked_on=question.asked_on,
        answer=answer.text,
        abstained=answer.abstained,
        citations=tuple(citation.to_dict() for citation in answer.citations),
        retrieved=tuple(
            {
                "rank": rank,
                "article_id": p.article_id,
                "chunk_id": p.chunk_id,
                "score": p.score,
                "title": p.title,
                "text": p.text,
            }
            for rank, p in enumerate(answer.retrieved, start=1)
        ),
        retrieved_articles=tuple(ranked),
        gold_rank=first_rank(ranked, question.source_ids),
        gold_rank_lenient=first_rank(ranked, lenient),
        sentences=total,
        flagged=flagged,
        metrics=metrics,
        latency_ms=round(latency_ms, 2),
    )


# -- summary ---------------------------------------------------------------------------------------


def run_config(settings: Settings, workers: int = 1) -> dict[str, Any]:
    """The configuration that produced a run's numbers (the `config` of summary.json)."""
    return {
        "embedding_model": settings.embedding_model,
        "chunk_size": settings.chunk_size,
        "chunk_overlap": settings.chunk_overlap,
        "k": settings.k,
        "max_per_article": settings.max_per_article,
        "reranker": settings.reranker,
        "answerer": settings.llm,
        "workers": workers,
        "version": __version__,
    }


def summarize(
    results: Sequence[QuestionResult], n_invalid: int = 0, config: dict[str, Any] | None = None
) -> dict[str, Any]:
    """summary.json: counts, each metric averaged, latency percentiles and the configuration.

    Retrieval and answer metrics average over the answerable questions where they are defined (retrieval
    needs `source_ids`, citation precision needs citations); with no answerable question they are None.
    `unsupported_rate` pools the sentences of every answer (flagged / all). Latency covers every question.
    """
    answerable = [result for result in results if result.answerable]
    summary: dict[str, Any] = {"n": len(results), "n_answerable": len(answerable), "n_invalid": n_invalid}
    for name in (*RETRIEVAL_METRICS, *ANSWER_METRICS):
        summary[name] = _round(mean(result.metrics.get(name) for result in answerable))
    precision, recall = abstain_scores((not result.answerable, result.abstained) for result in results)
    summary["abstain_precision"], summary["abstain_recall"] = _round(precision), _round(recall)
    sentences = sum(result.sentences for result in results)
    summary["unsupported_rate"] = _round(sum(result.flagged for result in results) / sentences if sentences else None)
    latencies = [result.latency_ms for result in results]
    summary["latency_p50_ms"] = _round(percentile(latencies, 50), 1)
    summary["latency_p95_ms"] = _round(percentile(latencies, 95), 1)
    summary["config"] = dict(config or {})
    return summary


def hit_rate_by_rank(results: Sequence[QuestionResult], lenient: bool = False, depth: int = MAX_RANK) -> list[Metric]:
    """Share of answerable questions with gold ids whose first gold article is at rank <= r, for r = 1..depth."""
    gold = [r for r in results if r.answerable and (r.source_ids or (lenient and r.related_ids))]
    if not gold:
        return [None] * depth
    ranks = [r.gold_rank_lenient if lenient else r.gold_rank for r in gold]
    return [sum(1 for rank in ranks if rank is not None and rank <= cut) / len(gold) for cut in range(1, depth + 1)]


def _round(value: Metric, digits: int = 4) -> Metric:
    return None if value is None else round(value, digits)


# -- comparing with an earlier report --------------------------------------------------------------


def load_report(directory: str | Path) -> tuple[dict[str, Any], list[QuestionResult]]:
    """The summary and results of an earlier `--report` folder (for `--compare`)."""
    folder = Path(directory)
    try:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
        lines = (folder / "results.jsonl").read_text(encoding="utf-8").splitlines()
        results = [QuestionResult.from_dict(json.loads(line)) for line in lines if line.strip()]
    except FileNotFoundError as exc:
        raise DossierError(
            f"{folder} is not an eval report: {Path(exc.filename).name} is missing (give the folder of an earlier --report)"
        ) from exc
    except (json.JSONDecodeError, TypeError, AttributeError) as exc:
        raise DossierError(f"{folder}: unreadable eval report ({exc})") from exc
    return summary, results


def compare_reports(
    old_summary: dict[str, Any],
    old_results: Sequence[QuestionResult],
    new_summary: dict[str, Any],
    new_results: Sequence[QuestionResult],
    old_label: str = "",
) -> dict[str, Any]:
    """compare.json: per metric old, new and diff (new - old; None when either is None), the changed
    configuration, and the questions (matched by id) that went right -> wrong and wrong -> right."""
    metrics = {}
    for name in SUMMARY_KEYS:
        if name == "config":
            continue
        old, new = old_summary.get(name), new_summary.get(name)
        diff = round(new - old, 4) if isinstance(old, int | float) and isinstance(new, int | float) else None
        metrics[name] = {"old": old, "new": new, "diff": diff}
    old_config, new_config = old_summary.get("config", {}), new_summary.get("config", {})
    config = {
        key: {"old": old_config.get(key), "new": new_config.get(key)}
        for key in dict.fromkeys([*old_config, *new_config])
        if old_config.get(key) != new_config.get(key)
    }
    before = {result.id: result for result in old_results}
    now = {result.id: result for result in new_results}
    both = [result for result in new_results if result.id in before]

    def entry(result: QuestionResult) -> dict[str, Any]:
        return {
            "id": result.id,
            "question": result.question,
            "answers": list(result.answers),
            "old": before[result.id].answer,
            "new": result.answer,
        }

    return {
        "old_report": old_label,
        "metrics": metrics,
        "config": config,
        "right_to_wrong": [entry(r) for r in both if before[r.id].right and not r.right],
        "wrong_to_right": [entry(r) for r in both if not before[r.id].right and r.right],
        "only_old": [result_id for result_id in before if result_id not in now],
        "only_new": [result_id for result_id in now if result_id not in before],
    }


# -- text output -----------------------------------------------------------------------------------


def format_value(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if name.endswith("_ms"):
        return f"{value:.1f} ms"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def format_diff(name: str, diff: Any) -> str:
    if diff is None:
        return "-"
    if isinstance(diff, int):
        return f"{diff:+d}"
    return f"{diff:+.1f}" if name.endswith("_ms") else f"{diff:+.3f}"


def format_summary(summary: dict[str, Any]) -> str:
    """summary.json as an aligned two-column table for the terminal."""
    lines = [f"{name:<20} {format_value(name, summary.get(name))}" for name in SUMMARY_KEYS if name != "config"]
    config = summary.get("config") or {}
    lines.append("config               " + ", ".join(f"{key}={value}" for key, value in config.items()))
    return "\n".join(lines)


def format_comparison(comparison: dict[str, Any]) -> str:
    """compare.json as a table (metric, old, new, diff) and the lists of questions that changed."""
    lines = [
        f"compared with {comparison.get('old_report') or 'the old report'}",
        f"{'metric':<20} {'old':>10} {'new':>10} {'diff':>10}",
    ]
    for name, row in comparison["metrics"].items():
        lines.append(
            f"{name:<20} {format_value(name, row['old']):>10} {format_value(name, row['new']):>10} {format_diff(name, row['diff']):>10}"
        )
    for key, change in comparison["config"].items():
        lines.append(f"config {key}: {change['old']} -> {change['new']}")
    for title, key in (("right -> wrong", "right_to_wrong"), ("wrong -> right", "wrong_to_right")):
        items = comparison[key]
        lines.append(f"{title}: {len(items)}")
        lines.extend(f"  {item['id']}: {item['question']}" for item in items)
    if comparison["only_old"] or comparison["only_new"]:
        lines.append(
            f"only in the old run: {len(comparison['only_old'])}; only in the new run: {len(comparison['only_new'])}"
        )
    return "\n".join(lines)


# -- running ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoreState:
    """The store a run used, and whether `--articles` were ingested into it or it was reused as it was."""

    settings: Settings
    location: str
    reused: bool
    ingest: dict[str, Any] | None = None


def cache_home() -> Path:
    """Dossier's cache folder: $XDG_CACHE_HOME/dossier, else ~/.cache/dossier."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dossier"


def articles_fingerprint(paths: Sequence[str | Path], settings: Settings) -> str:
    """A key for "these article files, ingested this way": each file's path, size and mtime, the
    settings that shape the stored chunks, and the code that makes them (the `ingest` package, the
    store and the embedder: a change to cleaning or chunking must not reuse chunks made before it).
    Any change gives a new key.
    """
    import ingest
    from ingest.loaders import iter_files
    from ingest.models import Skipped

    here = Path(__file__).parent
    code = sorted(Path(ingest.__file__).parent.glob("*.py")) + [here / "store.py", here / "embeddings.py"]
    parts = [
        hashlib.sha256(b"".join(file.read_bytes() for file in code)).hexdigest(),
        __version__,
        settings.embedding_model,
        settings.embedding_dtype,
        str(settings.chunk_size),
        str(settings.chunk_overlap),
        str(settings.max_file_mb),
        settings.collection,
    ]
    for item in iter_files(paths):
        if isinstance(item, Skipped):
            parts.append(f"skipped\t{item.path}")
        else:
            stat = item[0].stat()
            parts.append(f"{item[0].resolve()}\t{item[1].resolve()}\t{stat.st_size}\t{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]


def prepare_store(
    settings: Settings,
    articles: Sequence[str | Path] = (),
    store: Path | None = None,
    progress: bool = False,
    cache_dir: Path | None = None,
) -> StoreState:
    """The store to evaluate on; with `articles`, brought up to date first.

    Without `articles`: the given `store`, or the configured one, as it is. With `articles`: the given
    `store`, or (when none is given) an embedded store in the cache folder keyed by
    `articles_fingerprint`, so runs on the same files share it and runs with other chunking do not.
    A marker beside the cache records the fingerprint and the store's write generation after a
    complete ingest; when both still match, ingest is skipped and the run starts at once. Otherwise
    the ingest pipeline runs, which itself skips unchanged articles (an interrupted ingest resumes).
    """
    if not articles:
        chosen = settings.with_overrides(store=store)
        return StoreState(chosen, chosen.chroma_url or str(chosen.store), reused=True)
    from assistant.store import Store
    from ingest.pipeline import ingest_paths

    fingerprint = articles_fingerprint(articles, settings)
    root = cache_dir or cache_home() / "eval-stores"
    if store is None:
        chosen = settings.with_overrides(store=root / fingerprint / "store", chroma_url="")
    else:
        chosen = settings.with_overrides(store=store)
    location = chosen.chroma_url or str(Path(chosen.store).resolve())
    marker = root / "markers" / (hashlib.sha256(f"{location}\n{chosen.collection}".encode()).hexdigest()[:20] + ".json")
    the_store = Store.from_settings(chosen)
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        recorded = {}
    if (
        recorded.get("fingerprint") == fingerprint
        and recorded.get("generation") == the_store.generation()
        and the_store.article_count()
    ):
        return StoreState(chosen, location, reused=True, ingest=recorded.get("ingest"))
    report = ingest_paths(
        articles,
        the_store,
        chunk_size=chosen.chunk_size,
        chunk_overlap=chosen.chunk_overlap,
        max_chunks=chosen.max_chunks_per_article,
        max_bytes=int(chosen.max_file_mb * 1024 * 1024),
        pdf_limits=chosen.pdf_limits,
        progress=progress,
    )
    if not (report.stored or report.unchanged or report.duplicates):
        reasons = "; ".join(f"{item.path}: {item.reason}" for item in report.skipped[:3])
        raise DossierError(
            f"no articles could be ingested from {', '.join(map(str, articles))}" + (f" ({reasons})" if reasons else "")
        )
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(
        json.dumps(
            {
                "fingerprint": fingerprint,
                "generation": the_store.generation(),
                "store": location,
                "ingest": report.to_json(),
            }
        ),
        encoding="utf-8",
    )
    return StoreState(chosen, location, reused=False, ingest=report.to_json())


def evaluate(
    questions: Sequence[EvalQuestion],
    ask: Callable[[EvalQuestion], Answer],
    workers: int = 1,
    progress: bool = False,
) -> tuple[list[QuestionResult], list[InvalidQuestion]]:
    """Ask every question (`workers` at a time) and score the answers; results keep the questions' order.

    A question the assistant refuses (`BadQuestionError`: too long, for instance) is excluded and
    returned as invalid; any other error stops the run (it would hit every question), with the
    question's id added to the error. Latency is the wall time of each `ask` call, so with more than
    one worker it includes waiting for shared resources (the embedding model runs one batch at a time).
    Two workers measured about twice as fast as one on the demo set here (2 cores): retrieval and
    scoring of one question overlap the other's embedding; more only queue at the model.
    """
    from tqdm import tqdm

    def one(question: EvalQuestion) -> QuestionResult | InvalidQuestion:
        started = time.perf_counter()
        try:
            answer = ask(question)
        except BadQuestionError as exc:
            return InvalidQuestion("", question.line, f"the assistant refused it: {exc}", question.id)
        except Exception as exc:
            exc.add_note(f"while asking question {question.id!r} (line {question.line})")
            raise
        return score_question(question, answer, (time.perf_counter() - started) * 1000)

    outcomes: list[QuestionResult | InvalidQuestion | None] = [None] * len(questions)
    # Even one worker asks from a pool thread: measured here, asking from the main thread cost about
    # twice the CPU time for the same answers (torch's intra-op threads work for the main thread only).
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="dossier-eval")
    bar = tqdm(total=len(questions), desc="questions", unit="q", disable=not progress, leave=False, file=sys.stderr)
    try:
        futures = {pool.submit(one, question): index for index, question in enumerate(questions)}
        for future in as_completed(futures):
            outcomes[futures[future]] = future.result()
            bar.update(1)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    results = [outcome for outcome in outcomes if isinstance(outcome, QuestionResult)]
    refused = [outcome for outcome in outcomes if isinstance(outcome, InvalidQuestion)]
    return results, refused


@dataclass
class EvalRun:
    """Everything one `run_eval` produced."""

    summary: dict[str, Any]
    results: list[QuestionResult]
    invalid: list[InvalidQuestion]
    store: StoreState
    comparison: dict[str, Any] | None = None
    report_dir: Path | None = None
    questions_path: str = ""
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


def run_eval(
    questions: str | Path,
    settings: Settings,
    *,
    articles: Sequence[str | Path] = (),
    store: Path | None = None,
    report_dir: Path | None = None,
    compare: Path | None = None,
    workers: int = 2,
    limit: int | None = None,
    progress: bool = False,
    cache_dir: Path | None = None,
    assistant: Any = None,
) -> EvalRun:
    """Evaluate Dossier on a question file: the whole of `dossier eval`.

    Checks the question file (and the `compare` report) first, prepares the store (`prepare_store`),
    asks the first `limit` questions through `Assistant.from_settings` (or the given `assistant`),
    summarizes, compares, and writes the report files when `report_dir` is given. Only each question's
    text and `asked_on` reach the assistant.

    >>> run = run_eval("examples/questions.jsonl", Settings(), articles=["examples/articles"])   # doctest: +SKIP
    >>> run.summary["n"], run.store.reused                                                        # doctest: +SKIP
    (18, False)
    """
    question_set = load_questions(questions)
    old = load_report(compare) if compare is not None else None
    chosen = question_set.questions[:limit] if limit else question_set.questions
    state = prepare_store(settings, articles, store, progress=progress, cache_dir=cache_dir)
    if assistant is None:
        from assistant.chain import Assistant

        assistant = Assistant.from_settings(state.settings)

    def ask(question: EvalQuestion) -> Answer:
        answer: Answer = assistant.ask(question.question, as_of=question.asked_on or None)
        return answer

    results, refused = evaluate(chosen, ask, workers=workers, progress=progress)
    invalid = [
        *question_set.invalid,
        *(InvalidQuestion(question_set.path, item.line, item.reason, item.id) for item in refused),
    ]
    summary = summarize(results, len(invalid), run_config(state.settings, workers))
    comparison = compare_reports(old[0], old[1], summary, results, str(compare)) if old is not None else None
    run = EvalRun(summary, results, invalid, state, comparison, report_dir, question_set.path)
    if report_dir is not None:
        from assistant.report import write_report  # report.py renders this module's types: import it late

        write_report(run)
    return run
