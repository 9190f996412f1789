"""Batch evaluation: run a question set through the `Assistant`, score retrieval, answers, citations and abstention.

The modules, in the order a run uses them:

- `questions`: `load_questions` reads a JSONL or CSV question file into `EvalQuestion`s; lines it cannot
  use become `InvalidQuestion`s (reported and counted, never silently dropped).
- `cache`: `prepare_store` ingests `--articles` into the given store or a cached one, and skips that work
  when the articles and the store are unchanged since the last run.
- `metrics`: every metric as a pure function, with its edge cases in its docstring. A metric whose
  denominator is empty (no answerable question, no citation, no abstention...) is `None` (`null` in
  JSON), never 0.
- `scoring`: `score_question` turns one `Answer` into a `QuestionResult` with its metrics.
- `summary`: `summarize` averages the results, `compare_reports` sets them against an earlier report,
  and both print as text tables.
- `run`: `run_eval` does all of the above and returns the `EvalRun`.
- `report`: `write_report` writes `results.jsonl`, `summary.json`, `compare.json` and a self-contained
  `report.html`; the caller decides whether and where.

The names below are the package's public API, so callers need not know which module holds what.

>>> run = run_eval("examples/questions.jsonl", Settings(), articles=["examples/articles"])  # doctest: +SKIP
>>> run.summary["hit@5"]                                                                    # doctest: +SKIP
0.9286
>>> write_report(run, Path("report"))                                                       # doctest: +SKIP
"""

from assistant.evaluation.cache import StoreState, articles_fingerprint, cache_home, prepare_store
from assistant.evaluation.metrics import (
    Metric,
    abstain_scores,
    answer_for_scoring,
    citation_precision,
    contains_answer,
    exact_match,
    first_rank,
    hit_at,
    mean,
    mrr_at,
    ndcg_at,
    normalize_answer,
    percentile,
    ranked_articles,
    recall_at,
    token_f1,
    verification_counts,
)
from assistant.evaluation.questions import EvalQuestion, InvalidQuestion, QuestionSet, load_questions
from assistant.evaluation.report import render_html, write_report
from assistant.evaluation.run import EvalRun, evaluate, run_eval
from assistant.evaluation.scoring import (
    ANSWER_METRICS,
    QUESTION_METRICS,
    RETRIEVAL_METRICS,
    QuestionResult,
    score_question,
)
from assistant.evaluation.summary import (
    ABSTAIN_METRICS,
    COUNT_KEYS,
    FRACTION_METRICS,
    MAX_RANK,
    SUMMARY_KEYS,
    compare_reports,
    format_comparison,
    format_diff,
    format_summary,
    format_value,
    hit_rate_by_rank,
    load_report,
    run_config,
    summarize,
)

__all__ = [
    "ABSTAIN_METRICS",
    "ANSWER_METRICS",
    "COUNT_KEYS",
    "FRACTION_METRICS",
    "MAX_RANK",
    "QUESTION_METRICS",
    "RETRIEVAL_METRICS",
    "SUMMARY_KEYS",
    "EvalQuestion",
    "EvalRun",
    "InvalidQuestion",
    "Metric",
    "QuestionResult",
    "QuestionSet",
    "StoreState",
    "abstain_scores",
    "answer_for_scoring",
    "articles_fingerprint",
    "cache_home",
    "citation_precision",
    "compare_reports",
    "contains_answer",
    "evaluate",
    "exact_match",
    "first_rank",
    "format_comparison",
    "format_diff",
    "format_summary",
    "format_value",
    "hit_at",
    "hit_rate_by_rank",
    "load_questions",
    "load_report",
    "mean",
    "mrr_at",
    "ndcg_at",
    "normalize_answer",
    "percentile",
    "prepare_store",
    "ranked_articles",
    "recall_at",
    "render_html",
    "run_config",
    "run_eval",
    "score_question",
    "summarize",
    "token_f1",
    "verification_counts",
    "write_report",
]
