"""Scoring one question: an `Answer` and its expected answers become a `QuestionResult` with its metrics."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from assistant.evaluation.metrics import (
    Metric,
    answer_for_scoring,
    citation_precision,
    contains_answer,
    exact_match,
    first_rank,
    hit_at,
    mrr_at,
    ndcg_at,
    ranked_articles,
    recall_at,
    token_f1,
    verification_counts,
)
from assistant.evaluation.questions import EvalQuestion
from assistant.models import Answer

# Metric names, in the order of summary.json, the text table and the HTML table.
RETRIEVAL_METRICS = ("hit@1", "hit@5", "hit@10", "mrr@10", "ndcg@10", "recall@5", "hit@5_lenient", "mrr@10_lenient")
ANSWER_METRICS = ("answer_in_top5", "answer_contains", "answer_exact", "answer_f1", "citation_precision")
QUESTION_METRICS = (*RETRIEVAL_METRICS, *ANSWER_METRICS, "unsupported_rate")


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
